// The signed-in pages against a mocked backend (mockIPC): navigation, Activity, Devices,
// Conflicts, History & Trash and Settings — what each shows and which command each click sends.
import { afterEach, describe, expect, test } from "vitest";
import { clearMocks } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import type { Conflict, Device, FileInfo, History, Settings } from "../src/api";
import { overallProgress } from "../src/activity";
import { conflictLabels } from "../src/conflicts";
import { devicesPage } from "../src/devices";
import { parseLimit } from "../src/settings";
import { Harness, settle, status, syncingSession, type Handler } from "./support";

let harness: Harness;

async function boot(handlers: Record<string, Handler>): Promise<Harness> {
  harness = new Harness({ get_session: () => syncingSession, get_status: () => status(), ...handlers });
  await harness.app.start();
  return harness;
}

async function go(page: string): Promise<void> {
  harness.byTestId(`nav-${page}`).click();
  await settle();
}

afterEach(() => {
  harness?.app.stop();
  clearMocks();
});

const laptop: Device = {
  device_id: "dev-laptop",
  name: "ada-laptop",
  platform: "linux",
  last_seen_ms: Date.now(),
  online: true,
  revoked: false,
  this_device: true,
};
const phone: Device = {
  device_id: "dev-desk",
  name: "office desktop",
  platform: "windows",
  last_seen_ms: Date.now() - 2 * 3_600_000,
  online: false,
  revoked: false,
  this_device: false,
};

const report: FileInfo = {
  file_id: "f-1",
  path: "docs/report.txt",
  rev: 3,
  size: 1200,
  deleted: false,
  modified_ms: 1_700_000_000_000,
};
const reportHistory: History = {
  file: report,
  revisions: [
    { rev: 3, path: report.path, size: 1200, deleted: false, modified_ms: 1_700_000_300_000, origin_device: "dev-laptop" },
    { rev: 2, path: report.path, size: 900, deleted: false, modified_ms: 1_700_000_200_000, origin_device: "dev-desk" },
    { rev: 1, path: report.path, size: 10, deleted: false, modified_ms: 1_700_000_100_000, origin_device: "dev-laptop" },
  ],
};
const trashed: FileInfo = { file_id: "f-9", path: "old/plan.odt", rev: 4, size: 0, deleted: true, modified_ms: 1_700_000_000_000 };

const conflict: Conflict = {
  path: "notes (conflicted copy from ada-laptop 2026-11-25 103015).txt",
  original: "notes.txt",
  device: "ada-laptop",
  from_this_device: true,
  stamp: "2026-11-25 103015",
  size: 2048,
  modified_ms: 1_700_000_000_000,
  original_exists: true,
};

const settings: Settings = {
  folder: "/home/ada/SyncSphere",
  max_upload_kib: null,
  max_download_kib: 2048,
  paused: false,
  ignore_rules: "*.log\n",
  start_at_login: false,
  start_at_login_available: true,
  notifications: true,
  session_storage: "keychain",
};

describe("navigation", () => {
  test("a syncing session opens on Status with every section in the navigation", async () => {
    await boot({});
    expect(harness.root.dataset.screen).toBe("status");
    expect(harness.texts("nav").length).toBe(1);
    expect(harness.all("nav")[0].querySelectorAll("button").length).toBe(6);
    expect(harness.byTestId("nav-status").getAttribute("aria-current")).toBe("page");
    expect(harness.byTestId("status-state").textContent).toBe("Up to date");

    await go("activity");
    expect(harness.root.dataset.screen).toBe("activity");
    expect(harness.byTestId("nav-activity").getAttribute("aria-current")).toBe("page");
    expect(harness.byTestId("nav-status").hasAttribute("aria-current")).toBe(false);
    await go("status");
    expect(harness.byTestId("status-view")).toBeTruthy();
  });
});

