// The backend's API as the window sees it: the Tauri commands of src-tauri/src/commands.rs
// and the `status` event. Field names match the Rust JSON (snake_case).
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

export type SyncState = "starting" | "up_to_date" | "syncing" | "offline" | "error" | "stopped" | "paused";

export interface RecentFile {
  path: string;
  /** uploaded, downloaded, deleted_local, deleted_remote, moved_local, moved_remote, conflict_copy */
  action: string;
  at_ms: number;
}

/** A file being uploaded or downloaded right now. */
export interface Transfer {
  path: string;
  direction: "upload" | "download";
  /** Bytes sent or received so far (a resumed download starts above zero). */
  done: number;
  /** The file's size; 0 until a download's response says it. */
  total: number;
}

/** What kind of problem `last_error` is; the window decides on this, never on the message. */
export type ErrorKind =
  | "folder_missing"
  | "folder_not_a_directory"
  | "folder_marker_missing"
  | "mass_delete_pending"
  | "not_signed_in"
  | "device_revoked"
  | "signed_out"
  | "config_dir_in_use"
  | "offline"
  | "auth"
  | "server"
  | "io"
  | "config"
  | "keychain";

/** The kinds that mean the synced folder is not there: locate it or start over. */
export const FOLDER_KINDS: readonly ErrorKind[] = ["folder_missing", "folder_not_a_directory", "folder_marker_missing"];

/** Server-side deletions held until the user confirms them or restores the files. */
export interface PendingDeletes {
  /** How many files would be deleted on the server and every other device. */
  count: number;
  /** How many files the folder had in sync. */
  synced_files: number;
  /** The first few of them, sorted. */
  sample: string[];
  /** Names exactly this set: the answer says which set it answers. */
  fingerprint: string;
}

/** A path that does not sync, and why. */
export interface PathProblem {
  path: string;
  message: string;
}

export interface Status {
  state: SyncState;
  connected: boolean;
  folder: string;
  email: string;
  device_name: string;
  cursor: number;
  synced_files: number;
  pending: number;
  recent: RecentFile[];
  last_error: string | null;
  /** Null with no error, or for a one-file problem (see `problems`). */
  error_kind: ErrorKind | null;
  pending_deletes: PendingDeletes | null;
  /** Paths that do not sync now, with the reason. */
  problems: PathProblem[];
  updated_ms: number;
  /** Content bytes sent / received since sync started. */
  bytes_uploaded: number;
  bytes_downloaded: number;
  transfers: Transfer[];
  /** Ids of the account's devices online now (from push presence); empty while offline. */
  online_devices?: string[];
}

export interface Session {
  signed_in: boolean;
  email: string | null;
  server_url: string;
  /** The administrator locked the server (system config): show it read-only. */
  server_locked: boolean;
  folder: string | null;
  default_folder: string;
  syncing: boolean;
  sync_problem: string | null;
}

export type ErrorCode =
  | "sign_in_failed"
  | "sign_up_failed"
  | "confirmation_needed"
  | "new_password_required"
  | "sign_out_failed"
  | "not_signed_in"
  | "invalid_folder"
  | "sync_failed"
  | "settings"
  | "offline"
  | "device_revoked"
  | "not_found"
  | "conflict"
  | "failed"
  | "no_folder"
  | "in_use";

/** What a command rejects with. */
export interface CommandError {
  code: ErrorCode;
  message: string;
}

export interface Credentials {
  serverUrl: string;
  email: string;
  password: string;
}

export const STATUS_EVENT = "status";
/** A launch asked for a file (`--show`/`--history`, from the file manager's actions). */
export const OPEN_EVENT = "open_request";

/** A page to show with the file to show on it. */
export interface OpenRequest {
  page: "activity" | "history";
  /** Relative to the synced folder; null when the file cannot be shown (see `problem`). */
  path: string | null;
  problem: string | null;
}

export function getSession(): Promise<Session> {
  return invoke<Session>("get_session");
}

