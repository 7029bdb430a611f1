// Sign-in screen: server URL, email, password; "Sign in" or "Create account"; and, when the
// account's user pool sends a confirmation code (Amazon Cognito does), the code; a new password
// when the pool asks for one (an account an administrator created or reset); and "Forgot
// password?", which has the pool send a code to set a new password with.
import { errorMessage, isCommandError, type Credentials } from "./api";
import { h, setMessage } from "./dom";

export type SignInMode = "sign_in" | "sign_up";

export interface SignInActions {
  /** Resolves when signed in; rejects with a command error otherwise (`confirmation_needed`
   * when a new account waits for its code). */
  submit(mode: SignInMode, credentials: Credentials): Promise<void>;
  /** Confirms the new account with `code`, then signs in. */
  confirm(credentials: Credentials, code: string): Promise<void>;
  /** Sends a new code; resolves with where it went. */
  resend(credentials: Credentials): Promise<string>;
  /** Signs in with the temporary password and sets `newPassword`. */
  setNewPassword(credentials: Credentials, newPassword: string): Promise<void>;
  /** Has the pool send a password-reset code; resolves with where it went. */
  forgot(credentials: Credentials): Promise<string>;
  /** Sets `newPassword` with the reset `code`, then signs in. */
  reset(credentials: Credentials, code: string, newPassword: string): Promise<void>;
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

  // Shown once the pool has sent a confirmation code for a new account.
  const codeInput = h("input", {
    id: "confirmation-code",
    name: "confirmation_code",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    "data-testid": "signin-code",
  });
  const codeMessage = h("p", { class: "hint", role: "status", "data-testid": "signin-code-message" });
  const confirmButton = h("button", { type: "button", class: "primary", "data-testid": "signin-confirm" }, "Confirm");
  const resendButton = h("button", { type: "button", "data-testid": "signin-resend" }, "Send a new code");
  const confirmation = h(
    "div",
    { class: "confirmation", "data-testid": "signin-confirmation", hidden: true },
    codeMessage,
    h("label", { for: "confirmation-code" }, "Confirmation code"),
    codeInput,
    h("div", { class: "actions" }, confirmButton, resendButton),
  );

  // Shown when the pool asks for a new password at sign-in.
  const newPasswordInput = h("input", {
    id: "new-password",
    name: "new_password",
    type: "password",
    autocomplete: "new-password",
    "data-testid": "signin-new-password",
  });
  const newPasswordMessage = h("p", { class: "hint", role: "status", "data-testid": "signin-new-password-message" });
  const setPasswordButton = h(
    "button",
    { type: "button", class: "primary", "data-testid": "signin-set-password" },
    "Set password",
  );
  const newPasswordBox = h(
    "div",
    { class: "confirmation", "data-testid": "signin-new-password-box", hidden: true },
    newPasswordMessage,
    h("label", { for: "new-password" }, "New password"),
    newPasswordInput,
    h("div", { class: "actions" }, setPasswordButton),
  );