describe("activity", () => {
  test("overall and per-file progress follow the status stream", async () => {
    await boot({});
    await go("activity");
    expect(harness.byTestId("activity-idle").hidden).toBe(false);
    expect(harness.byTestId("activity-overall-bar").hidden).toBe(true);

    await emit(
      "status",
      status({
        state: "syncing",
        updated_ms: 5,
        transfers: [
          { path: "a.bin", direction: "upload", done: 250_000, total: 1_000_000 },
          { path: "b.bin", direction: "download", done: 750_000, total: 1_000_000 },
          { path: "c.bin", direction: "download", done: 10, total: 0 },
        ],
        recent: [{ path: "x.txt", action: "uploaded", at_ms: Date.now() }],
      }),
    );
    const bar = harness.byTestId<HTMLProgressElement>("activity-overall-bar");
    expect([bar.value, bar.max]).toEqual([1_000_000, 2_000_000]);
    expect(harness.byTestId("activity-overall").textContent).toBe("3 files: 1.0 MB of 2.0 MB (50%)");
    expect(harness.texts("transfer-path")).toEqual(["a.bin", "b.bin", "c.bin"]);
    expect(harness.texts("recent-path")).toEqual(["x.txt"]);
    expect(harness.byTestId("activity-idle").hidden).toBe(true);
  });

  test("overallProgress counts only sizes that are known and never past 100%", () => {
    const s = status({
      transfers: [
        { path: "a", direction: "upload", done: 12, total: 10 },
        { path: "b", direction: "download", done: 5, total: 0 },
      ],
    });
    expect(overallProgress(s)).toEqual({ done: 10, total: 10 });
    expect(overallProgress(null)).toEqual({ done: 0, total: 0 });
  });
});

describe("devices", () => {
  test("lists devices with presence; unlinking takes two clicks and refreshes", async () => {
    let devices = [laptop, phone];
    await boot({
      list_devices: () => devices,
      revoke_device: () => {
        devices = [laptop, { ...phone, revoked: true }];
        return null;
      },
    });
    await go("devices");
    expect(harness.texts("device-name")).toEqual(["ada-laptop", "office desktop"]);
    expect(harness.byTestId("device-summary").textContent).toBe("2 devices, 1 online.");
    expect(harness.texts("device-where")).toEqual(["linux · Online now", "windows · Last seen 2 h ago"]);
    expect(harness.all("device-this").length).toBe(1);
    // Only the other device can be unlinked, and only after confirming.
    const revoke = harness.all<HTMLButtonElement>("device-revoke");
    expect(revoke.length).toBe(1);
    revoke[0].click();
    expect(harness.commands()).not.toContain("revoke_device");
    expect(revoke[0].textContent).toBe("Really unlink office desktop?");
    revoke[0].click();
    await settle();
    expect(harness.argsOf("revoke_device")).toEqual({ device_id: "dev-desk" });
    expect(harness.all("device-item")[1].dataset.revoked).toBe("true");
    expect(harness.all("device-revoke").length).toBe(0);
  });

  test("refreshes on its timer and when presence in the status stream changes", async () => {
    await boot({ list_devices: () => [laptop] });
    let tick: () => void = () => {};
    let stopped = false;
    const page = devicesPage({
      now: () => Date.now(),
      every: (_ms, fn) => {
        tick = fn;
        return () => {
          stopped = true;
        };
      },
    });
    await settle();
    const count = () => harness.calls.filter((c) => c.cmd === "list_devices").length;
    expect(count()).toBe(1);
    tick();
    await settle();
    expect(count()).toBe(2);
    page.update?.(status({ connected: true, online_devices: ["dev-laptop"] }));
    page.update?.(status({ connected: true, online_devices: ["dev-laptop"], synced_files: 9 }));
    expect(count()).toBe(2);
    // Another device came online.
    page.update?.(status({ connected: true, online_devices: ["dev-desk", "dev-laptop"] }));
    await settle();
    expect(count()).toBe(3);
    // This computer lost its connection.
    page.update?.(status({ connected: false, online_devices: [] }));
    await settle();
    expect(count()).toBe(4);
    page.dispose?.();
    expect(stopped).toBe(true);
  });

  test("an unreachable server is explained", async () => {
    await boot({
      list_devices: () =>
        Promise.reject({ code: "offline", message: "Could not load your devices. The server cannot be reached. Check your internet connection and try again." }),
    });
    await go("devices");
    const error = harness.byTestId("devices-error");
    expect(error.hidden).toBe(false);
    expect(error.textContent).toMatch(/cannot be reached.*try again/);
  });
});

