// Activity page: overall progress of what is moving, each file in flight with its own bar, and
// the recently changed files — all from the status stream.
import * as api from "./api";
import type { OpenRequest, Status } from "./api";
import { h, setMessage } from "./dom";
import type { Page } from "./shell";
import { actionLabel, formatBytes, formatWhen, recentItem, transferItem, transferProgress } from "./status";

/** Bytes done and total over all transfers whose size is known. */
export function overallProgress(status: Status | null): { done: number; total: number } {
  let done = 0;
  let total = 0;
  for (const t of status?.transfers ?? []) {
    if (t.total <= 0) continue;
    done += Math.min(t.done, t.total);
    total += t.total;
  }
  return { done, total };
}

/** One line on what is happening to `path`, from the status stream. */
export function fileState(path: string, status: Status | null, nowMs: number): string {
  const moving = status?.transfers.find((t) => t.path === path);
  if (moving) return `${moving.direction === "upload" ? "Uploading" : "Downloading"}: ${transferProgress(moving)}`;
  const changed = status?.recent.find((f) => f.path === path);
  if (changed) return `${actionLabel(changed.action)} ${formatWhen(changed.at_ms, nowMs)}`;
  if (status?.state === "up_to_date") return "Up to date";
  return "No change seen since SyncSphere started";
}

/** `opened`: a launch asked to show this file (a file manager's "Show in SyncSphere"). */
export function activityPage(now: () => number, opened: OpenRequest | null = null): Page {
  const focusPath = opened?.path ?? null;
  const focusState = h("span", { class: "muted", "data-testid": "activity-focus-state" });
  const reveal = h("button", { type: "button", class: "small", "data-testid": "activity-focus-reveal" }, "Show in folder");
  const focusError = h("p", { class: "error", role: "alert", "data-testid": "activity-focus-error" });
  setMessage(focusError, opened?.problem ?? null);
  reveal.addEventListener("click", () => {
    if (focusPath) api.revealFile(focusPath).catch((e: unknown) => setMessage(focusError, api.errorMessage(e)));
  });
  const focus = focusPath
    ? h(
        "div",
        { class: "focus", "data-testid": "activity-focus" },
        h("span", { class: "grow path", "data-testid": "activity-focus-path" }, focusPath, h("br"), focusState),
        reveal,
      )
    : null;
  const overallBar = h("progress", { class: "overall", "data-testid": "activity-overall-bar" });
  const overallText = h("p", { class: "muted", "data-testid": "activity-overall" });
  const transfers = h("ul", { class: "transfers", "data-testid": "activity-transfers" });
  const idle = h("p", { class: "muted", "data-testid": "activity-idle" }, "Nothing is being transferred right now.");
  const recent = h("ul", { class: "recent tall", "data-testid": "activity-recent" });
  const recentEmpty = h("p", { class: "muted", "data-testid": "activity-recent-empty" }, "No file changes yet.");
  const element = h(
    "section",
    { class: "card", "data-testid": "activity-view" },
    h("h1", {}, "Activity"),
    focusError,
    focus,
    h("h2", {}, "Transferring"),
    idle,
    overallBar,
    overallText,
    transfers,
    h("h2", {}, "Recently changed"),
    recentEmpty,
    recent,
  );

  function update(status: Status | null): void {
    const moving = status?.transfers ?? [];
    transfers.replaceChildren(...moving.map(transferItem));
    const { done, total } = overallProgress(status);
    idle.hidden = moving.length > 0;
    overallBar.hidden = overallText.hidden = moving.length === 0;
    if (total > 0) {
      overallBar.max = total;
      overallBar.value = done;
    } else {
      overallBar.removeAttribute("value");
    }
    const files = moving.length === 1 ? "1 file" : `${moving.length} files`;
    overallText.textContent =
      total > 0 ? `${files}: ${formatBytes(done)} of ${formatBytes(total)} (${Math.floor((done * 100) / total)}%)` : files;
    const changed = status?.recent ?? [];
    recent.replaceChildren(
      ...changed.map((f) => {
        const item = recentItem(f, now());
        if (f.path === focusPath) item.dataset.focused = "true";
        return item;
      }),
    );
    if (focusPath) focusState.textContent = fileState(focusPath, status, now());
    recentEmpty.hidden = changed.length > 0;
  }

  update(null);
  return { element, update };
}