  // "Forgot password?": the reset code and the new password.
  const forgotButton = h("button", { type: "button", class: "link", "data-testid": "signin-forgot" }, "Forgot password?");
  const resetCodeInput = h("input", {
    id: "reset-code",
    name: "reset_code",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    "data-testid": "signin-reset-code",
  });
  const resetPasswordInput = h("input", {
    id: "reset-password",
    name: "reset_password",
    type: "password",
    autocomplete: "new-password",
    "data-testid": "signin-reset-password",
  });
  const resetMessage = h("p", { class: "hint", role: "status", "data-testid": "signin-reset-message" });
  const resetButton = h("button", { type: "button", class: "primary", "data-testid": "signin-reset" }, "Reset password");
  const resetBox = h(
    "div",
    { class: "confirmation", "data-testid": "signin-reset-box", hidden: true },
    resetMessage,
    h("label", { for: "reset-code" }, "Code"),
    resetCodeInput,
    h("label", { for: "reset-password" }, "New password"),
    resetPasswordInput,
    h("div", { class: "actions" }, resetButton),
  );

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
    confirmation,
    newPasswordBox,
    resetBox,
    error,
    h("div", { class: "actions" }, signInButton, signUpButton, forgotButton),
  );

  const credentials = (): Credentials => ({
    serverUrl: server.value.trim(),
    email: email.value.trim(),
    password: password.value,
  });

  function askForCode(message: string): void {
    setMessage(codeMessage, message);
    confirmation.hidden = false;
    codeInput.focus();
  }

  /** Runs `action` with every button disabled and `button` saying `busy`. */
  async function busyWhile(button: HTMLButtonElement, busy: string, action: () => Promise<void>): Promise<void> {
    const label = button.textContent;
    button.textContent = busy;
    const buttons = [
      signInButton,
      signUpButton,
      confirmButton,
      resendButton,
      setPasswordButton,
      forgotButton,
      resetButton,
    ];
    for (const b of buttons) b.disabled = true;
    try {
      await action();
    } finally {
      button.textContent = label;
      for (const b of buttons) b.disabled = false;
    }
  }

  confirmButton.addEventListener("click", () => {
    const code = codeInput.value.trim();
    if (code === "") {
      setMessage(error, "Enter the confirmation code from the message you received.");
      return;
    }
    setMessage(error, null);
    void busyWhile(confirmButton, "Confirming…", async () => {
      try {
        await actions.confirm(credentials(), code);
      } catch (e) {
        setMessage(error, `Could not confirm the account. ${errorMessage(e)}`);
        codeInput.select();
      }
    });
  });
  resendButton.addEventListener("click", () => {
    setMessage(error, null);
    void busyWhile(resendButton, "Sending…", async () => {
      try {
        setMessage(codeMessage, await actions.resend(credentials()));
      } catch (e) {
        setMessage(error, `Could not send a new code. ${errorMessage(e)}`);
      }
    });
  });

  setPasswordButton.addEventListener("click", () => {
    const newPassword = newPasswordInput.value;
    if (newPassword === "") {
      setMessage(error, "Choose a new password.");
      return;
    }
    setMessage(error, null);
    void busyWhile(setPasswordButton, "Setting…", async () => {
      try {
        await actions.setNewPassword(credentials(), newPassword);
      } catch (e) {
        setMessage(error, `Could not set the new password. ${errorMessage(e)}`);
        newPasswordInput.select();
      }
    });
  });
  forgotButton.addEventListener("click", () => {
    const c = credentials();
    const problem = checkCredentials({ ...c, password: "-" });
    if (problem) {
      setMessage(error, problem);
      return;
    }
    setMessage(error, null);
    void busyWhile(forgotButton, "Sending…", async () => {
      try {
        setMessage(resetMessage, await actions.forgot(c));
        resetBox.hidden = false;
        resetCodeInput.focus();
      } catch (e) {
        setMessage(error, `Could not start the password reset. ${errorMessage(e)}`);
      }
    });
  });
  resetButton.addEventListener("click", () => {
    const code = resetCodeInput.value.trim();
    const newPassword = resetPasswordInput.value;
    if (code === "" || newPassword === "") {
      setMessage(error, "Enter the code from the message you received and a new password.");
      return;
    }
    setMessage(error, null);
    void busyWhile(resetButton, "Resetting…", async () => {
      try {
        await actions.reset(credentials(), code, newPassword);
      } catch (e) {
        setMessage(error, `Could not reset the password. ${errorMessage(e)}`);
      }
    });
  });

  async function submit(mode: SignInMode): Promise<void> {
    const problem = checkCredentials(credentials());
    if (problem) {
      setMessage(error, problem);
      return;
    }
    setMessage(error, null);
    const clicked = mode === "sign_in" ? signInButton : signUpButton;
    await busyWhile(clicked, mode === "sign_in" ? "Signing in…" : "Creating account…", async () => {
      try {
        await actions.submit(mode, credentials());
      } catch (e) {
        if (isCommandError(e) && e.code === "confirmation_needed") {
          askForCode(e.message);
          return;
        }
        if (isCommandError(e) && e.code === "new_password_required") {
          setMessage(newPasswordMessage, e.message);
          newPasswordBox.hidden = false;
          newPasswordInput.focus();
          return;
        }
        setMessage(error, `${FAILURE_TITLE[mode]} ${errorMessage(e)}`);
        password.select();
      }
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void submit("sign_in");
  });
  signUpButton.addEventListener("click", () => void submit("sign_up"));
  return form;
}
