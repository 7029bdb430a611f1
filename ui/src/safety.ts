// The status page's answers to the sync engine's safety stops, decided on `error_kind` and
// `pending_deletes` (never on message words): the synced folder is gone (locate it, or start
// over with an empty folder), deletions held until the user confirms them or restores the
// files; and the list of paths that do not sync.
import { errorMessage, FOLDER_KINDS, type DeleteDecision, type ErrorKind, type PathProblem, type PendingDeletes, type Status } from "./api";
import { h, setMessage } from "./dom";
import { checkFolder, folderInput } from "./folder";

export interface SafetyActions {
  /** Sync `folder` instead ("Locate folder…": start_sync with its new path). */
  locate(folder: string): Promise<void>;
  /** Sync the remembered folder afresh, deleting nothing. */
  startOver(): Promise<void>;
  decideDeletes(fingerprint: string, decision: DeleteDecision): Promise<void>;
}

export interface Panel {
  element: HTMLElement;
  update(status: Status | null): void;
}

export function isFolderKind(kind: ErrorKind | null | undefined): kind is ErrorKind {
  return kind != null && FOLDER_KINDS.includes(kind);
}

/** Whether a panel already says what `last_error` says, so the page need not repeat it. */
export function errorShownInPanel(status: Status | null): boolean {
  const kind = status?.error_kind ?? null;
  if (isFolderKind(kind)) return true;
  if (kind === "mass_delete_pending") return status?.pending_deletes != null;
  // A one-file problem: it is in the problem list.
  return kind === null && status?.state !== "error" && (status?.problems ?? []).length > 0;
}

const FOLDER_TITLES: Partial<Record<ErrorKind, string>> = {
  folder_missing: "Your SyncSphere folder is missing",
  folder_not_a_directory: "Your SyncSphere folder was replaced by a file",
  folder_marker_missing: "Your SyncSphere folder is not there",
};

/** The engine's words as a sentence: "the folder … is back" → "The folder … is back." */
export function sentence(text: string): string {
  const t = text.trim();
  if (t === "") return "";
  return t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
}

/** The synced folder is missing, not a folder, or not the linked one: locate it or start over. */
export function folderProblemPanel(actions: SafetyActions): Panel {
  const title = h("h2", { "data-testid": "folder-problem-title" });
  const message = h("p", { class: "path", "data-testid": "folder-problem-message" });
  const locate = h("button", { type: "button", class: "primary", "data-testid": "folder-locate" }, "Locate folder…");
  const startOver = h("button", { type: "button", "data-testid": "folder-start-over" }, "Start over with an empty folder");
  const error = h("p", { class: "error", role: "alert", "data-testid": "folder-problem-error" });

  const input = folderInput("locate-folder", "folder-locate-input", "");
  const locateSubmit = h("button", { type: "submit", class: "primary", "data-testid": "folder-locate-submit" }, "Sync this folder");
  const locateCancel = h("button", { type: "button", "data-testid": "folder-locate-cancel" }, "Cancel");
  const locateForm = h(
    "form",
    { class: "choice", "data-testid": "folder-locate-form", novalidate: true },
    h("label", { for: "locate-folder" }, "Where is the folder now?"),
    input,
    h(
      "p",
      { class: "hint" },
      "If you moved or renamed it, type its new place: syncing picks up where it left off. Any other folder is merged with your files on the server; nothing is deleted.",
    ),
    h("div", { class: "actions tight" }, locateSubmit, locateCancel),
  );

  const confirmText = h("p", { "data-testid": "folder-start-over-text" });
  const confirm = h("button", { type: "button", class: "primary", "data-testid": "folder-start-over-confirm" }, "Start over");
  const confirmCancel = h("button", { type: "button", "data-testid": "folder-start-over-cancel" }, "Cancel");
  const confirmation = h(
    "div",
    { class: "choice", "data-testid": "folder-start-over-confirmation" },
    confirmText,
    h("div", { class: "actions tight" }, confirm, confirmCancel),
  );

  const buttons = h("div", { class: "actions tight" }, locate, startOver);
  const element = h(
    "div",
    { class: "panel", role: "alert", "data-testid": "folder-problem" },
    title,
    message,
    h(
      "p",
      { class: "hint" },
      "Nothing was deleted, here or on the server. SyncSphere keeps checking and syncs again by itself when the folder is back — for example when its drive is connected.",
    ),
    buttons,
    locateForm,
    confirmation,
    error,
  );
  let folder = "";

  function closeChoices(): void {
    locateForm.hidden = true;
    confirmation.hidden = true;
    for (const b of [locate, startOver, locateSubmit, confirm]) b.disabled = false;
  }

  function run(button: HTMLButtonElement, work: () => Promise<void>, failed: string): void {
    button.disabled = true;
    setMessage(error, null);
    work()
      .then(closeChoices)
      .catch((e: unknown) => {
        setMessage(error, `${failed} ${errorMessage(e)}`);
        button.disabled = false;
      });
  }

  locate.addEventListener("click", () => {
    closeChoices();
    setMessage(error, null);
    input.value = folder;
    locateForm.hidden = false;
    input.focus();
  });
  locateCancel.addEventListener("click", closeChoices);
  locateForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const problem = checkFolder(input.value);
    if (problem) {
      setMessage(error, problem);
      return;
    }
    run(locateSubmit, () => actions.locate(input.value.trim()), "Could not sync that folder.");
  });
  startOver.addEventListener("click", () => {
    closeChoices();
    setMessage(error, null);
    confirmText.textContent =
      `Everything in your SyncSphere account is downloaded again into ${folder}, created empty if it is not there. ` +
      "Nothing is deleted: not in that folder, not on the server, not on your other devices. " +
      "If the folder is on a drive that is not connected, connect the drive instead.";
    confirmation.hidden = false;
    confirm.focus();
  });
  confirmCancel.addEventListener("click", closeChoices);
  confirm.addEventListener("click", () => run(confirm, () => actions.startOver(), "Could not start over."));

  function update(status: Status | null): void {
    const kind = status?.error_kind ?? null;
    if (!isFolderKind(kind)) {
      // Back, located or started over: the next problem starts from a clean panel.
      closeChoices();
      setMessage(error, null);
      element.hidden = true;
      return;
    }
    // Kept while shown: the engine repeats the problem at every check, mid-typing too.
    element.hidden = false;
    element.dataset.kind = kind;
    folder = status?.folder ?? "";
    title.textContent = FOLDER_TITLES[kind] ?? "Your SyncSphere folder is not there";
    message.textContent = sentence(status?.last_error ?? "");
  }

  closeChoices();
  setMessage(error, null);
  element.hidden = true;
  return { element, update };
}