export function signIn(c: Credentials): Promise<Session> {
  return invoke<Session>("sign_in", { server_url: c.serverUrl, email: c.email, password: c.password });
}

export function signUp(c: Credentials): Promise<Session> {
  return invoke<Session>("sign_up", { server_url: c.serverUrl, email: c.email, password: c.password });
}

/** Confirms a new account with the code its user pool sent, then signs in. */
export function confirmSignUp(c: Credentials, code: string): Promise<Session> {
  return invoke<Session>("confirm_sign_up", { server_url: c.serverUrl, email: c.email, password: c.password, code });
}

/** Signs in with a temporary password and sets the new one the pool asked for. */
export function signInWithNewPassword(c: Credentials, newPassword: string): Promise<Session> {
  return invoke<Session>("sign_in", {
    server_url: c.serverUrl,
    email: c.email,
    password: c.password,
    new_password: newPassword,
  });
}

/** Changes the signed-in account's password. */
export function changePassword(current: string, newPassword: string): Promise<void> {
  return invoke<void>("change_password", { current, new_password: newPassword });
}

/** Has the pool send a password-reset code; resolves with where it went, in words. */
export function forgotPassword(c: Credentials): Promise<string> {
  return invoke<string>("forgot_password", { server_url: c.serverUrl, email: c.email });
}

/** Sets a new password with the reset code, then signs in. */
export function resetPassword(c: Credentials, code: string, newPassword: string): Promise<Session> {
  return invoke<Session>("reset_password", {
    server_url: c.serverUrl,
    email: c.email,
    code,
    new_password: newPassword,
  });
}

/** Sends a new confirmation code; resolves with where it went, in words. */
export function resendConfirmationCode(c: Credentials): Promise<string> {
  return invoke<string>("resend_confirmation_code", { server_url: c.serverUrl, email: c.email });
}

export function startSync(folder: string): Promise<Status> {
  return invoke<Status>("start_sync", { folder });
}

/** "Start over with an empty folder": sync the remembered folder afresh, deleting nothing. */
export function startOver(): Promise<Status> {
  return invoke<Status>("start_over");
}

export type DeleteDecision = "delete_everywhere" | "restore";

/** Answers the held deletions named by `fingerprint` (from `pending_deletes`). */
export function decideDeletes(fingerprint: string, decision: DeleteDecision): Promise<void> {
  return invoke<void>("decide_deletes", { fingerprint, decision });
}

export function getStatus(): Promise<Status | null> {
  return invoke<Status | null>("get_status");
}

export function signOut(): Promise<Session> {
  return invoke<Session>("sign_out");
}

/** Ends every session of the account (other devices stop syncing until signed in again). */
export function signOutEverywhere(): Promise<Session> {
  return invoke<Session>("sign_out_everywhere");
}

export function openFolder(): Promise<void> {
  return invoke<void>("open_folder");
}

export interface Device {
  device_id: string;
  name: string;
  platform: string | null;
  last_seen_ms: number;
  online: boolean;
  revoked: boolean;
  /** This computer. */
  this_device: boolean;
}

/** A file on the server (live, or in the trash when `deleted`). */
export interface FileInfo {
  file_id: string;
  path: string;
  rev: number;
  size: number;
  deleted: boolean;
  modified_ms: number;
}

export interface Revision {
  rev: number;
  path: string;
  size: number;
  /** This revision deleted the file; it cannot be restored (an earlier one can). */
  deleted: boolean;
  modified_ms: number;
  origin_device: string | null;
}

export interface History {
  file: FileInfo;
  /** Newest first; the first is the current version. */
  revisions: Revision[];
}

export interface Conflict {
  /** The conflicted copy, relative to the synced folder. */
  path: string;
  /** The file it conflicts with. */
  original: string;
  /** The device whose version the copy holds. */
  device: string;
  from_this_device: boolean;
  stamp: string;
  size: number;
  modified_ms: number;
  original_exists: boolean;
}

