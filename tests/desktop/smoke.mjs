// Drives the desktop app through tauri-driver with raw W3C WebDriver calls (Node 20 fetch,
// no npm deps). Started by smoke.sh, which provides the environment:
//   WEBDRIVER_URL, SYNCSPHERE_DESKTOP_BIN, ARTIFACTS_DIR,
//   optional SYNCSPHERE_SERVER_URL (+ SYNCSPHERE_SMOKE_FOLDER) for the sign-up round trip.
// Exits non-zero on any failure.
import { spawn, spawnSync } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";

const DRIVER = required("WEBDRIVER_URL");
const APP = required("SYNCSPHERE_DESKTOP_BIN");
const ARTIFACTS = process.env.ARTIFACTS_DIR || "artifacts";
const SERVER_URL = process.env.SYNCSPHERE_SERVER_URL || "";
// The headless client, for a second device of the same account (optional).
const CLI = process.env.SYNCSPHERE_CLI_BIN || "";
const WORK = process.env.SYNCSPHERE_SMOKE_WORK || "";
// The W3C web element identifier key.
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

// A hung WebDriver call must not hang CI.
const overall = setTimeout(() => fail(new Error("smoke test timed out after 300 s")), 300_000);

function required(name) {
  const value = process.env[name];
  if (!value) fail(new Error(`${name} is not set`));
  return value;
}

function fail(err) {
  console.error(`[desktop-smoke] FAIL: ${err.stack || err}`);
  process.exit(1);
}

function log(message) {
  console.error(`[desktop-smoke] ${message}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function wd(method, route, body) {
  const res = await fetch(DRIVER + route, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${method} ${route}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`);
  }
  if (!res.ok || json.value?.error) {
    const v = json.value ?? {};
    throw new Error(`${method} ${route}: HTTP ${res.status} ${v.error ?? ""}: ${v.message ?? text.slice(0, 200)}`);
  }
  return json.value;
}

/** Retries `attempt` until it returns a truthy value or `ms` pass; the last error explains. */
async function waitFor(what, ms, attempt) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await attempt();
      if (value) return value;
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
    }
    await sleep(250);
  }
}

/** Launches the app in a new WebDriver session and returns helpers bound to it. */
async function launchApp() {
  const session = await wd("POST", "/session", {
    capabilities: {
      alwaysMatch: { browserName: "wry", "tauri:options": { application: APP } },
    },
  });
  const sid = session.sessionId;
  log(`session ${sid} started for ${APP}`);
  const s = (route) => `/session/${sid}${route}`;

  const find = async (css) => {
    const found = await wd("POST", s("/element"), { using: "css selector", value: css });
    if (!found?.[ELEMENT]) throw new Error(`unexpected element reference ${JSON.stringify(found)}`);
    return found[ELEMENT];
  };
  const app = {
    find,
    title: () => wd("GET", s("/title")),
    text: async (css) => wd("GET", s(`/element/${await find(css)}/text`)),
    attr: async (css, name) => wd("GET", s(`/element/${await find(css)}/attribute/${name}`)),
    property: async (css, name) => wd("GET", s(`/element/${await find(css)}/property/${name}`)),
    click: async (css) => wd("POST", s(`/element/${await find(css)}/click`), {}),
    count: async (css) => (await wd("POST", s("/elements"), { using: "css selector", value: css })).length,
    fill: async (css, value) => {
      const id = await find(css);
      await wd("POST", s(`/element/${id}/clear`), {});
      await wd("POST", s(`/element/${id}/value`), { text: value });
    },
    // Right after a DOM change the screenshot can be stale: let two frames render first.
    screenshot: async (name) => {
      await wd("POST", s("/execute/async"), {
        script: "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
        args: [],
      });
      const png = Buffer.from(await wd("GET", s("/screenshot")), "base64");
      if (png.length < 1000 || png.subarray(1, 4).toString() !== "PNG") {
        throw new Error(`screenshot ${name} is not a PNG (${png.length} bytes)`);
      }
      await mkdir(ARTIFACTS, { recursive: true });
      const file = path.join(ARTIFACTS, name);
      await writeFile(file, png);
      log(`screenshot ${file} (${png.length} bytes)`);
    },
    /** Ends the session, which also ends the app. */
    close: () => wd("DELETE", s("")).catch((err) => log(`could not delete the session: ${err.message}`)),
    /** Logs the page and saves desktop-failure-<step>.png, for whoever reads the CI log. */
    explain: async (step) => {
      const url = await wd("GET", s("/url")).catch((e) => `(unknown: ${e.message})`);
      const source = await wd("GET", s("/source")).catch((e) => `(unknown: ${e.message})`);
      log(`page ${url}; source: ${String(source).slice(0, 2000)}`);
      await app.screenshot(`desktop-failure-${step}.png`).catch((e) => log(`no failure screenshot: ${e.message}`));
    },
  };
  return app;
}

