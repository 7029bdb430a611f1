// Status screen: live state of the running sync, fed by `status` events.
import { errorMessage, type RecentFile, type Status, type SyncState, type Transfer } from "./api";
import { h, setMessage } from "./dom";
import { errorShownInPanel, folderProblemPanel, pendingDeletesPanel, problemList, type SafetyActions } from "./safety";

export const STATE_LABELS: Record<SyncState, string> = {
  starting: "Starting…",
  up_to_date: "Up to date",
  syncing: "Syncing",
  offline: "Offline — retrying",
  error: "Needs attention",
  stopped: "Stopped",
  paused: "Paused — resume in Settings or the tray menu",
};

const ACTION_LABELS: Record<string, string> = {
  uploaded: "Uploaded",
  downloaded: "Downloaded",
  deleted_local: "Deleted here",
  deleted_remote: "Deleted on server",
  moved_local: "Moved here",
  moved_remote: "Moved on server",
  conflict_copy: "Conflict copy saved",
};

export function actionLabel(action: string): string {
  return ACTION_LABELS[action] ?? action.replace(/_/g, " ");
}

/** "just now", "5 min ago", "3 h ago", else the date. */
export function formatWhen(atMs: number, nowMs: number): string {
  const seconds = Math.max(0, Math.round((nowMs - atMs) / 1000));
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(atMs).toLocaleDateString();
}

/** "512 B", "1.5 KB", "12.3 MB", "1.0 GB" (powers of 1000, like file managers). */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** "12.3 MB of 48.0 MB (25%)", or "12.3 MB so far" while the size is unknown. */
export function transferProgress(t: Transfer): string {
  if (t.total <= 0) return `${formatBytes(t.done)} so far`;
  const percent = Math.min(100, Math.floor((t.done * 100) / t.total));
  return `${formatBytes(t.done)} of ${formatBytes(t.total)} (${percent}%)`;
}

/** One line of the recent-activity list. */
export function recentItem(file: RecentFile, nowMs: number): HTMLLIElement {
  return h(
    "li",
    { "data-testid": "recent-item", "data-action": file.action },
    h("span", { class: `action action-${file.action}`, "data-testid": "recent-action" }, actionLabel(file.action)),
    h("span", { class: "path", "data-testid": "recent-path", title: file.path }, file.path),
    h("time", { datetime: new Date(file.at_ms).toISOString() }, formatWhen(file.at_ms, nowMs)),
  );
}

/** One file in flight, with its progress bar (indeterminate while the size is unknown). */
export function transferItem(t: Transfer): HTMLLIElement {
  const bar = h("progress", { "data-testid": "transfer-bar" });
  if (t.total > 0) {
    bar.max = t.total;
    bar.value = Math.min(t.done, t.total);
  }
  return h(
    "li",
    { "data-testid": "transfer-item", "data-direction": t.direction },
    h("span", { class: "action" }, t.direction === "upload" ? "Uploading" : "Downloading"),
    h("span", { class: "path", title: t.path, "data-testid": "transfer-path" }, t.path),
    bar,
    h("span", { class: "muted", "data-testid": "transfer-progress" }, transferProgress(t)),
  );
}

export interface StatusActions extends SafetyActions {
  openFolder(): Promise<void>;
  signOut(): Promise<void>;
  now(): number;
}

export interface StatusView {
  element: HTMLElement;
  update(status: Status | null): void;
}

export function statusView(actions: StatusActions): StatusView {
  const state = h("span", { class: "state", "data-testid": "status-state" });
  const connection = h("span", { class: "connection", "data-testid": "status-connection" });
  const synced = h("dd", { "data-testid": "status-synced" });
  const pending = h("dd", { "data-testid": "status-pending" });
  const folder = h("dd", { class: "path", "data-testid": "status-folder" });
  const account = h("dd", { "data-testid": "status-account" });
  const lastError = h("p", { class: "error", role: "alert", "data-testid": "status-error" });
  const actionError = h("p", { class: "error", role: "alert", "data-testid": "status-action-error" });
  const transfersTitle = h("h2", { "data-testid": "transfers-title" }, "Transferring");
  const transfers = h("ul", { class: "transfers", "data-testid": "transfer-list" });
  const totals = h("p", { class: "muted", "data-testid": "status-bytes" });
  const recent = h("ul", { class: "recent", "data-testid": "recent-list" });
  const recentEmpty = h("p", { class: "muted", "data-testid": "recent-empty" }, "No file changes yet.");
  const openFolder = h("button", { type: "button", class: "primary", "data-testid": "open-folder" }, "Open folder");
  const signOut = h("button", { type: "button", class: "link", "data-testid": "sign-out" }, "Sign out");
  const folderProblem = folderProblemPanel(actions);
  const pendingDeletes = pendingDeletesPanel(actions);
  const problems = problemList();
  setMessage(actionError, null);

  const element = h(
    "section",
    { class: "card status", "data-testid": "status-view" },
    h("header", {}, h("h1", {}, state), connection),
    lastError,
    folderProblem.element,
    pendingDeletes.element,
    h(
      "dl",
      {},
      h("dt", {}, "Folder"),
      folder,
      h("dt", {}, "Account"),
      account,
      h("dt", {}, "Files in sync"),
      synced,
      h("dt", {}, "Waiting"),
      pending,
    ),
    totals,
    problems.element,
    transfersTitle,
    transfers,
    h("h2", {}, "Recent activity"),
    recentEmpty,
    recent,
    actionError,
    h("div", { class: "actions" }, openFolder, signOut),
  );

  openFolder.addEventListener("click", () => {
    actions.openFolder().catch((e: unknown) => setMessage(actionError, `Could not open the folder. ${errorMessage(e)}`));
  });
  signOut.addEventListener("click", () => {
    signOut.disabled = true;
    actions.signOut().catch((e: unknown) => {
      setMessage(actionError, `Could not sign out. ${errorMessage(e)}`);
      signOut.disabled = false;
    });
  });

  function update(status: Status | null): void {
    const current: SyncState = status?.state ?? "starting";
    state.textContent = STATE_LABELS[current];
    state.dataset.state = current;
    element.dataset.state = current;
    const online = status?.connected ?? false;
    connection.textContent = online ? "Online" : "Offline";
    connection.dataset.online = String(online);
    synced.textContent = String(status?.synced_files ?? 0);
    pending.textContent = String(status?.pending ?? 0);
    folder.textContent = status?.folder ?? "";
    account.textContent = status ? `${status.email} on ${status.device_name}` : "";
    setMessage(lastError, errorShownInPanel(status) ? null : (status?.last_error ?? null));
    folderProblem.update(status);
    pendingDeletes.update(status);
    problems.update(status);
    const moving = status?.transfers ?? [];
    transfers.replaceChildren(...moving.map(transferItem));
    transfers.hidden = transfersTitle.hidden = moving.length === 0;
    const up = status?.bytes_uploaded ?? 0;
    const down = status?.bytes_downloaded ?? 0;
    totals.textContent = `Sent ${formatBytes(up)} · received ${formatBytes(down)} since start`;
    totals.hidden = up === 0 && down === 0;
    const files = status?.recent ?? [];
    recent.replaceChildren(...files.map((file) => recentItem(file, actions.now())));
    recentEmpty.hidden = files.length > 0;
  }

  update(null);
  return { element, update };
}
