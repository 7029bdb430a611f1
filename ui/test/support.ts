// Shared by the page tests: boot the app against mockIPC handlers and find things by test id.
import { mockIPC } from "@tauri-apps/api/mocks";
import type { InvokeArgs } from "@tauri-apps/api/core";
import { App } from "../src/app";
import type { Session, Status } from "../src/api";

export type Call = { cmd: string; args: InvokeArgs | undefined };
export type Handler = (args: InvokeArgs | undefined) => unknown;

export const syncingSession: Session = {
  signed_in: true,
  email: "ada@example.com",
  server_url: "http://127.0.0.1:8787",
  server_locked: false,
  folder: "/home/ada/SyncSphere",
  default_folder: "/home/ada/SyncSphere",
  syncing: true,
  sync_problem: null,
};

export function status(overrides: Partial<Status> = {}): Status {
  return {
    state: "up_to_date",
    connected: true,
    folder: "/home/ada/SyncSphere",
    email: "ada@example.com",
    device_name: "ada-laptop",
    cursor: 0,
    synced_files: 3,
    pending: 0,
    recent: [],
    last_error: null,
    error_kind: null,
    pending_deletes: null,
    problems: [],
    updated_ms: 1,
    bytes_uploaded: 0,
    bytes_downloaded: 0,
    transfers: [],
    ...overrides,
  };
}

export class Harness {
  calls: Call[] = [];
  root: HTMLElement;
  app: App;

  constructor(private handlers: Record<string, Handler>) {
    this.root = document.createElement("main");
    document.body.replaceChildren(this.root);
    this.app = new App(this.root);
    mockIPC(
      (cmd, args) => {
        this.calls.push({ cmd, args });
        const handler = this.handlers[cmd];
        if (!handler) throw new Error(`unexpected command ${cmd}`);
        return handler(args);
      },
      { shouldMockEvents: true },
    );
  }

  /** Replaces or adds command handlers mid-test. */
  on(handlers: Record<string, Handler>): void {
    Object.assign(this.handlers, handlers);
  }

  /** The commands called so far, besides the start-up ones. */
  commands(): string[] {
    const startUp = ["get_session", "get_status", "take_open_request"];
    return this.calls.map((c) => c.cmd).filter((c) => !startUp.includes(c));
  }

  argsOf(cmd: string): InvokeArgs | undefined {
    return [...this.calls].reverse().find((c) => c.cmd === cmd)?.args;
  }

  byTestId<T extends HTMLElement = HTMLElement>(id: string): T {
    const el = this.root.querySelector<T>(`[data-testid="${id}"]`);
    if (!el) throw new Error(`no [data-testid=${id}] on screen ${this.root.dataset.screen}`);
    return el;
  }

  all<T extends HTMLElement = HTMLElement>(id: string): T[] {
    return [...this.root.querySelectorAll<T>(`[data-testid="${id}"]`)];
  }

  texts(id: string): (string | null)[] {
    return this.all(id).map((el) => el.textContent);
  }
}

/** Lets pending promise callbacks (mocked invokes) run. */
export const settle = async (rounds = 3) => {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setTimeout(resolve, 0));
};
