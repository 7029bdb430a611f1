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
  updated_ms: number;
  /** Content bytes sent / received since sync started. */
  bytes_uploaded: number;
  bytes_downloaded: number;
  transfers: Transfer[];
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
  | "sign_out_failed"
  | "not_signed_in"
  | "invalid_folder"
  | "sync_failed"
  | "settings";

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

export function getSession(): Promise<Session> {
  return invoke<Session>("get_session");
}

export function signIn(c: Credentials): Promise<Session> {
  return invoke<Session>("sign_in", { server_url: c.serverUrl, email: c.email, password: c.password });
}

export function signUp(c: Credentials): Promise<Session> {
  return invoke<Session>("sign_up", { server_url: c.serverUrl, email: c.email, password: c.password });
}

export function startSync(folder: string): Promise<Status> {
  return invoke<Status>("start_sync", { folder });
}

export function getStatus(): Promise<Status | null> {
  return invoke<Status | null>("get_status");
}

export function signOut(): Promise<Session> {
  return invoke<Session>("sign_out");
}

export function openFolder(): Promise<void> {
  return invoke<void>("open_folder");
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
