// History & Trash page: find a file, list its versions and restore one; list the trash and
// bring a file back. Restores are new versions on the server; sync brings them to the folder.
import * as api from "./api";
import type { FileInfo, History, OpenRequest, Revision } from "./api";
import { h, setMessage } from "./dom";
import { formatDate, type Page } from "./shell";
import { formatBytes } from "./status";

/** `opened`: a launch asked for this file's history (a file manager's "Version history"). */
export function historyPage(opened: OpenRequest | null = null): Page {
  const query = h("input", {
    id: "history-query",
    type: "search",
    placeholder: "Part of a file name, e.g. report",
    "data-testid": "history-query",
  });
  const search = h("button", { type: "submit", class: "primary", "data-testid": "history-search" }, "Search");
  const results = h("ul", { class: "rows", "data-testid": "history-results" });
  const noResults = h("p", { class: "muted", "data-testid": "history-no-results" });
  const versionsTitle = h("h2", { "data-testid": "history-file" });
  const versions = h("ul", { class: "rows", "data-testid": "history-versions" });
  const trash = h("ul", { class: "rows", "data-testid": "trash-list" });
  const trashEmpty = h("p", { class: "muted", "data-testid": "trash-empty" }, "The trash is empty.");
  const notice = h("p", { class: "notice", role: "status", "data-testid": "history-notice" });
  const error = h("p", { class: "error", role: "alert", "data-testid": "history-error" });
  for (const el of [noResults, notice, error]) setMessage(el, null);
  versionsTitle.hidden = versions.hidden = trashEmpty.hidden = true;

  const form = h(
    "form",
    { class: "search", "data-testid": "history-form" },
    h("label", { for: "history-query" }, "Find a file"),
    h("div", { class: "actions tight" }, query, search),
  );
  const element = h(
    "section",
    { class: "card", "data-testid": "history-view" },
    h("h1", {}, "History & Trash"),
    notice,
    error,
    form,
    noResults,
    results,
    versionsTitle,
    versions,
    h("h2", {}, "Trash"),
    h("p", { class: "hint" }, "Deleted files stay here for a while, and can be brought back."),
    trashEmpty,
    trash,
  );

  function fail(e: unknown): void {
    setMessage(notice, null);
    setMessage(error, api.errorMessage(e));
  }

  function succeed(message: string): void {
    setMessage(error, null);
    setMessage(notice, message);
  }

  function fileRow(f: FileInfo): HTMLLIElement {
    const open = h("button", { type: "button", class: "small", "data-testid": "history-show-versions" }, "Versions");
    open.addEventListener("click", () => void showHistory(f.path));
    return h(
      "li",
      { "data-testid": "history-result" },
      h("span", { class: "grow path" }, f.path, h("br"), h("span", { class: "muted" }, `${formatBytes(f.size)} · ${formatDate(f.modified_ms)}`)),
      open,
    );
  }

  function versionRow(history: History, r: Revision, index: number): HTMLLIElement {
    const label =
      index === 0 ? (r.deleted ? "Deleted" : "Current version") : r.deleted ? "Deleted" : `Version ${r.rev}`;
    const item = h(
      "li",
      { "data-testid": "history-version", "data-rev": String(r.rev) },
      h(
        "span",
        { class: "grow" },
        h("strong", {}, label),
        h("br"),
        h("span", { class: "muted" }, r.deleted ? formatDate(r.modified_ms) : `${formatDate(r.modified_ms)} · ${formatBytes(r.size)}`),
      ),
    );
    const restorable = !r.deleted && (index > 0 || history.file.deleted);
    if (restorable) {
      const restore = h("button", { type: "button", "data-testid": "history-restore" }, "Restore");
      restore.addEventListener("click", () => {
        restore.disabled = true;
        api
          .restoreRevision(history.file.file_id, r.rev)
          .then((meta) => {
            succeed(`Restored ${meta.path} to how it was on ${formatDate(r.modified_ms)}. It appears in your folder in a moment.`);
            return showHistory(meta.path, false);
          })
          .catch((e: unknown) => {
            fail(e);
            restore.disabled = false;
          });
      });
      item.append(restore);
    }
    return item;
  }

  async function showHistory(path: string, clearMessages = true): Promise<void> {
    try {
      const history = await api.fileHistory(path);
      if (clearMessages) setMessage(error, null);
      versionsTitle.textContent = `Versions of ${history.file.path}${history.file.deleted ? " (in the trash)" : ""}`;
      versions.replaceChildren(...history.revisions.map((r, i) => versionRow(history, r, i)));
      versionsTitle.hidden = versions.hidden = false;
    } catch (e) {
      fail(e);
    }
  }

  function trashRow(f: FileInfo): HTMLLIElement {
    const back = h("button", { type: "button", "data-testid": "trash-undelete" }, "Restore");
    back.addEventListener("click", () => {
      back.disabled = true;
      api
        .undelete(f.file_id)
        .then((meta) => {
          succeed(`${meta.path} is back. It appears in your folder in a moment.`);
          return loadTrash();
        })
        .catch((e: unknown) => {
          fail(e);
          back.disabled = false;
        });
    });
    return h(
      "li",
      { "data-testid": "trash-item" },
      h("span", { class: "grow path" }, f.path, h("br"), h("span", { class: "muted" }, `Deleted ${formatDate(f.modified_ms)}`)),
      back,
    );
  }

  async function loadTrash(): Promise<void> {
    try {
      const files = await api.listTrash();
      trash.replaceChildren(...files.map(trashRow));
      trashEmpty.hidden = files.length > 0;
    } catch (e) {
      fail(e);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = query.value.trim();
    if (text === "") {
      setMessage(noResults, "Type part of a file name to search.");
      return;
    }
    search.disabled = true;
    api
      .searchFiles(text)
      .then((files) => {
        setMessage(error, null);
        results.replaceChildren(...files.map(fileRow));
        setMessage(noResults, files.length === 0 ? `No file matches “${text}”. Deleted files are in the trash below.` : null);
      })
      .catch(fail)
      .finally(() => {
        search.disabled = false;
      });
  });

  void loadTrash();
  if (opened?.problem) setMessage(error, opened.problem);
  if (opened?.path) {
    query.value = opened.path.split("/").pop() ?? opened.path;
    void showHistory(opened.path);
  }
  return { element };
}