describe("conflicts", () => {
  test("Keep mine sends keep_copy for a copy of this computer's version, then the list empties", async () => {
    let conflicts = [conflict];
    await boot({
      list_conflicts: () => conflicts,
      resolve_conflict: () => {
        conflicts = [];
        return null;
      },
    });
    await go("conflicts");
    expect(harness.texts("conflict-original")).toEqual(["notes.txt"]);
    expect(harness.byTestId("conflict-copy").textContent).toContain("Copy from ada-laptop (2026-11-25 103015, 2.0 KB)");
    expect(harness.byTestId("conflict-keep_copy").textContent).toBe("Keep mine");
    expect(harness.byTestId("conflict-keep_original").textContent).toBe("Keep theirs");
    harness.byTestId("conflict-keep_copy").click();
    await settle();
    expect(harness.argsOf("resolve_conflict")).toEqual({ path: conflict.path, action: "keep_copy" });
    expect(harness.byTestId("conflicts-empty").hidden).toBe(false);
    expect(harness.byTestId("conflicts-notice").textContent).toBe("The copy's version is now the file.");
  });

  test("open, reveal and a refused resolution", async () => {
    await boot({
      list_conflicts: () => [conflict],
      open_file: () => null,
      reveal_file: () => null,
      resolve_conflict: () =>
        Promise.reject({
          code: "failed",
          message: "Could not settle the conflict. 'notes.txt' has changes that are not on the server yet; wait until SyncSphere is up to date, then try again.",
        }),
    });
    await go("conflicts");
    harness.byTestId("conflict-open-original").click();
    await settle();
    expect(harness.argsOf("open_file")).toEqual({ path: "notes.txt" });
    harness.byTestId("conflict-reveal").click();
    await settle();
    expect(harness.argsOf("reveal_file")).toEqual({ path: conflict.path });
    harness.byTestId("conflict-keep_original").click();
    await settle();
    expect(harness.byTestId("conflicts-error").textContent).toMatch(/wait until SyncSphere is up to date/);
    expect(harness.all("conflict-item").length).toBe(1);
  });

  test("a copy from another device is labelled by that device", () => {
    const labels = conflictLabels({ ...conflict, device: "office", from_this_device: false });
    expect(labels).toEqual({ keep_copy: "Keep office's", keep_original: "Keep current", keep_both: "Keep both" });
  });
});

describe("history and trash", () => {
  test("search, list versions, restore an older one", async () => {
    await boot({
      list_trash: () => [],
      search_files: () => [report],
      file_history: () => reportHistory,
      restore_revision: () => ({ ...report, rev: 4, size: 900 }),
    });
    await go("history");
    expect(harness.byTestId("trash-empty").hidden).toBe(false);
    harness.byTestId<HTMLInputElement>("history-query").value = "report";
    harness.byTestId<HTMLFormElement>("history-form").requestSubmit();
    await settle();
    expect(harness.argsOf("search_files")).toEqual({ query: "report" });
    harness.byTestId("history-show-versions").click();
    await settle();
    expect(harness.argsOf("file_history")).toEqual({ path: "docs/report.txt" });
    expect(harness.byTestId("history-file").textContent).toBe("Versions of docs/report.txt");
    const versions = harness.all("history-version");
    expect(versions.map((v) => v.dataset.rev)).toEqual(["3", "2", "1"]);
    // The current version cannot be "restored"; the older ones can.
    expect(versions[0].querySelector("[data-testid=history-restore]")).toBeNull();
    versions[1].querySelector<HTMLButtonElement>("[data-testid=history-restore]")!.click();
    await settle();
    expect(harness.argsOf("restore_revision")).toEqual({ file_id: "f-1", rev: 2 });
    expect(harness.byTestId("history-notice").textContent).toMatch(/^Restored docs\/report.txt to how it was on .*in a moment\.$/);
  });

  test("an empty search and a search with no match are explained", async () => {
    await boot({ list_trash: () => [], search_files: () => [] });
    await go("history");
    harness.byTestId<HTMLFormElement>("history-form").requestSubmit();
    await settle();
    expect(harness.commands()).not.toContain("search_files");
    expect(harness.byTestId("history-no-results").textContent).toBe("Type part of a file name to search.");
    harness.byTestId<HTMLInputElement>("history-query").value = "zzz";
    harness.byTestId<HTMLFormElement>("history-form").requestSubmit();
    await settle();
    expect(harness.byTestId("history-no-results").textContent).toMatch(/No file matches “zzz”/);
  });

  test("undelete brings a file back out of the trash", async () => {
    let trash = [trashed];
    await boot({
      list_trash: () => trash,
      undelete: () => {
        trash = [];
        return { ...trashed, deleted: false, rev: 5 };
      },
    });
    await go("history");
    expect(harness.texts("trash-item")[0]).toContain("old/plan.odt");
    harness.byTestId("trash-undelete").click();
    await settle();
    expect(harness.argsOf("undelete")).toEqual({ file_id: "f-9" });
    expect(harness.byTestId("history-notice").textContent).toBe("old/plan.odt is back. It appears in your folder in a moment.");
    expect(harness.all("trash-item").length).toBe(0);
    expect(harness.byTestId("trash-empty").hidden).toBe(false);
  });

  test("a name taken meanwhile is explained with what to do", async () => {
    await boot({
      list_trash: () => [trashed],
      undelete: () =>
        Promise.reject({
          code: "conflict",
          message: "Could not bring the file back. 'old/plan.odt' already exists. Move or rename what is in the way, then retry.",
        }),
    });
    await go("history");
    harness.byTestId("trash-undelete").click();
    await settle();
    expect(harness.byTestId("history-error").textContent).toMatch(/already exists\. Move or rename/);
    expect(harness.byTestId<HTMLButtonElement>("trash-undelete").disabled).toBe(false);
  });
});