export type ConflictAction = "keep_copy" | "keep_original" | "keep_both";

export interface Settings {
  folder: string | null;
  /** KiB/s; null is unlimited. */
  max_upload_kib: number | null;
  max_download_kib: number | null;
  paused: boolean;
  /** The folder's .syncsphereignore (gitignore syntax). */
  ignore_rules: string;
  start_at_login: boolean;
  /** This system has start at login (Linux; not yet macOS/Windows). */
  start_at_login_available: boolean;
  /** Desktop notifications for new conflicts and for errors. */
  notifications: boolean;
  /** Where the sign-in is kept: the OS keychain, or a private file where no keychain runs. */
  session_storage?: "keychain" | "file" | null;
}

export function listDevices(): Promise<Device[]> {
  return invoke<Device[]>("list_devices");
}

export function revokeDevice(deviceId: string): Promise<void> {
  return invoke<void>("revoke_device", { device_id: deviceId });
}

export function searchFiles(query: string): Promise<FileInfo[]> {
  return invoke<FileInfo[]>("search_files", { query });
}

export function fileHistory(path: string): Promise<History> {
  return invoke<History>("file_history", { path });
}

export function restoreRevision(fileId: string, rev: number): Promise<FileInfo> {
  return invoke<FileInfo>("restore_revision", { file_id: fileId, rev });
}

export function listTrash(): Promise<FileInfo[]> {
  return invoke<FileInfo[]>("list_trash");
}

export function undelete(fileId: string): Promise<FileInfo> {
  return invoke<FileInfo>("undelete", { file_id: fileId });
}

export function listConflicts(): Promise<Conflict[]> {
  return invoke<Conflict[]>("list_conflicts");
}

export function resolveConflict(path: string, action: ConflictAction): Promise<void> {
  return invoke<void>("resolve_conflict", { path, action });
}

export function openFile(path: string): Promise<void> {
  return invoke<void>("open_file", { path });
}

export function revealFile(path: string): Promise<void> {
  return invoke<void>("reveal_file", { path });
}

export function getSettings(): Promise<Settings> {
  return invoke<Settings>("get_settings");
}

export function saveSettings(s: {
  maxUploadKib: number | null;
  maxDownloadKib: number | null;
  ignoreRules: string;
}): Promise<Settings> {
  return invoke<Settings>("save_settings", {
    max_upload_kib: s.maxUploadKib,
    max_download_kib: s.maxDownloadKib,
    ignore_rules: s.ignoreRules,
  });
}

export function setPaused(paused: boolean): Promise<Settings> {
  return invoke<Settings>("set_paused", { paused });
}

export function setStartAtLogin(enabled: boolean): Promise<Settings> {
  return invoke<Settings>("set_start_at_login", { enabled });
}

/** What this launch's command line asked to show, once (null when nothing). */
export function takeOpenRequest(): Promise<OpenRequest | null> {
  return invoke<OpenRequest | null>("take_open_request");
}

export function onOpenRequest(handler: (request: OpenRequest) => void): Promise<UnlistenFn> {
  return listen<OpenRequest>(OPEN_EVENT, (event) => handler(event.payload));
}

export function setNotifications(enabled: boolean): Promise<Settings> {
  return invoke<Settings>("set_notifications", { enabled });
}

export function onStatus(handler: (status: Status) => void): Promise<UnlistenFn> {
  return listen<Status>(STATUS_EVENT, (event) => handler(event.payload));
}

export function isCommandError(e: unknown): e is CommandError {
  return typeof e === "object" && e !== null && "code" in e && "message" in e;
}

/** A sentence for the user: the backend's message, or a generic one for IPC failures. */
export function errorMessage(e: unknown): string {
  if (isCommandError(e)) return e.message;
  if (typeof e === "string" && e.trim() !== "") return e;
  if (e instanceof Error && e.message) return e.message;
  return "Something went wrong. Please try again.";
}
