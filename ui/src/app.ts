// Picks the screen from the backend's session and wires screens to commands.
import * as api from "./api";
import type { OpenRequest, Session, Status } from "./api";
import { folderView } from "./folder";
import { signInView, type SignInMode } from "./signin";
import { statusView } from "./status";
import { activityPage } from "./activity";
import { conflictsPage } from "./conflicts";
import { devicesPage } from "./devices";
import { historyPage } from "./history";
import { settingsPage } from "./settings";
import { shellView, type Page, type PageName, type Shell } from "./shell";

export class App {
  private latest: Status | null = null;
  /** The signed-in pages' frame and the page shown in it, while one is. */
  private shell: Shell | null = null;
  private page: Page | null = null;
  private unlisten: (() => void)[] = [];
  /** The file a launch asked for, handed to the page it is shown on. */
  private opened: OpenRequest | null = null;

  constructor(private readonly root: HTMLElement) {}

  /** Subscribes to status events, then shows the screen the session calls for. */
  async start(): Promise<void> {
    this.unlisten.push(await api.onStatus((status) => this.onStatus(status)));
    this.unlisten.push(await api.onOpenRequest((request) => this.open(request)));
    let session: Session;
    try {
      session = await api.getSession();
    } catch (e) {
      this.showSignIn(null, api.errorMessage(e));
      return;
    }
    await this.route(session);
    if (this.shell) {
      // The app was launched to show a file (a file manager's "Version history", say).
      const request = await api.takeOpenRequest().catch(() => null);
      if (request) this.open(request);
    }
  }

  stop(): void {
    for (const unlisten of this.unlisten) unlisten();
    this.unlisten = [];
    this.leavePage();
  }

  /** Shows the file a launch asked for on its page; ignored until signed in and syncing. */
  open(request: OpenRequest): void {
    if (!this.shell) return;
    this.opened = request;
    this.showPage(request.page);
  }

  private async route(session: Session): Promise<void> {
    if (!session.signed_in) {
      this.showSignIn(session);
    } else if (session.syncing) {
      this.showStatus(await api.getStatus().catch(() => null));
    } else {
      this.showFolder(session, session.sync_problem);
    }
  }

  private onStatus(status: Status): void {
    this.latest = status;
    this.page?.update?.(status);
  }

  private leavePage(): void {
    this.page?.dispose?.();
    this.page = null;
  }

  private show(screen: HTMLElement, name: string): void {
    this.leavePage();
    this.shell = null;
    this.root.dataset.screen = name;
    this.root.replaceChildren(screen);
    // Focus the first field still to fill in (the server URL is usually preset).
    const inputs = [...screen.querySelectorAll<HTMLInputElement>("input")];
    (inputs.find((input) => input.value === "") ?? inputs[0] ?? screen.querySelector("button"))?.focus();
  }

  /** `session` is null when the backend could not say (the notice then tells why). */
  private showSignIn(session: Session | null, notice: string | null = null): void {
    const view = signInView(
      { url: session?.server_url ?? "http://127.0.0.1:8787", locked: session?.server_locked ?? false },
      {
        submit: async (mode: SignInMode, credentials) => {
          const session = mode === "sign_in" ? await api.signIn(credentials) : await api.signUp(credentials);
          this.showFolder(session);
        },
        confirm: async (credentials, code) => {
          this.showFolder(await api.confirmSignUp(credentials, code));
        },
        resend: (credentials) => api.resendConfirmationCode(credentials),
        setNewPassword: async (credentials, newPassword) => {
          this.showFolder(await api.signInWithNewPassword(credentials, newPassword));
        },
        forgot: (credentials) => api.forgotPassword(credentials),
        reset: async (credentials, code, newPassword) => {
          this.showFolder(await api.resetPassword({ ...credentials, password: newPassword }, code, newPassword));
        },
      },
      notice,
    );
    this.show(view, "signin");
  }

  private showFolder(session: Session, notice: string | null = null): void {
    const view = folderView(
      session.email ?? "",
      session.folder ?? session.default_folder,
      {
        start: async (folder) => {
          try {
            this.latest = await api.startSync(folder);
          } catch (e) {
            if (api.isCommandError(e) && e.code === "not_signed_in") {
              this.showSignIn(session, e.message);
              return;
            }
            throw e;
          }
          this.showStatus(this.latest);
        },
        signOut: () => this.signOut(),
      },
      notice,
    );
    this.show(view, "folder");
  }

  private showStatus(initial: Status | null): void {
    // An event may have arrived while the command was in flight; keep the newer one.
    const newest = this.latest && (!initial || this.latest.updated_ms >= initial.updated_ms) ? this.latest : initial;
    this.latest = newest;
    this.showPage("status");
  }

  /** Shows one of the signed-in pages inside the navigation frame. */
  showPage(name: PageName): void {
    if (!this.shell) {
      const shell = shellView((next) => this.showPage(next));
      this.show(shell.element, name);
      this.shell = shell;
    }
    this.leavePage();
    const page = this.makePage(name);
    this.page = page;
    this.root.dataset.screen = name;
    this.shell.show(name, page);
    page.update?.(this.latest);
    page.element.querySelector<HTMLElement>("input, textarea")?.focus();
  }

  private makePage(name: PageName): Page {
    const now = () => Date.now();
    const opened = this.opened?.page === name ? this.opened : null;
    this.opened = null;
    switch (name) {
      case "status": {
        const view = statusView({
          openFolder: () => api.openFolder(),
          signOut: () => this.signOut(),
          now,
          // The new engine's first status; the stream follows.
          locate: async (folder) => this.onStatus(await api.startSync(folder)),
          startOver: async () => this.onStatus(await api.startOver()),
          decideDeletes: (fingerprint, decision) => api.decideDeletes(fingerprint, decision),
        });
        return { element: view.element, update: (s) => view.update(s) };
      }
      case "activity":
        return activityPage(now, opened);
      case "devices":
        return devicesPage({
          now,
          every: (ms, fn) => {
            const timer = setInterval(fn, ms);
            return () => clearInterval(timer);
          },
        });
      case "conflicts":
        return conflictsPage();
      case "history":
        return historyPage(opened);
      case "settings":
        return settingsPage({
          signOut: () => this.signOut(),
          signOutEverywhere: () => this.signOutEverywhere(),
        });
    }
  }

  private async signOut(): Promise<void> {
    const session = await api.signOut();
    this.latest = null;
    this.showSignIn(session);
  }

  private async signOutEverywhere(): Promise<void> {
    const session = await api.signOutEverywhere();
    this.latest = null;
    this.showSignIn(session, "Signed out of all devices.");
  }
}