/** Runs `steps` against a freshly launched app, closing it afterwards whatever happens. */
async function withApp(step, steps) {
  const app = await launchApp();
  try {
    await steps(app);
  } catch (err) {
    await app.explain(step);
    throw err;
  } finally {
    await app.close();
  }
}

async function main() {
  await waitFor("tauri-driver to listen", 20_000, async () => (await fetch(`${DRIVER}/status`)).ok);

  await withApp("signin", async (app) => {
    await waitFor("the sign-in form [data-testid=signin-form]", 30_000, () => app.find("[data-testid=signin-form]"));
    const title = await app.title();
    if (title !== "SyncSphere") throw new Error(`window title is ${JSON.stringify(title)}, expected "SyncSphere"`);
    const server = await app.property("[data-testid=signin-server]", "value");
    const expectedServer = SERVER_URL || "http://127.0.0.1:8787";
    if (server !== expectedServer) throw new Error(`server field is ${JSON.stringify(server)}, expected ${expectedServer}`);
    log(`sign-in screen loaded, title ${JSON.stringify(title)}`);
    await app.screenshot("desktop-signin.png");
    if (SERVER_URL) await signUpAndSync(app);
  });

  if (SERVER_URL) {
    // A second start with the same config dir must resume syncing without asking anything.
    await withApp("resume", async (app) => {
      await waitFor("the status screen on restart", 30_000, async () => {
        const screen = await app.attr("[data-testid=app]", "data-screen");
        if (screen && screen !== "status") throw new Error(`restarted on the ${screen} screen`);
        return screen === "status";
      });
      await waitUpToDate(app);
      log("restart resumed syncing");
    });
  }
}

/** Optional round trip against a running server: sign up, pick a folder, wait for "up to date". */
async function signUpAndSync(app) {
  const folder = required("SYNCSPHERE_SMOKE_FOLDER");
  await mkdir(folder, { recursive: true });
  await writeFile(path.join(folder, "hello.txt"), "hello from the desktop smoke test\n");
  const email = `desktop-smoke-${Date.now()}@example.com`;
  const password = `Smoke-${Math.random().toString(36).slice(2)}-Pw1!`;
  await app.fill("[data-testid=signin-email]", email);
  await app.fill("[data-testid=signin-password]", password);
  await app.click("[data-testid=signup-submit]");
  await waitFor("the folder screen after sign-up", 30_000, async () => {
    const error = await app.text("[data-testid=signin-error]").catch(() => "");
    if (error) throw new Error(`sign-up failed: ${error}`);
    return app.find("[data-testid=folder-form]");
  });
  log(`signed up as ${email}`);
  await app.fill("[data-testid=folder-input]", folder);
  await app.click("[data-testid=folder-submit]");
  await waitUpToDate(app);
  await app.screenshot("desktop-status.png");
  if (CLI) await fromSecondDevice(app, folder, email, password);
  await accountPages(app, folder);
}

/**
 * A second, headless device of the same account (the real `syncsphere` client) saves a file:
 * it reaches this disk, shows in the activity list, and the status is "up to date" again.
 */
async function fromSecondDevice(app, folder, email, password) {
  const config = path.join(WORK, "phone-config");
  const phoneFolder = path.join(WORK, "phone-folder");
  await mkdir(phoneFolder, { recursive: true });
  const env = { ...process.env, SYNCSPHERE_PASSWORD: password, RUST_LOG: "warn" };
  const login = spawnSync(CLI, ["--config-dir", config, "login", "--server", SERVER_URL, "--email", email], {
    env,
    encoding: "utf8",
    timeout: 60_000,
  });
  if (login.status !== 0) throw new Error(`the second device could not sign in: ${login.stderr}`);
  const sync = spawn(CLI, ["--config-dir", config, "sync", "--folder", phoneFolder, "--device-name", "phone"], {
    env,
    stdio: ["ignore", "ignore", "inherit"],
  });
  try {
    const text = "saved on the phone, a headless second device\n";
    await waitFor("the second device to be up to date", 30_000, async () => {
      const status = JSON.parse(await readFile(path.join(config, "status.json"), "utf8"));
      return status.state === "up_to_date" && status.connected;
    });
    await writeFile(path.join(phoneFolder, "from-phone.txt"), text);
    await visit(app, "activity");
    await waitFor("from-phone.txt in the activity list", 30_000, async () =>
      (await app.text("[data-testid=activity-recent]")).includes("from-phone.txt"),
    );
    await waitFor("from-phone.txt on this disk", 10_000, () => fileHas(path.join(folder, "from-phone.txt"), text));
    log("a file saved by a second (headless) device reached this disk and the activity list");
    await app.screenshot("desktop-activity-from-phone.png");
    await visit(app, "status");
    await waitUpToDate(app);
  } finally {
    sync.kill("SIGTERM");
    await new Promise((resolve) => (sync.exitCode !== null ? resolve() : sync.once("exit", resolve)));
  }
}

