// The signed-in window: a navigation bar over one page at a time. Each page is a module with a
// `…Page()` function returning a `Page`; the app forwards status events to the shown page.
import type { Status } from "./api";
import { h } from "./dom";

export type PageName = "status" | "activity" | "devices" | "conflicts" | "history" | "settings";

export const PAGE_TITLES: Record<PageName, string> = {
  status: "Status",
  activity: "Activity",
  devices: "Devices",
  conflicts: "Conflicts",
  history: "History & Trash",
  settings: "Settings",
};

export const PAGES = Object.keys(PAGE_TITLES) as PageName[];

export interface Page {
  element: HTMLElement;
  /** Called with every status event while the page is shown. */
  update?(status: Status | null): void;
  /** Called when the page is left (stop timers). */
  dispose?(): void;
}

export interface Shell {
  element: HTMLElement;
  /** Marks `name` as the current page and shows `page` below the navigation. */
  show(name: PageName, page: Page): void;
}

export function shellView(go: (name: PageName) => void): Shell {
  const buttons = PAGES.map((name) => {
    const button = h("button", { type: "button", class: "nav", "data-testid": `nav-${name}`, "data-page": name }, PAGE_TITLES[name]);
    button.addEventListener("click", () => go(name));
    return button;
  });
  const content = h("div", { class: "page", "data-testid": "page" });
  const element = h(
    "div",
    { class: "shell", "data-testid": "shell" },
    h("nav", { "aria-label": "Sections", "data-testid": "nav" }, ...buttons),
    content,
  );
  return {
    element,
    show(name, page) {
      for (const button of buttons) {
        if (button.dataset.page === name) button.setAttribute("aria-current", "page");
        else button.removeAttribute("aria-current");
      }
      content.replaceChildren(page.element);
    },
  };
}

/** "12 Mar 2026, 14:05" in the user's locale. */
export function formatDate(ms: number): string {
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
