// Settings page: the synced folder, pause, start at login, notifications, bandwidth limits,
// ignore rules, where the sign-in is kept, sign out.
import * as api from "./api";
import type { Settings } from "./api";
import { h, setMessage } from "./dom";
import type { Page } from "./shell";

/** "" → unlimited (null); a whole number ≥ 0 → that; anything else → an explanation. */
export function parseLimit(text: string): number | null | string {
  const t = text.trim();
  if (t === "") return null;
  if (!/^\d+$/.test(t)) return "Enter a whole number of KiB/s, or leave it empty for no limit.";
  const n = Number(t);
  return n === 0 ? null : n;
}

/** Where the sign-in is kept, in words; null when the backend did not say. */
export function sessionStorageText(storage: Settings["session_storage"]): string | null {
  switch (storage) {
    case "keychain":
      return "Your sign-in is kept in the system keychain.";
    case "file":
      return "Your sign-in is kept in a file only you can read: no keychain service (such as GNOME Keyring or KWallet) was available. It moves into the keychain when SyncSphere next starts with one running.";
    default:
      return null;
  }
}

export interface SettingsActions {
  signOut(): Promise<void>;
  signOutEverywhere(): Promise<void>;
}

export function settingsPage(actions: SettingsActions): Page {
  const folder = h("p", { class: "path", "data-testid": "settings-folder" });
  const up = h("input", { id: "limit-up", type: "text", inputmode: "numeric", "data-testid": "settings-upload" });
  const down = h("input", { id: "limit-down", type: "text", inputmode: "numeric", "data-testid": "settings-download" });
  const rules = h("textarea", { id: "ignore-rules", rows: "6", spellcheck: "false", "data-testid": "settings-ignore" });
  const save = h("button", { type: "submit", class: "primary", "data-testid": "settings-save" }, "Save");
  const pause = h("button", { type: "button", "data-testid": "settings-pause" }, "Pause syncing");
  const atLogin = h("input", { id: "start-at-login", type: "checkbox", "data-testid": "settings-start-at-login" });
  atLogin.style.width = "auto";
  const atLoginHint = h(
    "p",
    { class: "hint", "data-testid": "settings-start-at-login-unavailable" },
    "Not available on this system yet: add SyncSphere to your login items by hand.",
  );
  const notifications = h("input", { id: "notifications", type: "checkbox", "data-testid": "settings-notifications" });
  notifications.style.width = "auto";
  const signOut = h("button", { type: "button", class: "link", "data-testid": "settings-sign-out" }, "Sign out");
  const everywhere = h(
    "button",
    { type: "button", class: "link", "data-testid": "settings-sign-out-everywhere" },
    "Sign out of all devices",
  );
  const everywhereConfirm = h(
    "button",
    { type: "button", class: "danger", "data-testid": "settings-sign-out-everywhere-confirm" },
    "Sign out everywhere",
  );
  const everywhereCancel = h(
    "button",
    { type: "button", "data-testid": "settings-sign-out-everywhere-cancel" },
    "Cancel",
  );
  const everywhereAsk = h(
    "div",
    { class: "confirm", "data-testid": "settings-sign-out-everywhere-ask" },
    h(
      "p",
      {},
      "Every computer signed in to this account, this one included, stops syncing until someone signs in " +
        "again there. Files stay where they are.",
    ),
    h("div", { class: "actions tight" }, everywhereConfirm, everywhereCancel),
  );
  everywhereAsk.hidden = true;
  const storage = h("p", { class: "hint", "data-testid": "settings-session-storage" });
  const currentPassword = h("input", {
    id: "current-password",
    type: "password",
    autocomplete: "current-password",
    "data-testid": "settings-current-password",
  });
  const newPassword = h("input", {
    id: "new-password",
    type: "password",
    autocomplete: "new-password",
    "data-testid": "settings-new-password",
  });
  const changePassword = h(
    "button",
    { type: "button", "data-testid": "settings-change-password" },
    "Change password",
  );
  const notice = h("p", { class: "notice", role: "status", "data-testid": "settings-notice" });
  const error = h("p", { class: "error", role: "alert", "data-testid": "settings-error" });
  setMessage(notice, null);
  setMessage(error, null);
  let paused = false;

  const form = h(
    "form",
    { class: "card", "data-testid": "settings-view", novalidate: true },
    h("h1", {}, "Settings"),
    h("h2", {}, "Folder"),
    folder,
    h("div", { class: "actions tight" }, pause),
    h(
      "label",
      { for: "start-at-login", class: "check" },
      atLogin,
      " Start SyncSphere when I log in (in the tray, without this window)",
    ),
    atLoginHint,
    h("label", { for: "notifications", class: "check" }, notifications, " Notify me about conflicts and sync errors"),
    h("h2", {}, "Bandwidth"),
    h("label", { for: "limit-up" }, "Upload limit (KiB/s)"),
    up,
    h("label", { for: "limit-down" }, "Download limit (KiB/s)"),
    down,
    h("p", { class: "hint" }, "Leave empty for no limit."),
    h("h2", {}, "Ignored files"),
    h("label", { for: "ignore-rules" }, "Patterns, one per line (like .gitignore)"),
    rules,
    h("p", { class: "hint" }, "For example *.log or build/. The rules apply on all your devices."),
    h("h2", {}, "Account"),
    storage,
    h("label", { for: "current-password" }, "Current password"),
    currentPassword,
    h("label", { for: "new-password" }, "New password"),
    newPassword,
    h("div", { class: "actions tight" }, changePassword),
    notice,
    error,
    h("div", { class: "actions" }, save, signOut, everywhere),
    everywhereAsk,
  );

  function show(s: Settings): void {
    folder.textContent = s.folder ?? "No folder chosen yet.";
    up.value = s.max_upload_kib === null ? "" : String(s.max_upload_kib);
    down.value = s.max_download_kib === null ? "" : String(s.max_download_kib);
    rules.value = s.ignore_rules;
    rules.disabled = s.folder === null;
    paused = s.paused;
    pause.textContent = paused ? "Resume syncing" : "Pause syncing";
    pause.dataset.paused = String(paused);
    atLogin.checked = s.start_at_login;
    atLogin.disabled = !s.start_at_login_available;
    atLoginHint.hidden = s.start_at_login_available;
    notifications.checked = s.notifications;
    const where = sessionStorageText(s.session_storage);
    storage.textContent = where ?? "";
    storage.hidden = where === null;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const maxUploadKib = parseLimit(up.value);
    const maxDownloadKib = parseLimit(down.value);
    for (const value of [maxUploadKib, maxDownloadKib]) {
      if (typeof value === "string") {
        setMessage(notice, null);
        setMessage(error, value);
        return;
      }
    }
    save.disabled = true;
    api
      .saveSettings({
        maxUploadKib: maxUploadKib as number | null,
        maxDownloadKib: maxDownloadKib as number | null,
        ignoreRules: rules.value,
      })
      .then((s) => {
        show(s);
        setMessage(error, null);
        setMessage(notice, "Saved.");
      })
      .catch((e: unknown) => {
        setMessage(notice, null);
        setMessage(error, api.errorMessage(e));
      })
      .finally(() => {
        save.disabled = false;
      });
  });
  pause.addEventListener("click", () => {
    pause.disabled = true;
    api
      .setPaused(!paused)
      .then((s) => {
        show(s);
        setMessage(error, null);
        setMessage(notice, s.paused ? "Syncing is paused." : "Syncing again.");
      })
      .catch((e: unknown) => setMessage(error, api.errorMessage(e)))
      .finally(() => {
        pause.disabled = false;
      });
  });
  atLogin.addEventListener("change", () => {
    const wanted = atLogin.checked;
    atLogin.disabled = true;
    api
      .setStartAtLogin(wanted)
      .then((s) => {
        show(s);
        setMessage(error, null);
        setMessage(notice, s.start_at_login ? "SyncSphere starts when you log in." : "SyncSphere no longer starts when you log in.");
      })
      .catch((e: unknown) => {
        atLogin.checked = !wanted;
        atLogin.disabled = false;
        setMessage(notice, null);
        setMessage(error, api.errorMessage(e));
      });
  });
  notifications.addEventListener("change", () => {
    const wanted = notifications.checked;
    notifications.disabled = true;
    api
      .setNotifications(wanted)
      .then((s) => {
        show(s);
        setMessage(error, null);
        setMessage(notice, s.notifications ? "Notifications are on." : "Notifications are off.");
      })
      .catch((e: unknown) => {
        notifications.checked = !wanted;
        setMessage(notice, null);
        setMessage(error, api.errorMessage(e));
      })
      .finally(() => {
        notifications.disabled = false;
      });
  });
  signOut.addEventListener("click", () => {
    signOut.disabled = true;
    actions.signOut().catch((e: unknown) => {
      setMessage(error, `Could not sign out. ${api.errorMessage(e)}`);
      signOut.disabled = false;
    });
  });

  changePassword.addEventListener("click", () => {
    if (currentPassword.value === "" || newPassword.value === "") {
      setMessage(notice, null);
      setMessage(error, "Enter your current password and a new one.");
      return;
    }
    changePassword.disabled = true;
    api
      .changePassword(currentPassword.value, newPassword.value)
      .then(() => {
        currentPassword.value = "";
        newPassword.value = "";
        setMessage(error, null);
        setMessage(notice, "Password changed. Your devices stay signed in.");
      })
      .catch((e: unknown) => {
        setMessage(notice, null);
        setMessage(error, api.errorMessage(e));
      })
      .finally(() => {
        changePassword.disabled = false;
      });
  });
  everywhere.addEventListener("click", () => {
    everywhereAsk.hidden = false;
    everywhere.disabled = true;
  });
  everywhereCancel.addEventListener("click", () => {
    everywhereAsk.hidden = true;
    everywhere.disabled = false;
  });
  everywhereConfirm.addEventListener("click", () => {
    everywhereConfirm.disabled = true;
    everywhereCancel.disabled = true;
    actions.signOutEverywhere().catch((e: unknown) => {
      setMessage(error, api.errorMessage(e));
      everywhereConfirm.disabled = false;
      everywhereCancel.disabled = false;
    });
  });

  api
    .getSettings()
    .then(show)
    .catch((e: unknown) => setMessage(error, api.errorMessage(e)));
  return { element: form };
}
