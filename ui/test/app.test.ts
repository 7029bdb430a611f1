// The window against a mocked backend: commands via mockIPC, the `status` event via
// mockIPC's event mocking.
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import type { InvokeArgs } from "@tauri-apps/api/core";
import { App } from "../src/app";
import type { Session, Status } from "../src/api";
import { actionLabel, formatBytes, formatWhen, transferProgress } from "../src/status";
import { checkCredentials } from "../src/signin";
import { status as baseStatus } from "./support";

type Call = { cmd: string; args: InvokeArgs | undefined };
type Handler = (args: InvokeArgs | undefined) => unknown;

const signedOut: Session = {
  signed_in: false,
  email: null,
  server_url: "http://127.0.0.1:8787",
  server_locked: false,
  folder: null,
  default_folder: "/home/ada/SyncSphere",
  syncing: false,
  sync_problem: null,
};
const signedIn: Session = { ...signedOut, signed_in: true, email: "ada@example.com" };

/** A status as a sync that has just started reports it. */
function status(overrides: Partial<Status> = {}): Status {
  return baseStatus({ state: "starting", connected: false, synced_files: 0, ...overrides });
}

let calls: Call[];
let root: HTMLElement;
let app: App;

/** Starts the app with these command handlers; unknown commands fail loudly. */
async function boot(handlers: Record<string, Handler>): Promise<void> {
  mockIPC(
    (cmd, args) => {
      calls.push({ cmd, args });
      const handler = handlers[cmd];
      if (!handler) throw new Error(`unexpected command ${cmd}`);
      return handler(args);
    },
    { shouldMockEvents: true },
  );
  app = new App(root);
  await app.start();
}

const byTestId = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = root.querySelector<T>(`[data-testid="${id}"]`);
  if (!el) throw new Error(`no [data-testid=${id}] on screen ${root.dataset.screen}`);
  return el;
};