describe("a launch asking for a file (file manager actions)", () => {
  test("--history at start opens the History page on that file's versions", async () => {
    await boot({
      take_open_request: () => ({ page: "history", path: "docs/report.txt", problem: null }),
      list_trash: () => [],
      file_history: () => reportHistory,
    });
    await settle();
    expect(harness.root.dataset.screen).toBe("history");
    expect(harness.argsOf("file_history")).toEqual({ path: "docs/report.txt" });
    expect(harness.byTestId<HTMLInputElement>("history-query").value).toBe("report.txt");
    expect(harness.all("history-version").map((v) => v.dataset.rev)).toEqual(["3", "2", "1"]);
  });

  test("--show from a second launch shows the file on the Activity page and reveals it", async () => {
    await boot({ take_open_request: () => null, reveal_file: () => null });
    expect(harness.root.dataset.screen).toBe("status");
    await emit("open_request", { page: "activity", path: "x.txt", problem: null });
    await settle();
    expect(harness.root.dataset.screen).toBe("activity");
    expect(harness.byTestId("activity-focus-path").textContent).toContain("x.txt");
    await emit("status", status({ updated_ms: 9, recent: [{ path: "x.txt", action: "downloaded", at_ms: Date.now() }] }));
    expect(harness.byTestId("activity-focus-state").textContent).toBe("Downloaded just now");
    expect(harness.all("recent-item")[0].dataset.focused).toBe("true");
    harness.byTestId("activity-focus-reveal").click();
    await settle();
    expect(harness.argsOf("reveal_file")).toEqual({ path: "x.txt" });
  });

  test("a file outside the synced folder is explained", async () => {
    await boot({ take_open_request: () => null, list_trash: () => [] });
    await emit("open_request", { page: "history", path: null, problem: "/etc/passwd is not in your SyncSphere folder." });
    await settle();
    expect(harness.byTestId("history-error").textContent).toBe("/etc/passwd is not in your SyncSphere folder.");
    expect(harness.commands()).not.toContain("file_history");
  });
});

