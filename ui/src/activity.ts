// Activity page: overall progress of what is moving, each file in flight with its own bar, and
// the recently changed files — all from the status stream.
import type { Status } from "./api";
import { h } from "./dom";
import type { Page } from "./shell";
import { formatBytes, recentItem, transferItem } from "./status";

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

export function activityPage(now: () => number): Page {
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
    recent.replaceChildren(...changed.map((f) => recentItem(f, now())));
    recentEmpty.hidden = changed.length > 0;
  }

  update(null);
  return { element, update };
}
