// The status page's answers to the engine's safety stops, against a mocked backend (mockIPC):
// a missing folder (Locate folder…, Start over with an empty folder), held deletions (Delete
// everywhere / Restore files) and the paths that do not sync.
import { afterEach, describe, expect, test } from "vitest";
import { clearMocks } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import type { ErrorKind, PendingDeletes, Status } from "../src/api";
import { errorShownInPanel, pendingSummary, sentence } from "../src/safety";
import { Harness, settle, status, syncingSession, type Handler } from "./support";

let harness: Harness;

async function boot(first: Status, handlers: Record<string, Handler> = {}): Promise<Harness> {
  harness = new Harness({ get_session: () => syncingSession, get_status: () => first, ...handlers });
  await harness.app.start();
  await settle();
  return harness;
}

afterEach(() => {
  harness?.app.stop();
  clearMocks();
});

const MISSING =
  "the synced folder /media/usb/SyncSphere is missing: it may have been moved, renamed or deleted, or be on a drive that is not mounted. Nothing was deleted; sync resumes when it is back";

function folderProblem(kind: ErrorKind = "folder_missing", overrides: Partial<Status> = {}): Status {
  return status({
    state: "error",
    connected: false,
    folder: "/media/usb/SyncSphere",
    error_kind: kind,
    last_error: MISSING,
    updated_ms: 2,
    ...overrides,
  });
}

const held: PendingDeletes = {
  count: 240,
  synced_files: 300,
  sample: ["docs/a.txt", "docs/b.txt", "photos/c.jpg"],
  fingerprint: "fp-240",
};

function holding(p: PendingDeletes = held, overrides: Partial<Status> = {}): Status {
  return status({
    state: "error",
    error_kind: "mass_delete_pending",
    last_error: "240 of 300 synced files are no longer in the folder; …",
    pending_deletes: p,
    updated_ms: 3,
    ...overrides,
  });
}

const shown = (id: string) => !harness.byTestId(id).hidden;

