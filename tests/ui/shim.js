// A fake SyncSphere backend for the built UI in a plain browser: window.__TAURI_INTERNALS__
// answers the window's commands (src-tauri/src/commands.rs) from an in-memory account, and
// carries the `status` event. Every call is recorded in window.__calls for the test to check.
// Injected before the page's own scripts (page.addInitScript).
(() => {
  const now = Date.now();
  const min = 60_000;
  const folder = "/home/ada/SyncSphere";
  let signedIn = false;
  let syncing = false;
  let paused = false;
  const status = {
    state: "up_to_date",
    connected: true,
    folder,
    email: "ada@example.com",
    device_name: "ada-laptop",
    cursor: 42,
    synced_files: 128,
    pending: 0,
    recent: [
      { path: "docs/report.txt", action: "uploaded", at_ms: now - 2 * min },
      { path: "photos/beach.jpg", action: "downloaded", at_ms: now - 9 * min },
      { path: "notes (conflicted copy from ada-laptop 2026-11-25 103015).txt", action: "conflict_copy", at_ms: now - 30 * min },
    ],
    last_error: null,
    error_kind: null,
    pending_deletes: null,
    problems: [],
    updated_ms: now,
    bytes_uploaded: 3_400_000,
    bytes_downloaded: 12_800_000,
    transfers: [],
    online_devices: ["d-laptop", "d-office"],
  };
  const devices = [
    { device_id: "d-laptop", name: "ada-laptop", platform: "linux", last_seen_ms: now, online: true, revoked: false, this_device: true },
    { device_id: "d-office", name: "office desktop", platform: "windows", last_seen_ms: now - 3 * min, online: true, revoked: false, this_device: false },
    { device_id: "d-old", name: "old netbook", platform: "linux", last_seen_ms: now - 40 * 86_400_000, online: false, revoked: false, this_device: false },
  ];
  const report = { file_id: "f-report", path: "docs/report.txt", rev: 3, size: 18_400, deleted: false, modified_ms: now - 2 * min };
  const files = [report, { file_id: "f-notes", path: "docs/report-notes.md", rev: 1, size: 900, deleted: false, modified_ms: now - 86_400_000 }];
  const revisions = [
    { rev: 3, path: report.path, size: 18_400, deleted: false, modified_ms: now - 2 * min, origin_device: "d-laptop" },
    { rev: 2, path: report.path, size: 17_950, deleted: false, modified_ms: now - 3 * 3_600_000, origin_device: "d-office" },
    { rev: 1, path: report.path, size: 12_000, deleted: false, modified_ms: now - 2 * 86_400_000, origin_device: "d-laptop" },
  ];
  let trash = [
    { file_id: "f-plan", path: "old/plan.odt", rev: 4, size: 0, deleted: true, modified_ms: now - 5 * 3_600_000 },
    { file_id: "f-tmp", path: "drafts/letter.txt", rev: 2, size: 0, deleted: true, modified_ms: now - 2 * 86_400_000 },
  ];
  let conflicts = [
    {
      path: "notes (conflicted copy from ada-laptop 2026-11-25 103015).txt",
      original: "notes.txt",
      device: "ada-laptop",
      from_this_device: true,
      stamp: "2026-11-25 103015",
      size: 2_048,
      modified_ms: now - 30 * min,
      original_exists: true,
    },
  ];
  const settings = {
    folder,
    max_upload_kib: null,
    max_download_kib: 2048,
    paused: false,
    ignore_rules: "*.log\nbuild/\n",
    start_at_login: false,
    start_at_login_available: true,
    notifications: true,
    session_storage: "keychain",
  };

  const session = () => ({
    signed_in: signedIn,
    email: signedIn ? "ada@example.com" : null,
    server_url: "https://sync.example.com",
    server_locked: false,
    folder: syncing ? folder : null,
    default_folder: folder,
    syncing,
    sync_problem: null,
  });

  const commands = {
    get_session: () => session(),
    sign_in: (a) => {
      if (a.password !== "correct horse") throw { code: "sign_in_failed", message: "Incorrect email or password." };
      signedIn = true;
      return session();
    },
    start_sync: (a) => {
      syncing = true;
      // A new engine on that folder: whatever the old one waited for is over.
      Object.assign(status, { state: "up_to_date", connected: true, folder: a.folder, error_kind: null, last_error: null, updated_ms: Date.now() });
      return { ...status };
    },
    start_over: () => {
      Object.assign(status, { state: "starting", error_kind: null, last_error: null, updated_ms: Date.now() });
      return { ...status };
    },
    decide_deletes: () => null,
    get_status: () => (syncing ? status : null),
    sign_out: () => {
      signedIn = syncing = false;
      return session();
    },
    open_folder: () => null,
    take_open_request: () => null,
    list_devices: () => devices,
    revoke_device: (a) => {
      const d = devices.find((x) => x.device_id === a.device_id);
      if (d) Object.assign(d, { revoked: true, online: false });
      return null;
    },
    search_files: (a) => files.filter((f) => f.path.toLowerCase().includes(String(a.query).toLowerCase())),
    file_history: () => ({ file: report, revisions }),
    restore_revision: (a) => {
      const from = revisions.find((r) => r.rev === a.rev);
      const rev = revisions[0].rev + 1;
      revisions.unshift({ ...from, rev, modified_ms: Date.now(), origin_device: "d-laptop" });
      return { ...report, rev, size: from.size };
    },
    list_trash: () => trash,
    undelete: (a) => {
      const f = trash.find((x) => x.file_id === a.file_id);
      trash = trash.filter((x) => x.file_id !== a.file_id);
      return { ...f, deleted: false, rev: f.rev + 1 };
    },
    list_conflicts: () => conflicts,
    resolve_conflict: (a) => {
      conflicts = conflicts.filter((c) => c.path !== a.path);
      return null;
    },
    open_file: () => null,
    reveal_file: () => null,
    get_settings: () => ({ ...settings, paused }),
    save_settings: (a) => {
      Object.assign(settings, { max_upload_kib: a.max_upload_kib, max_download_kib: a.max_download_kib, ignore_rules: a.ignore_rules });
      return { ...settings, paused };
    },
    set_start_at_login: (a) => {
      settings.start_at_login = a.enabled;
      return { ...settings, paused };
    },
    set_notifications: (a) => {
      settings.notifications = a.enabled;
      return { ...settings, paused };
    },
    set_paused: (a) => {
      paused = a.paused;
      return { ...settings, paused };
    },
  };

  const callbacks = new Map();
  const listeners = new Map();
  let nextId = 1;
  const calls = [];
  window.__calls = calls;

  function runCallback(id, data) {
    const cb = callbacks.get(id);
    if (cb) cb(data);
  }

  async function invoke(cmd, args = {}) {
    calls.push({ cmd, args: JSON.parse(JSON.stringify(args ?? {})) });
    if (cmd === "plugin:event|listen") {
      if (!listeners.has(args.event)) listeners.set(args.event, []);
      listeners.get(args.event).push(args.handler);
      return args.handler;
    }
    if (cmd === "plugin:event|unlisten") {
      const list = listeners.get(args.event) ?? [];
      const i = list.indexOf(args.eventId);
      if (i !== -1) list.splice(i, 1);
      return null;
    }
    const handler = commands[cmd];
    if (!handler) throw { code: "failed", message: `The fake backend has no command ${cmd}.` };
    return handler(args);
  }

  /** What the backend's status forwarder does: emit `status` to the window. */
  window.__emitStatus = (overrides) => {
    Object.assign(status, overrides, { updated_ms: Date.now() });
    for (const id of listeners.get("status") ?? []) runCallback(id, { event: "status", id, payload: { ...status } });
  };

  window.__TAURI_EVENT_PLUGIN_INTERNALS__ = { unregisterListener: (_event, id) => callbacks.delete(id) };
  window.__TAURI_INTERNALS__ = {
    invoke,
    transformCallback(callback, once = false) {
      const id = nextId++;
      callbacks.set(id, (data) => {
        if (once) callbacks.delete(id);
        return callback && callback(data);
      });
      return id;
    },
    unregisterCallback: (id) => callbacks.delete(id),
    runCallback,
    callbacks,
    metadata: { currentWindow: { label: "main" }, currentWebview: { windowLabel: "main", label: "main" } },
    convertFileSrc: (path) => path,
  };
})();
