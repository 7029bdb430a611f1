// Conflicts page: the conflicted copies in the synced folder, each with Keep mine / Keep theirs
// / Keep both, and buttons to open either version or show it in the file manager.
import * as api from "./api";
import type { Conflict, ConflictAction } from "./api";
import { h, setMessage } from "./dom";
import type { Page } from "./shell";
import { formatBytes } from "./status";

/** Button labels: "mine" is the version of this computer, whichever file holds it. */
export function conflictLabels(c: Conflict): Record<ConflictAction, string> {
  return c.from_this_device
    ? { keep_copy: "Keep mine", keep_original: "Keep theirs", keep_both: "Keep both" }
    : { keep_copy: `Keep ${c.device}'s`, keep_original: "Keep current", keep_both: "Keep both" };
}

const DONE: Record<ConflictAction, string> = {
  keep_copy: "The copy's version is now the file.",
  keep_original: "The copy was removed; the file stays as it is.",
  keep_both: "Both are kept; the copy has a plain name now.",
};

export function conflictsPage(): Page {
  const list = h("ul", { class: "rows", "data-testid": "conflict-list" });
  const empty = h("p", { class: "muted", "data-testid": "conflicts-empty" }, "No conflicts. Everything is in one piece.");
  const notice = h("p", { class: "notice", role: "status", "data-testid": "conflicts-notice" });
  const error = h("p", { class: "error", role: "alert", "data-testid": "conflicts-error" });
  setMessage(notice, null);
  setMessage(error, null);
  empty.hidden = true;
  const element = h(
    "section",
    { class: "card", "data-testid": "conflicts-view" },
    h("h1", {}, "Conflicts"),
    h(
      "p",
      { class: "hint" },
      "When a file changed on two devices at once, both versions are kept: the other one as a “conflicted copy”. Pick what to keep.",
    ),
    notice,
    error,
    empty,
    list,
  );

  function act(button: HTMLButtonElement, work: () => Promise<unknown>, done: string | null): void {
    button.disabled = true;
    setMessage(error, null);
    work()
      .then(() => {
        setMessage(notice, done);
        return done ? refresh() : undefined;
      })
      .catch((e: unknown) => setMessage(error, api.errorMessage(e)))
      .finally(() => {
        button.disabled = false;
      });
  }

  function row(c: Conflict): HTMLLIElement {
    const labels = conflictLabels(c);
    const actions = (Object.keys(labels) as ConflictAction[]).map((action) => {
      const b = h("button", { type: "button", "data-testid": `conflict-${action}` }, labels[action]);
      b.addEventListener("click", () => act(b, () => api.resolveConflict(c.path, action), DONE[action]));
      return b;
    });
    const openCopy = h("button", { type: "button", class: "small", "data-testid": "conflict-open-copy" }, "Open copy");
    openCopy.addEventListener("click", () => act(openCopy, () => api.openFile(c.path), null));
    const openOriginal = h("button", { type: "button", class: "small", "data-testid": "conflict-open-original" }, "Open current");
    openOriginal.disabled = !c.original_exists;
    openOriginal.addEventListener("click", () => act(openOriginal, () => api.openFile(c.original), null));
    const reveal = h("button", { type: "button", class: "small", "data-testid": "conflict-reveal" }, "Show in folder");
    reveal.addEventListener("click", () => act(reveal, () => api.revealFile(c.path), null));
    return h(
      "li",
      { "data-testid": "conflict-item", class: "stack" },
      h("strong", { class: "path", "data-testid": "conflict-original" }, c.original),
      h(
        "span",
        { class: "muted", "data-testid": "conflict-copy" },
        `Copy from ${c.device} (${c.stamp}, ${formatBytes(c.size)}): ${c.path}`,
      ),
      h("div", { class: "actions tight" }, ...actions),
      h("div", { class: "actions tight" }, openCopy, openOriginal, reveal),
    );
  }

  async function refresh(): Promise<void> {
    try {
      const conflicts = await api.listConflicts();
      list.replaceChildren(...conflicts.map(row));
      empty.hidden = conflicts.length > 0;
    } catch (e) {
      setMessage(error, api.errorMessage(e));
    }
  }

  void refresh();
  return { element };
}