/** "240 of 300 synced files are no longer in your SyncSphere folder." */
export function pendingSummary(p: PendingDeletes): string {
  const verb = p.count === 1 ? "is" : "are";
  return `${p.count} of ${p.synced_files} synced files ${verb} no longer in your SyncSphere folder.`;
}

const ANSWERED: Record<DeleteDecision, string> = {
  restore: "Restoring the files: they come back into your folder in a moment.",
  delete_everywhere: "Deleting the files on the server and your other devices. They are listed under History & Trash.",
};

/** Deletions held by the engine until the user says "delete everywhere" or "restore". */
export function pendingDeletesPanel(actions: SafetyActions): Panel {
  const summary = h("p", { "data-testid": "deletes-summary" });
  const sample = h("ul", { class: "sample", "data-testid": "deletes-sample" });
  const more = h("p", { class: "muted", "data-testid": "deletes-more" });
  const restore = h("button", { type: "button", class: "primary", "data-testid": "deletes-restore" }, "Restore files");
  const deleteEverywhere = h(
    "button",
    { type: "button", class: "danger", "data-testid": "deletes-delete-everywhere" },
    "Delete everywhere",
  );
  const notice = h("p", { class: "notice", role: "status", "data-testid": "deletes-notice" });
  const error = h("p", { class: "error", role: "alert", "data-testid": "deletes-error" });
  const element = h(
    "div",
    { class: "panel", role: "alert", "data-testid": "deletes-pending" },
    h("h2", {}, "Files were deleted in your folder"),
    summary,
    h(
      "p",
      { class: "hint" },
      "They are deleted on the server and your other devices only once you confirm. Restore brings them back into this folder.",
    ),
    sample,
    more,
    h("div", { class: "actions tight" }, restore, deleteEverywhere),
    notice,
    error,
  );
  /** The set shown; a new set (other fingerprint) is a new question. */
  let shown: PendingDeletes | null = null;

  function ask(p: PendingDeletes | null): void {
    shown = p;
    restore.disabled = deleteEverywhere.disabled = false;
    setMessage(notice, null);
    setMessage(error, null);
  }

  function answer(decision: DeleteDecision): void {
    const set = shown;
    if (!set) return;
    restore.disabled = deleteEverywhere.disabled = true;
    setMessage(error, null);
    actions
      .decideDeletes(set.fingerprint, decision)
      .then(() => setMessage(notice, ANSWERED[decision]))
      .catch((e: unknown) => {
        setMessage(error, `Your answer was not passed on. ${errorMessage(e)}`);
        restore.disabled = deleteEverywhere.disabled = false;
      });
  }
  restore.addEventListener("click", () => answer("restore"));
  deleteEverywhere.addEventListener("click", () => answer("delete_everywhere"));

  function update(status: Status | null): void {
    const p = status?.pending_deletes ?? null;
    if (p?.fingerprint !== shown?.fingerprint) ask(p);
    element.hidden = p === null;
    if (!p) return;
    summary.textContent = pendingSummary(p);
    sample.replaceChildren(...p.sample.map((path) => h("li", { class: "path", "data-testid": "deletes-sample-item" }, path)));
    const rest = p.count - p.sample.length;
    setMessage(more, rest > 0 ? `…and ${rest} more.` : null);
  }

  update(null);
  return { element, update };
}

/** The paths that do not sync now, each with its reason. */
export function problemList(): Panel {
  const title = h("h2", { "data-testid": "problems-title" }, "Not syncing");
  const list = h("ul", { class: "rows", "data-testid": "problem-list" });

  function item(p: PathProblem): HTMLLIElement {
    return h(
      "li",
      { class: "stack", "data-testid": "problem-item" },
      h("span", { class: "path", "data-testid": "problem-path" }, p.path),
      h("span", { class: "muted", "data-testid": "problem-message" }, p.message),
    );
  }

  const element = h("div", { "data-testid": "problems" }, title, list);
  function update(status: Status | null): void {
    const problems = status?.problems ?? [];
    list.replaceChildren(...problems.map(item));
    element.hidden = problems.length === 0;
  }
  update(null);
  return { element, update };
}