const fileHas = (file, text) => readFile(file, "utf8").then((t) => t === text, () => false);

/** Opens a page from the navigation and waits until it is shown. */
async function visit(app, page) {
  await app.click(`[data-testid=nav-${page}]`);
  await waitFor(`the ${page} page`, 10_000, async () => (await app.attr("[data-testid=app]", "data-screen")) === page);
}

/**
 * The signed-in pages against the real server and this app's own sync: the activity list, the
 * device list, a restored version and an undeleted file that come back on this disk (the server
 * does not push a device its own change: the app syncs right after), and saved settings.
 */
async function accountPages(app, folder) {
  const hello = path.join(folder, "hello.txt");
  const first = "hello from the desktop smoke test\n";
  await writeFile(hello, "a second version\n");
  await writeFile(path.join(folder, "doomed.txt"), "delete me, then bring me back\n");

  await visit(app, "activity");
  await waitFor("doomed.txt in the activity list", 30_000, async () =>
    (await app.text("[data-testid=activity-recent]")).includes("doomed.txt"),
  );
  await app.screenshot("desktop-activity.png");

  await visit(app, "devices");
  await waitFor("this computer in the device list", 20_000, () => app.find("[data-testid=device-this]"));
  await app.screenshot("desktop-devices.png");

  // History: the first version of hello.txt comes back, here, on disk.
  await visit(app, "history");
  await app.fill("[data-testid=history-query]", "hello");
  await app.click("[data-testid=history-search]");
  await waitFor("hello.txt in the search results", 20_000, () => app.find("[data-testid=history-show-versions]"));
  await waitFor("two versions of hello.txt", 30_000, async () => {
    await app.click("[data-testid=history-show-versions]");
    await sleep(500);
    return (await app.count("[data-testid=history-version]")) >= 2;
  });
  await app.click("[data-testid=history-version]:nth-of-type(2) [data-testid=history-restore]");
  await waitFor("the restore notice", 20_000, async () => {
    const error = await app.text("[data-testid=history-error]").catch(() => "");
    if (error) throw new Error(`restore failed: ${error}`);
    return (await app.text("[data-testid=history-notice]")).startsWith("Restored hello.txt");
  });
  await waitFor("the restored version on disk", 20_000, () => fileHas(hello, first));
  log("a restored version reached this disk");

  // Trash: a deleted file comes back.
  await rm(path.join(folder, "doomed.txt"));
  await waitFor("doomed.txt in the trash", 30_000, async () => {
    await visit(app, "activity");
    await visit(app, "history");
    await sleep(500);
    return (await app.text("[data-testid=trash-list]")).includes("doomed.txt");
  });
  await app.click("[data-testid=trash-undelete]");
  await waitFor("doomed.txt back on disk", 20_000, () =>
    fileHas(path.join(folder, "doomed.txt"), "delete me, then bring me back\n"),
  );
  log("an undeleted file reached this disk");
  await app.screenshot("desktop-history.png");

  // Settings: a limit is saved (sync restarts with it) and sync is up to date again.
  await visit(app, "settings");
  await waitFor("the settings", 10_000, async () => (await app.text("[data-testid=settings-folder]")) === folder);
  // smoke.sh runs a real Secret Service (GNOME Keyring): the sign-in is there, not in a file.
  const where = await app.text("[data-testid=settings-session-storage]");
  if (!where.includes("system keychain")) throw new Error(`the sign-in is not in the keychain: ${where}`);
  await app.fill("[data-testid=settings-upload]", "4096");
  await app.click("[data-testid=settings-save]");
  await waitFor("Saved.", 20_000, async () => {
    const error = await app.text("[data-testid=settings-error]").catch(() => "");
    if (error) throw new Error(`saving settings failed: ${error}`);
    return (await app.text("[data-testid=settings-notice]")) === "Saved.";
  });
  await app.screenshot("desktop-settings.png");
  await visit(app, "status");
  await waitUpToDate(app);
}

async function waitUpToDate(app) {
  await waitFor('status "up_to_date"', 60_000, async () => {
    const error = await app.text("[data-testid=folder-error]").catch(() => "");
    if (error) throw new Error(`sync did not start: ${error}`);
    return (await app.attr("[data-testid=status-state]", "data-state")) === "up_to_date";
  });
  const synced = Number(await app.text("[data-testid=status-synced]"));
  if (!(synced >= 1)) throw new Error(`up to date but ${synced} files in sync; expected hello.txt`);
  log(`up to date with ${synced} file(s)`);
}

main().then(
  () => {
    clearTimeout(overall);
    log("ok");
  },
  (err) => fail(err),
);