describe("settings", () => {
  test("shows the settings and saves limits and ignore rules", async () => {
    await boot({
      get_settings: () => settings,
      save_settings: () => ({ ...settings, max_upload_kib: 500, ignore_rules: "*.log\nbuild/\n" }),
    });
    await go("settings");
    expect(harness.byTestId("settings-folder").textContent).toBe("/home/ada/SyncSphere");
    expect(harness.byTestId<HTMLInputElement>("settings-upload").value).toBe("");
    expect(harness.byTestId<HTMLInputElement>("settings-download").value).toBe("2048");
    expect(harness.byTestId<HTMLTextAreaElement>("settings-ignore").value).toBe("*.log\n");

    harness.byTestId<HTMLInputElement>("settings-upload").value = " 500 ";
    harness.byTestId<HTMLInputElement>("settings-download").value = "";
    harness.byTestId<HTMLTextAreaElement>("settings-ignore").value = "*.log\nbuild/\n";
    harness.byTestId<HTMLFormElement>("settings-view").requestSubmit();
    await settle();
    expect(harness.argsOf("save_settings")).toEqual({
      max_upload_kib: 500,
      max_download_kib: null,
      ignore_rules: "*.log\nbuild/\n",
    });
    expect(harness.byTestId("settings-notice").textContent).toBe("Saved.");
  });

  test("a limit that is not a number is explained before anything is sent", async () => {
    await boot({ get_settings: () => settings });
    await go("settings");
    harness.byTestId<HTMLInputElement>("settings-upload").value = "fast";
    harness.byTestId<HTMLFormElement>("settings-view").requestSubmit();
    await settle();
    expect(harness.commands()).not.toContain("save_settings");
    expect(harness.byTestId("settings-error").textContent).toMatch(/whole number/);
  });

  test("Pause and Resume", async () => {
    await boot({ get_settings: () => settings, set_paused: (args) => ({ ...settings, paused: (args as { paused: boolean }).paused }) });
    await go("settings");
    const pause = harness.byTestId("settings-pause");
    expect(pause.textContent).toBe("Pause syncing");
    pause.click();
    await settle();
    expect(harness.argsOf("set_paused")).toEqual({ paused: true });
    expect(pause.textContent).toBe("Resume syncing");
    pause.click();
    await settle();
    expect(harness.argsOf("set_paused")).toEqual({ paused: false });
  });

  test("Start at login switches through set_start_at_login, and is explained where unavailable", async () => {
    await boot({
      get_settings: () => settings,
      set_start_at_login: (args) => ({ ...settings, start_at_login: (args as { enabled: boolean }).enabled }),
    });
    await go("settings");
    const box = harness.byTestId<HTMLInputElement>("settings-start-at-login");
    expect([box.checked, box.disabled]).toEqual([false, false]);
    expect(harness.byTestId("settings-start-at-login-unavailable").hidden).toBe(true);
    box.click();
    await settle();
    expect(harness.argsOf("set_start_at_login")).toEqual({ enabled: true });
    expect(box.checked).toBe(true);
    expect(harness.byTestId("settings-notice").textContent).toBe("SyncSphere starts when you log in.");

    harness.app.stop();
    clearMocks();
    await boot({ get_settings: () => ({ ...settings, start_at_login_available: false }) });
    await go("settings");
    expect(harness.byTestId<HTMLInputElement>("settings-start-at-login").disabled).toBe(true);
    expect(harness.byTestId("settings-start-at-login-unavailable").hidden).toBe(false);
  });

  test("says where the sign-in is kept: the keychain, or the private file without one", async () => {
    await boot({ get_settings: () => settings });
    await go("settings");
    const line = harness.byTestId("settings-session-storage");
    expect([line.hidden, line.textContent]).toEqual([false, "Your sign-in is kept in the system keychain."]);

    harness.app.stop();
    clearMocks();
    await boot({ get_settings: () => ({ ...settings, session_storage: "file" }) });
    await go("settings");
    expect(harness.byTestId("settings-session-storage").textContent).toMatch(/file only you can read: no keychain service/);

    harness.app.stop();
    clearMocks();
    await boot({ get_settings: () => ({ ...settings, session_storage: null }) });
    await go("settings");
    expect(harness.byTestId("settings-session-storage").hidden).toBe(true);
  });

  test("notifications switch through set_notifications, and a failure puts the box back", async () => {
    await boot({
      get_settings: () => settings,
      set_notifications: (args) => ({ ...settings, notifications: (args as { enabled: boolean }).enabled }),
    });
    await go("settings");
    const box = harness.byTestId<HTMLInputElement>("settings-notifications");
    expect(box.checked).toBe(true);
    box.click();
    await settle();
    expect(harness.argsOf("set_notifications")).toEqual({ enabled: false });
    expect(box.checked).toBe(false);
    expect(harness.byTestId("settings-notice").textContent).toBe("Notifications are off.");

    harness.on({ set_notifications: () => Promise.reject({ code: "settings", message: "Could not write desktop.json." }) });
    box.click();
    await settle();
    expect(box.checked).toBe(false);
    expect(box.disabled).toBe(false);
    expect(harness.byTestId("settings-error").textContent).toBe("Could not write desktop.json.");
  });

  test("Change password sends the current and the new password, and says how it went", async () => {
    await boot({
      get_settings: () => settings,
      change_password: (args) =>
        (args as { current: string }).current === "Right-passw0rd"
          ? null
          : Promise.reject({ code: "not_signed_in", message: "Could not change the password. The current password is not right." }),
    });
    await go("settings");
    harness.byTestId("settings-change-password").click();
    await settle();
    expect(harness.byTestId("settings-error").textContent).toBe("Enter your current password and a new one.");
    expect(harness.commands()).not.toContain("change_password");
    const type = (id: string, value: string) => {
      harness.byTestId<HTMLInputElement>(id).value = value;
    };
    type("settings-current-password", "Wrong-passw0rd");
    type("settings-new-password", "Newer-passw0rd");
    harness.byTestId("settings-change-password").click();
    await settle();
    expect(harness.byTestId("settings-error").textContent).toBe(
      "Could not change the password. The current password is not right.",
    );
    type("settings-current-password", "Right-passw0rd");
    harness.byTestId("settings-change-password").click();
    await settle();
    expect(harness.argsOf("change_password")).toEqual({ current: "Right-passw0rd", new_password: "Newer-passw0rd" });
    expect(harness.byTestId("settings-notice").textContent).toBe("Password changed. Your devices stay signed in.");
    expect(harness.byTestId<HTMLInputElement>("settings-new-password").value).toBe("");
  });

  test("Sign out of all devices asks first, then ends every session and says so", async () => {
    const signedOut = { ...syncingSession, signed_in: false, email: null, folder: null, syncing: false };
    await boot({ get_settings: () => settings });
    await go("settings");
    const ask = harness.byTestId("settings-sign-out-everywhere-ask");
    expect(ask.hidden).toBe(true);
    harness.byTestId("settings-sign-out-everywhere").click();
    expect(ask.hidden).toBe(false);
    harness.byTestId("settings-sign-out-everywhere-cancel").click();
    expect(ask.hidden).toBe(true);
    expect(harness.commands()).not.toContain("sign_out_everywhere");

    // Offline: nothing changes, the error says why.
    harness.on({
      sign_out_everywhere: () =>
        Promise.reject({ code: "offline", message: "Could not sign out of all devices. The server cannot be reached." }),
    });
    harness.byTestId("settings-sign-out-everywhere").click();
    harness.byTestId("settings-sign-out-everywhere-confirm").click();
    await settle();
    expect(harness.byTestId("settings-error").textContent).toBe(
      "Could not sign out of all devices. The server cannot be reached.",
    );
    expect(harness.root.dataset.screen).not.toBe("signin");
    expect(harness.byTestId<HTMLButtonElement>("settings-sign-out-everywhere-confirm").disabled).toBe(false);

    harness.on({ sign_out_everywhere: () => signedOut });
    harness.byTestId("settings-sign-out-everywhere-confirm").click();
    await settle();
    expect(harness.commands().filter((c) => c === "sign_out_everywhere").length).toBe(2);
    expect(harness.root.dataset.screen).toBe("signin");
    expect(harness.root.textContent).toContain("Signed out of all devices.");
  });

  test.each([
    ["", null],
    ["0", null],
    [" 250 ", 250],
    ["1.5", "Enter a whole number of KiB/s, or leave it empty for no limit."],
    ["-3", "Enter a whole number of KiB/s, or leave it empty for no limit."],
  ])("limit %j reads %j", (text, expected) => {
    expect(parseLimit(text)).toBe(expected);
  });
});