describe("a missing folder", () => {
  test("shows its message, says nothing was deleted, and offers Locate and Start over", async () => {
    await boot(folderProblem());
    expect(shown("folder-problem")).toBe(true);
    expect(harness.byTestId("folder-problem-title").textContent).toBe("Your SyncSphere folder is missing");
    expect(harness.byTestId("folder-problem-message").textContent).toBe(
      "The synced folder /media/usb/SyncSphere is missing: it may have been moved, renamed or deleted, or be on a drive that is not mounted. Nothing was deleted; sync resumes when it is back.",
    );
    expect(harness.byTestId("folder-problem").textContent).toMatch(/Nothing was deleted, here or on the server\./);
    expect(harness.byTestId("folder-locate").textContent).toBe("Locate folder…");
    expect(harness.byTestId("folder-start-over").textContent).toBe("Start over with an empty folder");
    // The message is in the panel, not twice on the page.
    expect(harness.byTestId("status-error").hidden).toBe(true);
    expect(harness.byTestId("folder-locate-form").hidden).toBe(true);
    expect(harness.byTestId("folder-start-over-confirmation").hidden).toBe(true);
  });

  test.each<[ErrorKind, string]>([
    ["folder_missing", "Your SyncSphere folder is missing"],
    ["folder_not_a_directory", "Your SyncSphere folder was replaced by a file"],
    ["folder_marker_missing", "Your SyncSphere folder is not there"],
  ])("%s shows the panel", async (kind, title) => {
    await boot(folderProblem(kind));
    expect(shown("folder-problem")).toBe(true);
    expect(harness.byTestId("folder-problem").dataset.kind).toBe(kind);
    expect(harness.byTestId("folder-problem-title").textContent).toBe(title);
  });

  test("other errors do not show it, and the engine finding the folder again hides it", async () => {
    await boot(status({ state: "error", error_kind: "server", last_error: "The server refused.", updated_ms: 2 }));
    expect(shown("folder-problem")).toBe(false);
    expect(harness.byTestId("status-error").textContent).toBe("The server refused.");

    await emit("status", folderProblem());
    expect(shown("folder-problem")).toBe(true);
    await emit("status", status({ state: "syncing", folder: "/media/usb/SyncSphere", updated_ms: 9 }));
    expect(shown("folder-problem")).toBe(false);
  });

  test("Locate folder… starts sync with the folder the user types", async () => {
    await boot(folderProblem(), {
      start_sync: (args) => status({ state: "starting", folder: (args as { folder: string }).folder, updated_ms: 10 }),
    });
    harness.byTestId("folder-locate").click();
    expect(shown("folder-locate-form")).toBe(true);
    const input = harness.byTestId<HTMLInputElement>("folder-locate-input");
    expect(input.value).toBe("/media/usb/SyncSphere");
    // An empty path is explained without a command.
    input.value = "  ";
    harness.byTestId<HTMLFormElement>("folder-locate-form").requestSubmit();
    await settle();
    expect(harness.commands()).not.toContain("start_sync");
    expect(harness.byTestId("folder-problem-error").textContent).toBe("Choose a folder to sync.");

    input.value = " /media/usb2/SyncSphere ";
    harness.byTestId<HTMLFormElement>("folder-locate-form").requestSubmit();
    await settle();
    expect(harness.argsOf("start_sync")).toEqual({ folder: "/media/usb2/SyncSphere" });
    expect(harness.commands()).not.toContain("start_over");
    expect(shown("folder-problem")).toBe(false);
    expect(harness.byTestId("status-folder").textContent).toBe("/media/usb2/SyncSphere");
  });

  test("the locate form stays open while the engine repeats the problem, and a refusal is explained", async () => {
    await boot(folderProblem(), {
      start_sync: () =>
        Promise.reject({ code: "invalid_folder", message: "/media/usb2/SyncSphere is a file, not a folder." }),
    });
    harness.byTestId("folder-locate").click();
    const input = harness.byTestId<HTMLInputElement>("folder-locate-input");
    input.value = "/media/usb2/SyncSphere";
    // The engine checks again with backoff while the user types.
    await emit("status", folderProblem("folder_missing", { updated_ms: 5 }));
    expect(shown("folder-locate-form")).toBe(true);
    expect(input.value).toBe("/media/usb2/SyncSphere");
    harness.byTestId<HTMLFormElement>("folder-locate-form").requestSubmit();
    await settle();
    expect(harness.byTestId("folder-problem-error").textContent).toBe(
      "Could not sync that folder. /media/usb2/SyncSphere is a file, not a folder.",
    );
    expect(harness.byTestId<HTMLButtonElement>("folder-locate-submit").disabled).toBe(false);
    expect(shown("folder-problem")).toBe(true);
  });

  test("Start over asks first — everything downloads again, nothing is deleted — then calls start_over", async () => {
    await boot(folderProblem(), { start_over: () => status({ state: "starting", folder: "/media/usb/SyncSphere", updated_ms: 10 }) });
    harness.byTestId("folder-start-over").click();
    await settle();
    expect(harness.commands()).not.toContain("start_over");
    expect(shown("folder-start-over-confirmation")).toBe(true);
    const text = harness.byTestId("folder-start-over-text").textContent;
    expect(text).toMatch(/downloaded again into \/media\/usb\/SyncSphere/);
    expect(text).toMatch(/Nothing is deleted/);

    harness.byTestId("folder-start-over-cancel").click();
    expect(shown("folder-start-over-confirmation")).toBe(false);
    expect(harness.commands()).not.toContain("start_over");

    harness.byTestId("folder-start-over").click();
    harness.byTestId("folder-start-over-confirm").click();
    await settle();
    expect(harness.commands()).toEqual(["start_over"]);
    expect(shown("folder-problem")).toBe(false);
    expect(harness.byTestId("status-state").dataset.state).toBe("starting");
  });

  test("a refused start over is explained and can be tried again", async () => {
    await boot(folderProblem(), {
      start_over: () => Promise.reject({ code: "in_use", message: "Another SyncSphere client is using this computer's SyncSphere settings." }),
    });
    harness.byTestId("folder-start-over").click();
    harness.byTestId("folder-start-over-confirm").click();
    await settle();
    expect(harness.byTestId("folder-problem-error").textContent).toBe(
      "Could not start over. Another SyncSphere client is using this computer's SyncSphere settings.",
    );
    expect(harness.byTestId<HTMLButtonElement>("folder-start-over-confirm").disabled).toBe(false);
  });
});

