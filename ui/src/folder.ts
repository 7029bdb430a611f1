// Folder screen: which local folder to keep in sync.
import { errorMessage } from "./api";
import { h, setMessage } from "./dom";

export interface FolderActions {
  start(folder: string): Promise<void>;
  signOut(): Promise<void>;
}

/** The field where the user types a folder: the folder screen, and "Locate folder…". */
export function folderInput(id: string, testId: string, value: string): HTMLInputElement {
  const input = h("input", { id, name: "folder", type: "text", required: true, spellcheck: "false", "data-testid": testId });
  input.value = value;
  return input;
}

/** Why `text` is not a folder to try, or null. */
export function checkFolder(text: string): string | null {
  return text.trim() === "" ? "Choose a folder to sync." : null;
}

export function folderView(
  email: string,
  suggested: string,
  actions: FolderActions,
  notice: string | null = null,
): HTMLElement {
  const input = folderInput("folder", "folder-input", suggested);
  const start = h("button", { type: "submit", class: "primary", "data-testid": "folder-submit" }, "Start syncing");
  const signOut = h("button", { type: "button", class: "link", "data-testid": "sign-out" }, "Sign out");
  const error = h("p", { class: "error", role: "alert", "data-testid": "folder-error" });
  setMessage(error, notice);

  const form = h(
    "form",
    { class: "card", "data-testid": "folder-form", novalidate: true },
    h("h1", {}, "Choose a folder to sync"),
    h("p", { class: "muted" }, "Signed in as ", h("strong", { "data-testid": "folder-email" }, email), "."),
    h("label", { for: "folder" }, "Folder on this computer"),
    input,
    h("p", { class: "hint" }, "It is created if it does not exist. Files already in it are uploaded."),
    error,
    h("div", { class: "actions" }, start, signOut),
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const folder = input.value.trim();
    const problem = checkFolder(folder);
    if (problem) {
      setMessage(error, problem);
      return;
    }
    setMessage(error, null);
    start.disabled = true;
    start.textContent = "Starting…";
    actions.start(folder).catch((e: unknown) => {
      setMessage(error, `Could not start syncing. ${errorMessage(e)}`);
      start.disabled = false;
      start.textContent = "Start syncing";
    });
  });
  signOut.addEventListener("click", () => {
    actions.signOut().catch((e: unknown) => setMessage(error, `Could not sign out. ${errorMessage(e)}`));
  });
  return form;
}
