// Sign-in screen: server URL, email, password; "Sign in" or "Create account".
import { errorMessage, type Credentials } from "./api";
import { h, setMessage } from "./dom";

export type SignInMode = "sign_in" | "sign_up";

export interface SignInActions {
  /** Resolves when signed in; rejects with a command error otherwise. */
  submit(mode: SignInMode, credentials: Credentials): Promise<void>;
}

/** A problem the user can fix before anything is sent, in plain words; null when fine. */
export function checkCredentials(c: Credentials): string | null {
  if (!/^https?:\/\/\S+$/.test(c.serverUrl)) {
    return "Enter the server address, starting with http:// or https://.";
  }
  if (!/^[^\s@]+@[^\s@]+$/.test(c.email)) return "Enter your email address, like you@example.com.";
  if (c.password === "") return "Enter your password.";
  return null;
}

const FAILURE_TITLE: Record<SignInMode, string> = {
  sign_in: "Could not sign in.",
  sign_up: "Could not create the account.",
};

/** The server to preset; `locked` when the administrator fixed it (the field is read-only). */
export interface ServerPreset {
  url: string;
  locked: boolean;
}

export function signInView(preset: ServerPreset, actions: SignInActions, notice: string | null = null): HTMLElement {
  const server = h("input", {
    id: "server-url",
    name: "server_url",
    type: "url",
    required: true,
    autocomplete: "url",
    "data-testid": "signin-server",
  });
  server.value = preset.url;
  server.readOnly = preset.locked;
  const serverHint = preset.locked
    ? h("p", { class: "hint", "data-testid": "signin-server-locked" }, "Set by your administrator.")
    : null;
  const email = h("input", {
    id: "email",
    name: "email",
    type: "email",
    required: true,
    autocomplete: "username",
    "data-testid": "signin-email",
  });
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    required: true,
    autocomplete: "current-password",
    "data-testid": "signin-password",
  });
  const signInButton = h("button", { type: "submit", class: "primary", "data-testid": "signin-submit" }, "Sign in");
  const signUpButton = h("button", { type: "button", "data-testid": "signup-submit" }, "Create account");
  const error = h("p", { class: "error", role: "alert", "data-testid": "signin-error" });
  setMessage(error, notice);

  const form = h(
    "form",
    { class: "card", "data-testid": "signin-form", novalidate: true },
    h("h1", {}, "Sign in to SyncSphere"),
    h("label", { for: "server-url" }, "Server"),
    server,
    ...(serverHint ? [serverHint] : []),
    h("label", { for: "email" }, "Email"),
    email,
    h("label", { for: "password" }, "Password"),
    password,
    error,
    h("div", { class: "actions" }, signInButton, signUpButton),
  );

  async function submit(mode: SignInMode): Promise<void> {
    const credentials = { serverUrl: server.value.trim(), email: email.value.trim(), password: password.value };
    const problem = checkCredentials(credentials);
    if (problem) {
      setMessage(error, problem);
      return;
    }
    setMessage(error, null);
    const clicked = mode === "sign_in" ? signInButton : signUpButton;
    const label = clicked.textContent;
    clicked.textContent = mode === "sign_in" ? "Signing in…" : "Creating account…";
    signInButton.disabled = signUpButton.disabled = true;
    try {
      await actions.submit(mode, credentials);
    } catch (e) {
      setMessage(error, `${FAILURE_TITLE[mode]} ${errorMessage(e)}`);
      password.select();
    } finally {
      clicked.textContent = label;
      signInButton.disabled = signUpButton.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void submit("sign_in");
  });
  signUpButton.addEventListener("click", () => void submit("sign_up"));
  return form;
}
