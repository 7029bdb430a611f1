// The built UI (ui/dist) in headless Chromium with the IPC shimmed (shim.js): sign in, start
// syncing, answer held deletions and locate a missing folder on the status page, visit every
// page, restore a version and undelete a file, and write one screenshot per page to
// $ARTIFACTS_DIR (default artifacts/). Run by tests/ui/run.sh.
import { createRequire } from "node:module";
import { createServer } from "node:http";
import { readFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const dist = path.join(root, "ui/dist");
const artifacts = path.resolve(root, process.env.ARTIFACTS_DIR ?? "artifacts");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
// playwright-core is a devDependency of ui/, not of this folder.
const { chromium } = createRequire(path.join(root, "ui/package.json"))("playwright-core");

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml" };

/** Serves ui/dist on 127.0.0.1 (Vite emits absolute /assets paths, so file:// cannot work). */
async function serveDist() {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const rel = path.normalize(decodeURIComponent(url.pathname)).replace(/^([/\\])+/, "");
    const file = path.join(dist, rel === "" ? "index.html" : rel);
    if (!file.startsWith(dist)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

const { server, url } = await serveDist();
await mkdir(artifacts, { recursive: true });
const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const shots = [];
try {
  const page = await browser.newPage({ viewport: { width: 760, height: 900 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Failed loads are reported with their URL below; the browser asking for a favicon is not ours.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console error: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && new URL(r.url()).pathname !== "/favicon.ico") problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  await page.addInitScript({ path: path.join(here, "shim.js") });
  const byId = (id) => page.getByTestId(id);
  const calls = (cmd) => page.evaluate((c) => window.__calls.filter((x) => x.cmd === c).map((x) => x.args), cmd);

  async function shot(name) {
    // A screenshot right after a DOM change can be stale: let two frames render first.
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const file = path.join(artifacts, `ui-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    shots.push(file);
  }

  async function visit(name, ready) {
    await byId(`nav-${name}`).click();
    await page.waitForFunction((n) => document.getElementById("app")?.dataset.screen === n, name);
    await ready();
  }

  // Sign-in screen; a wrong password is explained, the right one moves on.
  await page.goto(url);
  await byId("signin-form").waitFor();
  await shot("signin");
  await byId("signin-email").fill("ada@example.com");
  await byId("signin-password").fill("wrong");
  await byId("signin-submit").click();
  await assert.doesNotReject(byId("signin-error").filter({ hasText: "Incorrect email or password." }).waitFor());
  await byId("signin-password").fill("correct horse");
  await byId("signin-submit").click();

  // Folder choice → status page.
  await byId("folder-form").waitFor();
  await shot("folder");
  await byId("folder-submit").click();
  await byId("status-view").waitFor();
  assert.equal(await byId("status-state").textContent(), "Up to date");
  assert.equal(await byId("recent-item").count(), 3);
  await shot("status");

  // Held deletions: the count and a sample, answered with the set's fingerprint.
  await page.evaluate(() =>
    window.__emitStatus({
      state: "error",
      error_kind: "mass_delete_pending",
      last_error: "96 of 128 synced files are no longer in the folder; they are deleted on the server and your other devices only once you confirm (or restore them)",
      pending_deletes: {
        count: 96,
        synced_files: 128,
        sample: ["docs/report.txt", "photos/beach.jpg", "photos/dunes.jpg"],
        fingerprint: "fp-96",
      },
    }),
  );
  await byId("deletes-pending").waitFor();
  assert.equal(await byId("deletes-summary").textContent(), "96 of 128 synced files are no longer in your SyncSphere folder.");
  assert.equal(await byId("deletes-sample-item").count(), 3);
  await shot("deletes");
  await byId("deletes-restore").click();
  await byId("deletes-notice").filter({ hasText: "Restoring the files" }).waitFor();
  assert.deepEqual(await calls("decide_deletes"), [{ fingerprint: "fp-96", decision: "restore" }]);
  await page.evaluate(() => window.__emitStatus({ state: "up_to_date", error_kind: null, last_error: null, pending_deletes: null }));
  await byId("deletes-pending").waitFor({ state: "hidden" });

  // The folder went missing (a drive): start over is confirmed first; locate it where it is now.
  await page.evaluate(() =>
    window.__emitStatus({
      state: "error",
      connected: false,
      folder: "/media/ada/usb/SyncSphere",
      error_kind: "folder_missing",
      last_error:
        "the synced folder /media/ada/usb/SyncSphere is missing: it may have been moved, renamed or deleted, or be on a drive that is not mounted. Nothing was deleted; sync resumes when it is back",
    }),
  );
  await byId("folder-problem").waitFor();
  await byId("folder-start-over").click();
  await byId("folder-start-over-text").filter({ hasText: "Nothing is deleted" }).waitFor();
  await shot("folder-missing");
  await byId("folder-start-over-cancel").click();
  assert.deepEqual(await calls("start_over"), []);
  await byId("folder-locate").click();
  await byId("folder-locate-input").fill("/home/ada/SyncSphere");
  await byId("folder-locate-submit").click();
  await byId("folder-problem").waitFor({ state: "hidden" });
  assert.deepEqual((await calls("start_sync")).at(-1), { folder: "/home/ada/SyncSphere" });
  assert.equal(await byId("status-state").textContent(), "Up to date");

  // Activity, with files in flight from the status stream.
  await visit("activity", () => byId("activity-view").waitFor());
  await page.evaluate(() =>
    window.__emitStatus({
      state: "syncing",
      pending: 2,
      transfers: [
        { path: "videos/holiday.mp4", direction: "upload", done: 31_000_000, total: 84_000_000 },
        { path: "docs/scan.pdf", direction: "download", done: 2_500_000, total: 4_000_000 },
      ],
    }),
  );
  await byId("transfer-item").nth(1).waitFor();
  assert.equal(await byId("activity-overall").textContent(), "2 files: 33.5 MB of 88.0 MB (38%)");
  await shot("activity");
  await page.evaluate(() => window.__emitStatus({ state: "up_to_date", pending: 0, transfers: [] }));

  // Devices: presence and the unlink confirmation.
  await visit("devices", () => byId("device-item").nth(2).waitFor());
  assert.equal(await byId("device-summary").textContent(), "3 devices, 2 online.");
  assert.equal(await byId("device-this").count(), 1);
  await shot("devices");
  // Presence in the status stream changes: the list is fetched again at once.
  const listed = (await calls("list_devices")).length;
  await page.evaluate(() => window.__emitStatus({ online_devices: ["d-laptop"] }));
  await page.waitForFunction((n) => window.__calls.filter((c) => c.cmd === "list_devices").length > n, listed);

  // Conflicts: keep mine settles the one conflict.
  await visit("conflicts", () => byId("conflict-item").waitFor());
  assert.equal(await byId("conflict-keep_copy").textContent(), "Keep mine");
  await shot("conflicts");
  await byId("conflict-keep_copy").click();
  await byId("conflicts-empty").waitFor();
  assert.deepEqual(await calls("resolve_conflict"), [
    { path: "notes (conflicted copy from ada-laptop 2026-11-25 103015).txt", action: "keep_copy" },
  ]);

  // History & Trash: search, versions, restore the oldest; undelete from the trash.
  await visit("history", () => byId("trash-item").nth(1).waitFor());
  await byId("history-query").fill("report");
  await byId("history-search").click();
  await byId("history-result").nth(1).waitFor();
  await byId("history-show-versions").first().click();
  await byId("history-version").nth(2).waitFor();
  assert.equal(await byId("history-file").textContent(), "Versions of docs/report.txt");
  await byId("history-version").nth(2).getByTestId("history-restore").click();
  await byId("history-notice").filter({ hasText: "Restored docs/report.txt" }).waitFor();
  assert.deepEqual(await calls("restore_revision"), [{ file_id: "f-report", rev: 1 }]);
  await byId("history-version").nth(3).waitFor(); // the restore is a new, fourth version
  await byId("trash-undelete").first().click();
  await byId("history-notice").filter({ hasText: "old/plan.odt is back" }).waitFor();
  assert.deepEqual(await calls("undelete"), [{ file_id: "f-plan" }]);
  assert.equal(await byId("trash-item").count(), 1);
  await shot("history");

  // Settings: limits and ignore rules are saved, pause and start at login switch.
  await visit("settings", () => byId("settings-folder").filter({ hasText: "/home/ada/SyncSphere" }).waitFor());
  assert.equal(await byId("settings-download").inputValue(), "2048");
  assert.equal(await byId("settings-session-storage").textContent(), "Your sign-in is kept in the system keychain.");
  await byId("settings-upload").fill("512");
  await byId("settings-save").click();
  await byId("settings-notice").filter({ hasText: "Saved." }).waitFor();
  assert.deepEqual(await calls("save_settings"), [{ max_upload_kib: 512, max_download_kib: 2048, ignore_rules: "*.log\nbuild/\n" }]);
  await byId("settings-pause").click();
  await byId("settings-pause").filter({ hasText: "Resume syncing" }).waitFor();
  await byId("settings-start-at-login").check();
  await byId("settings-notice").filter({ hasText: "SyncSphere starts when you log in." }).waitFor();
  assert.deepEqual(await calls("set_start_at_login"), [{ enabled: true }]);
  await shot("settings");

  assert.deepEqual(problems, [], "the page logged errors");
  console.log(`UI walk passed; screenshots:\n${shots.join("\n")}`);
} finally {
  await browser.close();
  server.close();
}