/** Lets pending promise callbacks (mocked invokes) run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

function type(id: string, value: string): void {
  byTestId<HTMLInputElement>(id).value = value;
}

beforeEach(() => {
  calls = [];
  root = document.createElement("main");
  document.body.replaceChildren(root);
});

afterEach(() => {
  app?.stop();
  clearMocks();
});

describe("sign-in", () => {
  test("Sign in sends the credentials to sign_in and moves on to the folder choice", async () => {
    await boot({ get_session: () => signedOut, sign_in: () => signedIn });
    expect(root.dataset.screen).toBe("signin");
    expect(byTestId<HTMLInputElement>("signin-server").value).toBe("http://127.0.0.1:8787");

    type("signin-email", " ada@example.com ");
    type("signin-password", "correct horse");
    byTestId<HTMLFormElement>("signin-form").requestSubmit();
    await settle();

    expect(calls.filter((c) => c.cmd !== "get_session")).toEqual([
      {
        cmd: "sign_in",
        args: { server_url: "http://127.0.0.1:8787", email: "ada@example.com", password: "correct horse" },
      },
    ]);
    expect(root.dataset.screen).toBe("folder");
    expect(byTestId<HTMLInputElement>("folder-input").value).toBe("/home/ada/SyncSphere");
    expect(byTestId("folder-email").textContent).toBe("ada@example.com");
  });

  test("a server locked by the administrator is shown read-only and used as is", async () => {
    const locked = { ...signedOut, server_url: "https://sync.example.com", server_locked: true };
    await boot({ get_session: () => locked, sign_in: () => signedIn });
    const server = byTestId<HTMLInputElement>("signin-server");
    expect(server.value).toBe("https://sync.example.com");
    expect(server.readOnly).toBe(true);
    expect(byTestId("signin-server-locked").textContent).toContain("administrator");
    expect(document.activeElement).toBe(byTestId("signin-email"));

    type("signin-email", "ada@example.com");
    type("signin-password", "pw");
    byTestId<HTMLFormElement>("signin-form").requestSubmit();
    await settle();
    expect(calls.find((c) => c.cmd === "sign_in")?.args).toMatchObject({ server_url: "https://sync.example.com" });
  });

  test("an unlocked server can be edited and has no administrator note", async () => {
    await boot({ get_session: () => signedOut });
    expect(byTestId<HTMLInputElement>("signin-server").readOnly).toBe(false);
    expect(document.querySelector('[data-testid="signin-server-locked"]')).toBeNull();
  });

  test("Create account calls sign_up", async () => {
    await boot({ get_session: () => signedOut, sign_up: () => signedIn });
    type("signin-email", "new@example.com");
    type("signin-password", "pw");
    byTestId("signup-submit").click();
    await settle();
    expect(calls.map((c) => c.cmd)).toEqual(["get_session", "sign_up"]);
    expect(root.dataset.screen).toBe("folder");
  });

  test("a new account whose pool sends a code asks for it, can resend it, and signs in with it", async () => {
    let tries = 0;
    await boot({
      get_session: () => signedOut,
      sign_up: () =>
        Promise.reject({
          code: "confirmation_needed",
          message: "Your account was created. Enter the confirmation code sent to n***@e***.",
        }),
      resend_confirmation_code: () => "A new code was sent to n***@e***.",
      confirm_sign_up: () =>
        ++tries === 1
          ? Promise.reject({ code: "confirmation_needed", message: "That confirmation code is not the one that was sent" })
          : signedIn,
    });
    expect(byTestId("signin-confirmation").hidden).toBe(true);
    type("signin-email", "new@example.com");
    type("signin-password", "Correct-horse-9");
    byTestId("signup-submit").click();
    await settle();

    expect(root.dataset.screen).toBe("signin");
    expect(byTestId("signin-confirmation").hidden).toBe(false);
    expect(byTestId("signin-code-message").textContent).toContain("n***@e***");
    expect(byTestId("signin-error").hidden).toBe(true);
    expect(document.activeElement).toBe(byTestId("signin-code"));

    // No code: explained, nothing sent.
    byTestId("signin-confirm").click();
    await settle();
    expect(byTestId("signin-error").textContent).toMatch(/Enter the confirmation code/);
    expect(calls.map((c) => c.cmd)).toEqual(["get_session", "sign_up"]);

    byTestId("signin-resend").click();
    await settle();
    expect(calls[calls.length - 1]).toEqual({
      cmd: "resend_confirmation_code",
      args: { server_url: "http://127.0.0.1:8787", email: "new@example.com" },
    });
    expect(byTestId("signin-code-message").textContent).toBe("A new code was sent to n***@e***.");

    // A wrong code is said so; the right one signs in.
    type("signin-code", " 000000 ");
    byTestId("signin-confirm").click();
    await settle();
    expect(root.dataset.screen).toBe("signin");
    expect(byTestId("signin-error").textContent).toBe(
      "Could not confirm the account. That confirmation code is not the one that was sent",
    );
    expect(byTestId<HTMLButtonElement>("signin-confirm").disabled).toBe(false);
    type("signin-code", "123456");
    byTestId("signin-confirm").click();
    await settle();
    expect(calls[calls.length - 1]).toEqual({
      cmd: "confirm_sign_up",
      args: {
        server_url: "http://127.0.0.1:8787",
        email: "new@example.com",
        password: "Correct-horse-9",
        code: "123456",
      },
    });
    expect(root.dataset.screen).toBe("folder");
  });

  test("an account with a temporary password asks for a new one and signs in with it", async () => {
    await boot({
      get_session: () => signedOut,
      sign_in: (args) =>
        (args as { new_password?: string }).new_password === undefined
          ? Promise.reject({ code: "new_password_required", message: "Your account needs a new password: choose one." })
          : signedIn,
    });
    expect(byTestId("signin-new-password-box").hidden).toBe(true);
    type("signin-email", "temp@example.com");
    type("signin-password", "Temp-0rary!");
    byTestId("signin-submit").click();
    await settle();
    expect(root.dataset.screen).toBe("signin");
    expect(byTestId("signin-new-password-box").hidden).toBe(false);
    expect(byTestId("signin-new-password-message").textContent).toBe("Your account needs a new password: choose one.");
    expect(document.activeElement).toBe(byTestId("signin-new-password"));
    // Nothing typed: explained, nothing sent.
    byTestId("signin-set-password").click();
    await settle();
    expect(byTestId("signin-error").textContent).toBe("Choose a new password.");
    expect(calls.filter((c) => c.cmd === "sign_in").length).toBe(1);
    type("signin-new-password", "Chosen-passw0rd");
    byTestId("signin-set-password").click();
    await settle();
    expect(calls[calls.length - 1]).toEqual({
      cmd: "sign_in",
      args: {
        server_url: "http://127.0.0.1:8787",
        email: "temp@example.com",
        password: "Temp-0rary!",
        new_password: "Chosen-passw0rd",
      },
    });
    expect(root.dataset.screen).toBe("folder");
  });

  test("Forgot password sends a code, then the code and a new password sign in", async () => {
    let tries = 0;
    await boot({
      get_session: () => signedOut,
      forgot_password: () => "A code was sent to a***@e***. Enter it with a new password.",
      reset_password: () =>
        ++tries === 1 ? Promise.reject({ code: "sign_in_failed", message: "That code has expired: ask for a new one" }) : signedIn,
    });
    // The email first.
    byTestId("signin-forgot").click();
    await settle();
    expect(byTestId("signin-error").textContent).toMatch(/Enter your email address/);
    expect(byTestId("signin-reset-box").hidden).toBe(true);
    type("signin-email", "ada@example.com");
    byTestId("signin-forgot").click();
    await settle();
    expect(calls[calls.length - 1]).toEqual({
      cmd: "forgot_password",
      args: { server_url: "http://127.0.0.1:8787", email: "ada@example.com" },
    });
    expect(byTestId("signin-reset-box").hidden).toBe(false);
    expect(byTestId("signin-reset-message").textContent).toContain("a***@e***");
    byTestId("signin-reset").click();
    await settle();
    expect(byTestId("signin-error").textContent).toMatch(/Enter the code/);
    type("signin-reset-code", " 123456 ");
    type("signin-reset-password", "New-passw0rd!");
    byTestId("signin-reset").click();
    await settle();
    expect(byTestId("signin-error").textContent).toBe("Could not reset the password. That code has expired: ask for a new one");
    byTestId("signin-reset").click();
    await settle();
    expect(calls[calls.length - 1]).toEqual({
      cmd: "reset_password",
      args: { server_url: "http://127.0.0.1:8787", email: "ada@example.com", code: "123456", new_password: "New-passw0rd!" },
    });
    expect(root.dataset.screen).toBe("folder");
  });

  test("a refused sign-in shows the backend's message and stays on the form", async () => {
    await boot({
      get_session: () => signedOut,
      sign_in: () => Promise.reject({ code: "sign_in_failed", message: "Wrong email or password." }),
    });
    type("signin-email", "ada@example.com");
    type("signin-password", "nope");
    byTestId<HTMLFormElement>("signin-form").requestSubmit();
    await settle();

    expect(root.dataset.screen).toBe("signin");
    const error = byTestId("signin-error");
    expect(error.hidden).toBe(false);
    expect(error.textContent).toBe("Could not sign in. Wrong email or password.");
    expect(byTestId<HTMLButtonElement>("signin-submit").disabled).toBe(false);
  });

  test("an obviously incomplete form is explained without calling the backend", async () => {
    await boot({ get_session: () => signedOut });
    type("signin-email", "not-an-email");
    byTestId<HTMLFormElement>("signin-form").requestSubmit();
    await settle();
    expect(calls.map((c) => c.cmd)).toEqual(["get_session"]);
    expect(byTestId("signin-error").textContent).toMatch(/email address/);
  });
});

describe("folder and status", () => {
  test("Start syncing calls start_sync with the folder and shows the status", async () => {
    await boot({
      get_session: () => signedIn,
      start_sync: () => status({ state: "syncing", pending: 3 }),
    });
    type("folder-input", "~/Work");
    byTestId<HTMLFormElement>("folder-form").requestSubmit();
    await settle();

    expect(calls[calls.length - 1]).toEqual({ cmd: "start_sync", args: { folder: "~/Work" } });
    expect(root.dataset.screen).toBe("status");
    expect(byTestId("status-state").textContent).toBe("Syncing");
    expect(byTestId("status-pending").textContent).toBe("3");
  });

  test("a folder problem found at start-up is shown on the folder screen", async () => {
    await boot({
      get_session: () => ({ ...signedIn, folder: "/media/usb/Sync", sync_problem: "The folder /media/usb/Sync is missing." }),
    });
    expect(root.dataset.screen).toBe("folder");
    expect(byTestId<HTMLInputElement>("folder-input").value).toBe("/media/usb/Sync");
    expect(byTestId("folder-error").textContent).toBe("The folder /media/usb/Sync is missing.");
  });

  test("status events render the state, connection, counts and recent files", async () => {
    await boot({ get_session: () => ({ ...signedIn, syncing: true, folder: "/home/ada/SyncSphere" }), get_status: () => null });
    expect(root.dataset.screen).toBe("status");
    expect(byTestId("status-state").textContent).toBe("Starting…");
    expect(byTestId("recent-empty").hidden).toBe(false);

    const now = Date.now();
    await emit(
      "status",
      status({
        state: "up_to_date",
        connected: true,
        synced_files: 42,
        updated_ms: 2,
        recent: [
          { path: "docs/report.pdf", action: "downloaded", at_ms: now },
          { path: "notes.txt", action: "conflict_copy", at_ms: now - 5 * 60_000 },
        ],
      }),
    );

    const state = byTestId("status-state");
    expect(state.textContent).toBe("Up to date");
    expect(state.dataset.state).toBe("up_to_date");
    expect(byTestId("status-connection").textContent).toBe("Online");
    expect(byTestId("status-synced").textContent).toBe("42");
    expect(byTestId("recent-empty").hidden).toBe(true);
    const items = [...byTestId("recent-list").querySelectorAll("[data-testid=recent-item]")].map((li) => [
      li.querySelector("[data-testid=recent-action]")?.textContent,
      li.querySelector("[data-testid=recent-path]")?.textContent,
      li.querySelector("time")?.textContent,
    ]);
    expect(items).toEqual([
      ["Downloaded", "docs/report.pdf", "just now"],
      ["Conflict copy saved", "notes.txt", "5 min ago"],
    ]);
    expect(byTestId("status-error").hidden).toBe(true);

    await emit("status", status({ state: "error", last_error: "The server refused the upload.", updated_ms: 3 }));
    expect(byTestId("status-state").textContent).toBe("Needs attention");
    expect(byTestId("status-connection").textContent).toBe("Offline");
    expect(byTestId("status-error").textContent).toBe("The server refused the upload.");
  });

  test("files in flight show with a progress bar each, and the totals", async () => {
    await boot({ get_session: () => ({ ...signedIn, syncing: true, folder: "/home/ada/SyncSphere" }), get_status: () => null });
    expect(byTestId("transfer-list").hidden).toBe(true);
    expect(byTestId("transfers-title").hidden).toBe(true);
    expect(byTestId("status-bytes").hidden).toBe(true);

    await emit(
      "status",
      status({
        state: "syncing",
        pending: 2,
        bytes_uploaded: 12_300_000,
        bytes_downloaded: 1_000_000_000,
        transfers: [
          { path: "video.mp4", direction: "upload", done: 12_000_000, total: 48_000_000 },
          { path: "docs/big.pdf", direction: "download", done: 3000, total: 0 },
        ],
      }),
    );
    expect(byTestId("transfer-list").hidden).toBe(false);
    const items = [...byTestId("transfer-list").querySelectorAll<HTMLLIElement>("[data-testid=transfer-item]")];
    expect(items.map((li) => li.dataset.direction)).toEqual(["upload", "download"]);
    const [up, down] = items.map((li) => li.querySelector<HTMLProgressElement>("progress")!);
    expect([up.value, up.max]).toEqual([12_000_000, 48_000_000]);
    expect(down.hasAttribute("value")).toBe(false); // size unknown yet: indeterminate
    expect(items[0].querySelector("[data-testid=transfer-progress]")?.textContent).toBe("12.0 MB of 48.0 MB (25%)");
    expect(items[1].querySelector("[data-testid=transfer-path]")?.textContent).toBe("docs/big.pdf");
    expect(byTestId("status-bytes").textContent).toBe("Sent 12.3 MB · received 1.0 GB since start");

    await emit("status", status({ state: "up_to_date", bytes_uploaded: 60_000_000, updated_ms: 5 }));
    expect(byTestId("transfer-list").hidden).toBe(true);
    expect(byTestId("transfer-list").children.length).toBe(0);
  });

  test("Sign out returns to the sign-in screen", async () => {
    await boot({
      get_session: () => ({ ...signedIn, syncing: true }),
      get_status: () => status({ state: "up_to_date" }),
      sign_out: () => signedOut,
    });
    byTestId("sign-out").click();
    await settle();
    expect(calls.map((c) => c.cmd)).toContain("sign_out");
    expect(root.dataset.screen).toBe("signin");
  });
});

describe("wording", () => {
  test.each([
    [0, "0 B"],
    [999, "999 B"],
    [1500, "1.5 KB"],
    [12_345_678, "12.3 MB"],
    [1_073_741_824, "1.1 GB"],
  ])("%d bytes read %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  test("a transfer past its size never reads over 100%", () => {
    expect(transferProgress({ path: "x", direction: "download", done: 11, total: 10 })).toBe("11 B of 10 B (100%)");
  });

  test.each([
    ["uploaded", "Uploaded"],
    ["deleted_remote", "Deleted on server"],
    ["moved_local", "Moved here"],
    ["something_new", "something new"],
  ])("action %s reads %s", (action, label) => {
    expect(actionLabel(action)).toBe(label);
  });

  test.each([
    [0, "just now"],
    [59_000, "just now"],
    [60_000, "1 min ago"],
    [3 * 3_600_000, "3 h ago"],
  ])("%i ms ago reads %s", (ago, text) => {
    const now = 1_700_000_000_000;
    expect(formatWhen(now - ago, now)).toBe(text);
  });

  test.each([
    [{ serverUrl: "127.0.0.1:8787", email: "a@b.c", password: "x" }, /server address/],
    [{ serverUrl: "http://h", email: "", password: "x" }, /email address/],
    [{ serverUrl: "http://h", email: "a@b.c", password: "" }, /password/],
  ])("checkCredentials(%o)", (credentials, message) => {
    expect(checkCredentials(credentials)).toMatch(message);
  });

  test("complete credentials pass", () => {
    expect(checkCredentials({ serverUrl: "https://sync.example.com", email: "a@b.c", password: "x" })).toBeNull();
  });
});