describe("held deletions", () => {
  test("show the count, the sample and answer with the fingerprint: Restore files", async () => {
    await boot(holding(), { decide_deletes: () => null });
    expect(shown("deletes-pending")).toBe(true);
    expect(harness.byTestId("deletes-summary").textContent).toBe("240 of 300 synced files are no longer in your SyncSphere folder.");
    expect(harness.texts("deletes-sample-item")).toEqual(["docs/a.txt", "docs/b.txt", "photos/c.jpg"]);
    expect(harness.byTestId("deletes-more").textContent).toBe("…and 237 more.");
    expect(harness.byTestId("status-error").hidden).toBe(true);

    harness.byTestId("deletes-restore").click();
    await settle();
    expect(harness.commands()).toEqual(["decide_deletes"]);
    expect(harness.argsOf("decide_deletes")).toEqual({ fingerprint: "fp-240", decision: "restore" });
    expect(harness.byTestId("deletes-notice").textContent).toMatch(/^Restoring the files/);
    // Answered: no second answer to the same set.
    expect(harness.byTestId<HTMLButtonElement>("deletes-restore").disabled).toBe(true);
    expect(harness.byTestId<HTMLButtonElement>("deletes-delete-everywhere").disabled).toBe(true);

    // The engine took the answer.
    await emit("status", status({ state: "syncing", updated_ms: 20 }));
    expect(shown("deletes-pending")).toBe(false);
  });

  test("Delete everywhere answers a new set with its own fingerprint", async () => {
    await boot(holding(), { decide_deletes: () => null });
    harness.byTestId("deletes-restore").click();
    await settle();
    // Meanwhile more files went: another set, another question.
    const more = { ...held, count: 250, sample: ["docs/a.txt"], fingerprint: "fp-250" };
    await emit("status", holding(more, { updated_ms: 30 }));
    expect(harness.byTestId<HTMLButtonElement>("deletes-delete-everywhere").disabled).toBe(false);
    expect(harness.byTestId("deletes-notice").hidden).toBe(true);
    expect(harness.byTestId("deletes-summary").textContent).toBe("250 of 300 synced files are no longer in your SyncSphere folder.");
    harness.byTestId("deletes-delete-everywhere").click();
    await settle();
    expect(harness.argsOf("decide_deletes")).toEqual({ fingerprint: "fp-250", decision: "delete_everywhere" });
    expect(harness.byTestId("deletes-notice").textContent).toMatch(/^Deleting the files/);
  });

  test("held while other changes sync, the panel shows too; a refused answer is explained", async () => {
    await boot(status({ state: "syncing", pending: 2, pending_deletes: { ...held, count: 3, sample: ["a", "b", "c"] } }), {
      decide_deletes: () => Promise.reject({ code: "failed", message: "Could not write deletes-decision.json." }),
    });
    expect(shown("deletes-pending")).toBe(true);
    expect(harness.byTestId("deletes-more").hidden).toBe(true);
    harness.byTestId("deletes-delete-everywhere").click();
    await settle();
    expect(harness.byTestId("deletes-error").textContent).toBe("Your answer was not passed on. Could not write deletes-decision.json.");
    expect(harness.byTestId<HTMLButtonElement>("deletes-delete-everywhere").disabled).toBe(false);
  });

  test("no held set, no panel", async () => {
    await boot(status());
    expect(shown("deletes-pending")).toBe(false);
    expect(pendingSummary({ ...held, count: 1 })).toBe("1 of 300 synced files is no longer in your SyncSphere folder.");
  });
});

test.each([
  ["the folder is back", "The folder is back."],
  ["Done.", "Done."],
  ["  ", ""],
])("the engine's words %j read %j", (text, expected) => {
  expect(sentence(text)).toBe(expected);
});

describe("paths that do not sync", () => {
  test("are listed with their reason, once", async () => {
    await boot(status());
    expect(shown("problems")).toBe(false);
    await emit(
      "status",
      status({
        updated_ms: 4,
        last_error: "'con.txt' is not synced: the server refuses this name",
        problems: [
          { path: "con.txt", message: "the server refuses this name" },
          { path: "big/locked.db", message: "permission denied; retrying in 5 min" },
        ],
      }),
    );
    expect(shown("problems")).toBe(true);
    const items = harness.all("problem-item").map((li) => [
      li.querySelector("[data-testid=problem-path]")?.textContent,
      li.querySelector("[data-testid=problem-message]")?.textContent,
    ]);
    expect(items).toEqual([
      ["con.txt", "the server refuses this name"],
      ["big/locked.db", "permission denied; retrying in 5 min"],
    ]);
    // The first of them is the status's error line too: not said twice.
    expect(harness.byTestId("status-error").hidden).toBe(true);
    await emit("status", status({ updated_ms: 5 }));
    expect(shown("problems")).toBe(false);
  });

  test("a real error is still shown beside them", () => {
    const s = status({ state: "error", error_kind: "server", last_error: "x", problems: [{ path: "a", message: "b" }] });
    expect(errorShownInPanel(s)).toBe(false);
  });
});
