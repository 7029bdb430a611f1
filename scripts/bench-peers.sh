#!/usr/bin/env bash
# Peer benchmark: the same workloads, in one run, against SyncSphere (real server and two CLI
# clients, release builds, embedded defaults) and against Syncthing (Debian's package, 1.19: two
# `syncthing serve` instances talking to each other), everything on loopback, on one machine.
# SyncSphere runs all its steps first, then its processes are stopped and Syncthing runs the same
# steps: the two never compete for the cores. Per system, in this order:
#   a. save latency, small folder: N saves of a 2 KB file on device A (written to a temp name, then
#      renamed, as editors do; 20 names cycling, 250 ms apart), each timed until the file is
#      byte-identical on device B's disk (polled every 1 ms): p50 / p99;
#   b. bulk drop: F files of 1 KiB (1,000 per sub-folder) written at once into A's folder, timed
#      from the last write until B holds them all and is up to date; CPU seconds (user + system,
#      /proc/PID/stat) of A and B — and of the SyncSphere server, reported on its own row
#      (Syncthing has none) — from just before the first write until then;
#   c. new device: a third device C with an empty folder joins after (b), timed from the start of
#      its process until it holds every file and is up to date; CPU of C (and of the server). For
#      Syncthing, C is introduced before the clock starts: C is added to A's configuration and the
#      folder shared with it (REST API; A's folder restarts and rescans, and the clock waits for it
#      to be idle again), C's config.xml knows A and the folder. Also shown: the part of that time
#      until C is connected (SyncSphere: status.json `connected`; Syncthing: a connection in
#      /rest/system/connections): a Syncthing start takes ~1.5 s (database set-up, SHA-256 and
#      hashing benchmarks) before it connects;
#   d. the saves of (a) again with the F files in the folder: p50 / p99, CPU of A and B per save;
#   e. idle: 60 s with nothing changing, CPU of A and B together in cores (server on its own row);
#   f. a random file of M MiB renamed into A's folder, timed until byte-identical on B's disk;
#      CPU of A and B (and server) until both are up to date;
#   g. 1 byte inserted at the start of that file (the new version written next to the folder, then
#      renamed over it, as bench-files.sh does), timed until B's copy is the new version; bytes
#      over the network for it, two ways:
#      - as each program counts them: SyncSphere's content bytes (status.json bytes_uploaded of A,
#        bytes_downloaded of B), Syncthing's BEP bytes (/rest/system/connections total
#        outBytesTotal of A, inBytesTotal of B: protocol messages after compression, before TLS);
#      - system-neutral, TCP payload: the kernel's per-socket counters (tcp_info bytes_acked =
#        bytes sent and acknowledged, bytes_received), read with `ss -tieH` for the sockets the
#        process owns (socket inodes from /proc/PID/fd) whose either end is a sync port (the
#        SyncSphere server's port; the Syncthing listen ports — so Syncthing's REST/GUI socket
#        is not counted), sampled before, every 250 ms during and after the edit; a socket that
#        closes between two samples loses at most its last 250 ms (the table says how many
#        sockets were seen closing). This is what the programs hand to TCP — HTTP headers, TLS
#        records, WebSocket frames included; TCP/IP headers and retransmissions not — and means
#        the same thing for both systems. (/proc/PID/io is no measure of the network: it counts
#        file reads and writes too. Namespace-wide counters would include other loopback users.)
# Syncthing setup: `syncthing generate`, then config.xml edited before the first start: GUI/REST
# on 127.0.0.1:<free port> with an API key, listen tcp://127.0.0.1:<free port>, global and local
# discovery, relays, NAT, crash reporting, auto-upgrade off, usage reporting declined
# (urAccepted -1), setLowPriority off (Syncthing would renice itself; SyncSphere does not), the
# peer with its explicit tcp:// address, one sendreceive folder with the file watcher on and
# fsWatcherDelayS=1 (default 10), rescanIntervalS=3600, no default folder. Syncthing's progress is
# read from /rest/db/status (state idle, nothing needed, global and local file counts right),
# polled every 50 ms; those REST calls are in Syncthing's CPU figures of b, c, f and g (measured:
# ~0.7 ms of CPU per call at 2,000 files, ~1.3 % of a core), SyncSphere's status.json is read
# from disk at no cost to the client. Latencies are always read from the disk. Syncthing 1.19
# always forks a monitor process that runs the real one as its child, --no-restart or not:
# STMONITORED=1 (what the monitor sets for its child) runs the real one directly, so the PID
# measured is the one doing the work. Ratio column: SyncSphere's figure divided by Syncthing's
# (below 1: SyncSphere faster, cheaper or smaller).
#   scripts/bench-peers.sh [--files 10000] [--saves 100] [--big-mib 256] [--no-build]
# Writes the Markdown table to stdout, and also to $BENCH_PEERS_OUT when set. BENCH_PEERS_KEEP=1
# keeps the work directory (logs, configs) under /var/tmp.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
FILES=10000
SAVES=100
BIG_MIB=256
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES="$2"; shift 2 ;;
    --saves) SAVES="$2"; shift 2 ;;
    --big-mib) BIG_MIB="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

if ! command -v syncthing >/dev/null; then
  log "installing Syncthing (Debian package)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends syncthing \
    || { $SUDO apt-get update -qq \
         && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends syncthing; }
fi
command -v ss >/dev/null || { echo "ss (iproute2) is needed for the network bytes" >&2; exit 1; }
if [ "$BUILD" = 1 ]; then
  log "building release binaries"
  cargo build --locked --release -p syncsphere-server -p syncsphere-cli
fi
REL="$CARGO_TARGET_DIR/release"
for b in syncsphere syncsphere-server; do
  [ -x "$REL/$b" ] || { echo "missing $REL/$b (run without --no-build)" >&2; exit 1; }
done
# Read now: with --no-build, a build running elsewhere may replace the binaries later.
SS_BUILT="$(date -u -r "$REL/syncsphere" '+%F %H:%M UTC')"
WORK="$(mktemp -d /var/tmp/syncsphere-bench-peers.XXXXXX)"
mkdir -p "$WORK/pids"
PIDS=()   # processes started here and still running: the server, the driver
cleanup() {
  # Those, then every client or syncthing the driver started (it records each PID in
  # $WORK/pids while the process runs, and removes it once it has reaped it).
  local pid pids=("${PIDS[@]}") f
  for f in "$WORK"/pids/*; do [ -e "$f" ] && pids+=("${f##*/}"); done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "${BENCH_PEERS_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Runs the driver in the background and waits for it: a signal interrupts the wait at once and
# the clean-up runs (a foreground child would delay the traps until it ended).
driver() {
  python3 "$WORK/driver.py" "$@" &
  PIDS+=("$!")
  local rc=0
  wait "$!" || rc=$?
  unset 'PIDS[-1]'
  return "$rc"
}

cat >"$WORK/driver.py" <<'PY'
import json, os, re, secrets, shutil, socket, subprocess, sys, threading, time
import urllib.request
import xml.etree.ElementTree as ET
from benchlib import cpu, quantile, timed_saves

mode, work = sys.argv[1], sys.argv[2]
files, saves, big_mib = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
BASE = min(saves, 20)          # note-N.txt files the saves leave in the folder
WAIT = 1800                    # s, any wait for a device to be up to date

def say(msg):
    print(f"    {msg}", file=sys.stderr, flush=True)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port

def spawn(args, log, env=None):
    p = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    open(os.path.join(work, "pids", str(p.pid)), "w").close()
    return p

def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()
    try:
        os.remove(os.path.join(work, "pids", str(p.pid)))
    except OSError:
        pass

def write_many(folder):
    for i in range(files):
        d = os.path.join(folder, "many", f"{i // 1000:02d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file-{i:05d}.txt"), "wb") as f:
            f.write(os.urandom(512).hex().encode())

def measure_saves(system, fa, fb, n, step):
    lat = timed_saves(fa, fb, n, lambda i, name: f"{system}, step {step}: save {i} ({name}) not on B after 30 s")
    return quantile(lat, 0.5), quantile(lat, 0.99)

def same_file(a, b, chunk=1 << 22):
    try:
        if os.stat(a).st_size != os.stat(b).st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(chunk), fb.read(chunk)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False

def wait_same(system, step, dst, ref, timeout=WAIT):
    t0 = time.perf_counter()
    while not same_file(dst, ref):
        if time.perf_counter() - t0 > timeout:
            sys.exit(f"{system}, step {step}: {dst} not identical to {ref} after {timeout} s")
        time.sleep(0.001)

# --- network bytes: kernel per-socket TCP counters -----------------------------------------
SS_RE = re.compile(r"^\S+\s+\d+\s+\d+\s+(\S+):(\d+)\s+(\S+):(\d+).*?\bino:(\d+)", re.S)

def socket_inodes(pid):
    got = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                got.add(link[8:-1])
    except OSError:
        pass
    return got

def tcp_snapshot(pids, ports):
    """{inode: (pid, bytes sent and acked, bytes received)} for the TCP sockets of those pids with
    a sync port at either end."""
    owner = {}
    for pid in pids:
        for ino in socket_inodes(pid):
            owner[ino] = pid
    out = subprocess.run(["ss", "-tieH"], capture_output=True, text=True).stdout
    got = {}
    # Each socket: a line, then its tcp_info on indented continuation line(s).
    for entry in re.split(r"\n(?=\S)", out):
        m = SS_RE.match(entry)
        if not m or m.group(5) not in owner:
            continue
        if int(m.group(2)) not in ports and int(m.group(4)) not in ports:
            continue
        acked = re.search(r"\bbytes_acked:(\d+)", entry)
        recv = re.search(r"\bbytes_received:(\d+)", entry)
        got[m.group(5)] = (owner[m.group(5)], int(acked.group(1)) if acked else 0,
                           int(recv.group(1)) if recv else 0)
    return got

class TcpMeter:
    """Bytes over TCP per process between start() and stop(), sampled every 250 ms."""
    def __init__(self, pids, ports):
        self.pids, self.ports = pids, ports
    def start(self):
        self.first = tcp_snapshot(self.pids, self.ports)
        self.last = dict(self.first)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
    def _run(self):
        while not self.done.wait(0.25):
            self.last.update(tcp_snapshot(self.pids, self.ports))
    def stop(self):
        self.done.set(); self.thread.join()
        now = tcp_snapshot(self.pids, self.ports)
        closed = len(set(self.last) - set(now))
        self.last.update(now)
        per = {pid: [0, 0] for pid in self.pids}
        for ino, (pid, sent, recv) in self.last.items():
            s0, r0 = self.first.get(ino, (pid, 0, 0))[1:]
            per[pid][0] += sent - s0
            per[pid][1] += recv - r0
        return per, closed

# --- SyncSphere -------------------------------------------------------------------------------
class SyncSphereDevice:
    def __init__(self, name, cli, url):
        self.name, self.cli, self.url = name, cli, url
        self.conf = os.path.join(work, f"ss-{name}")
        self.folder = os.path.join(work, f"ss-f{name}")
        os.makedirs(self.folder, exist_ok=True)
        self.proc = None
    def account(self, verb):
        subprocess.run([self.cli, "--config-dir", self.conf, verb, "--server", self.url, "--email",
                        "peers@example.com"], check=True, stdout=subprocess.DEVNULL)
    def start(self):
        self.proc = spawn([self.cli, "--config-dir", self.conf, "sync", "--folder", self.folder,
                           "--device-name", self.name], os.path.join(work, f"ss-{self.name}.log"),
                          env=dict(os.environ, RUST_LOG="warn"))
        return self.proc.pid
    def status(self):
        try:
            with open(os.path.join(self.conf, "status.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}
    def up_to_date(self, count, uploaded_above=-1):
        s = self.status()
        return (s.get("state") == "up_to_date" and s.get("connected") and s.get("synced_files") == count
                and s.get("pending") == 0 and s.get("bytes_uploaded", 0) > uploaded_above)
    def wait(self, count, step, uploaded_above=-1):
        deadline = time.time() + WAIT
        while not self.up_to_date(count, uploaded_above):
            if self.proc.poll() is not None:
                sys.exit(f"SyncSphere, step {step}: device {self.name} exited ({self.proc.returncode}); "
                         f"see {self.name}'s log: " + open(os.path.join(work, f"ss-{self.name}.log")).read()[-2000:])
            if time.time() > deadline:
                s = {k: v for k, v in self.status().items() if k not in ("recent",)}
                sys.exit(f"SyncSphere, step {step}: device {self.name} not up to date with {count} files "
                         f"after {WAIT} s; status: {json.dumps(s)[:2000]}")
            time.sleep(0.02)
    def linked(self):
        return bool(self.status().get("connected"))
    def app_bytes(self):
        s = self.status()
        return s.get("bytes_uploaded", 0), s.get("bytes_downloaded", 0)

# --- Syncthing --------------------------------------------------------------------------------
FOLDER_ID = "bench"

class SyncthingDevice:
    def __init__(self, name):
        self.name = name
        self.home = os.path.join(work, f"st-{name}")
        self.folder = os.path.join(work, f"st-f{name}")
        os.makedirs(os.path.join(self.folder, ".stfolder"), exist_ok=True)
        subprocess.run(["syncthing", "generate", f"--home={self.home}", "--no-default-folder",
                        "--skip-port-probing"], check=True, capture_output=True)
        self.id = subprocess.run(["syncthing", "serve", f"--home={self.home}", "--device-id"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        self.gui_port, self.port = free_port(), free_port()
        self.apikey = secrets.token_hex(16)
        self.proc = None

    def configure(self, peers):
        """config.xml before the first start: loopback only, nothing phoning home, the peers with
        explicit addresses, one folder shared with them."""
        path = os.path.join(self.home, "config.xml")
        tree = ET.parse(path)
        root = tree.getroot()
        gui = root.find("gui")
        gui.find("address").text = f"127.0.0.1:{self.gui_port}"
        gui.find("apikey").text = self.apikey
        opts = root.find("options")
        for key, value in {
            "listenAddress": f"tcp://127.0.0.1:{self.port}", "globalAnnounceEnabled": "false",
            "localAnnounceEnabled": "false", "relaysEnabled": "false", "natEnabled": "false",
            "urAccepted": "-1", "crashReportingEnabled": "false", "autoUpgradeIntervalH": "0",
            "startBrowser": "false", "setLowPriority": "false", "announceLANAddresses": "false",
        }.items():
            el = opts.find(key)
            if el is None:
                el = ET.SubElement(opts, key)
            el.text = value
        defaults = root.find("defaults")
        me = root.find("device")
        me.set("name", self.name)
        for peer in peers:
            dev = ET.fromstring(ET.tostring(defaults.find("device")))
            dev.set("id", peer.id); dev.set("name", peer.name)
            dev.find("address").text = f"tcp://127.0.0.1:{peer.port}"
            root.insert(list(root).index(me) + 1, dev)
        folder = ET.fromstring(ET.tostring(defaults.find("folder")))
        for key, value in {"id": FOLDER_ID, "label": FOLDER_ID, "path": self.folder, "type": "sendreceive",
                           "fsWatcherEnabled": "true", "fsWatcherDelayS": "1", "rescanIntervalS": "3600"}.items():
            folder.set(key, value)
        for old in folder.findall("device"):
            folder.remove(old)
        for i, dev_id in enumerate([self.id] + [p.id for p in peers]):
            d = ET.Element("device", {"id": dev_id, "introducedBy": ""})
            ET.SubElement(d, "encryptionPassword")
            folder.insert(i, d)
        root.insert(0, folder)
        tree.write(path)

    def start(self):
        # STMONITORED: no monitor process (see the header).
        env = dict(os.environ, STNODEFAULTFOLDER="1", STNOUPGRADE="1", STNORESTART="1", STMONITORED="1")
        self.proc = spawn(["syncthing", "serve", "--no-browser", "--no-restart", "--no-upgrade",
                           f"--home={self.home}", "--logflags=3"],
                          os.path.join(work, f"st-{self.name}.log"), env=env)
        deadline = time.time() + 60
        while True:
            try:
                self.api("/rest/system/ping")
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    sys.exit(f"Syncthing: {self.name} did not start; log: " + self.log_tail())
                time.sleep(0.05)
        return self.proc.pid

    def log_tail(self):
        return open(os.path.join(work, f"st-{self.name}.log")).read()[-3000:]

    def api(self, path, method="GET", body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.gui_port}{path}", method=method,
                                     headers={"X-API-Key": self.apikey, "Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=60) as r:
            data = r.read()
        return json.loads(data) if data.strip() else None

    def connected(self, peer):
        c = self.api("/rest/system/connections")["connections"].get(peer.id, {})
        return c.get("connected", False)

    def linked(self):
        try:
            return any(c.get("connected") for c in self.api("/rest/system/connections")["connections"].values())
        except OSError:
            return False

    def status(self):
        return self.api(f"/rest/db/status?folder={FOLDER_ID}")

    def up_to_date(self, count):
        s = self.status()
        ok = (s["state"] == "idle" and s["needTotalItems"] == 0 and s["globalFiles"] == count
              and s["localFiles"] == count)
        return ok, s

    def wait(self, count, step):
        deadline = time.time() + WAIT
        while True:
            ok, s = self.up_to_date(count)
            if ok:
                return
            if self.proc.poll() is not None:
                sys.exit(f"Syncthing, step {step}: device {self.name} exited; log: " + self.log_tail())
            if time.time() > deadline:
                keys = ("state", "globalFiles", "localFiles", "needFiles", "needTotalItems", "inSyncFiles",
                        "pullErrors", "errors")
                sys.exit(f"Syncthing, step {step}: device {self.name} not up to date with {count} files "
                         f"after {WAIT} s; /rest/db/status: {json.dumps({k: s.get(k) for k in keys})}")
            time.sleep(0.05)

    def wait_connected(self, peer, step):
        deadline = time.time() + 120
        while not self.connected(peer):
            if time.time() > deadline:
                sys.exit(f"Syncthing, step {step}: {self.name} not connected to {peer.name} after 120 s; "
                         f"connections: {json.dumps(self.api('/rest/system/connections'))[:2000]}\n"
                         f"{self.name}'s log: {self.log_tail()}")
            time.sleep(0.05)

    def app_bytes(self):
        t = self.api("/rest/system/connections")["total"]
        return t["outBytesTotal"], t["inBytesTotal"]

# --- the workloads ------------------------------------------------------------------------------
def run(system, a, b, make_c, server_pid, sync_ports):
    r = {}
    pid_a, pid_b = a.start(), b.start()
    procs = [pid_a, pid_b] + ([server_pid] if server_pid else [])
    cpus = lambda: [cpu(p) for p in procs]
    wait_both = lambda count, step: (a.wait(count, step), b.wait(count, step))
    if system == "Syncthing":
        a.wait_connected(b, "start"); b.wait_connected(a, "start")
    wait_both(0, "start")
    time.sleep(2)

    say(f"{system} a: {saves} saves, small folder")
    r["save_small"] = measure_saves(system, a.folder, b.folder, saves, "a")
    wait_both(BASE, "a (settling)")
    time.sleep(2)

    say(f"{system} b: {files} files dropped into A's folder")
    c0 = cpus()
    tw = time.perf_counter()
    write_many(a.folder)
    t0 = time.perf_counter()
    b.wait(BASE + files, "b")
    r["bulk_s"] = time.perf_counter() - t0
    c1 = cpus()
    r["bulk_write_s"] = t0 - tw
    r["bulk_cpu"] = [y - x for x, y in zip(c0, c1)]
    a.wait(BASE + files, "b (A settling)")
    time.sleep(2)

    say(f"{system} c: a new device joins")
    c, start_c = make_c()
    s0 = cpu(server_pid) if server_pid else None
    t0 = time.perf_counter()
    pid_c = start_c()
    deadline = time.time() + 120
    while not c.linked():
        if time.time() > deadline:
            sys.exit(f"{system}, step c: C not connected 120 s after its start")
        time.sleep(0.02)
    r["join_link_s"] = time.perf_counter() - t0
    c.wait(BASE + files, "c")
    r["join_s"] = time.perf_counter() - t0
    r["join_cpu_c"] = cpu(pid_c)
    r["join_cpu_server"] = cpu(server_pid) - s0 if server_pid else None
    stop(c.proc)
    wait_both(BASE + files, "c (settling)")
    time.sleep(5)

    say(f"{system} d: {saves} saves, {BASE + files} files in the folder")
    c0 = cpus()
    r["save_big"] = measure_saves(system, a.folder, b.folder, saves, "d")
    c1 = cpus()
    r["save_cpu"] = [(y - x) / saves for x, y in zip(c0, c1)]
    wait_both(BASE + files, "d (settling)")
    time.sleep(5)

    say(f"{system} e: 60 s idle")
    c0 = cpus()
    time.sleep(60)
    c1 = cpus()
    r["idle_cores"] = [(y - x) / 60 for x, y in zip(c0, c1)]

    say(f"{system} f: a {big_mib} MiB file")
    src = os.path.join(work, "big.src")
    with open(src, "wb") as f:
        for _ in range(big_mib):
            f.write(os.urandom(1 << 20))
    big_a, big_b = os.path.join(a.folder, "big.bin"), os.path.join(b.folder, "big.bin")
    c0 = cpus()
    t0 = time.perf_counter()
    os.rename(src, big_a)
    wait_same(system, "f", big_b, big_a)
    r["big_s"] = time.perf_counter() - t0
    wait_both(BASE + files + 1, "f (settling)")
    c1 = cpus()
    r["big_cpu"] = [y - x for x, y in zip(c0, c1)]
    time.sleep(2)

    say(f"{system} g: 1 byte inserted at the start of it")
    new = os.path.join(work, "edit.new")
    with open(new, "wb") as out, open(big_a, "rb") as old:
        out.write(b"#")
        shutil.copyfileobj(old, out, 1 << 22)
    up0, down0 = a.app_bytes()[0], b.app_bytes()[1]
    meter = TcpMeter([pid_a, pid_b], sync_ports)
    meter.start()
    c0 = cpus()
    t0 = time.perf_counter()
    os.rename(new, big_a)
    wait_same(system, "g", big_b, big_a)
    r["edit_s"] = time.perf_counter() - t0
    if system == "SyncSphere":
        a.wait(BASE + files + 1, "g (settling)", uploaded_above=up0)
        b.wait(BASE + files + 1, "g (settling)")
    else:
        wait_both(BASE + files + 1, "g (settling)")
    c1 = cpus()
    time.sleep(0.5)
    per, closed = meter.stop()
    r["edit_cpu"] = [y - x for x, y in zip(c0, c1)]
    r["edit_app_up"] = a.app_bytes()[0] - up0
    r["edit_app_down"] = b.app_bytes()[1] - down0
    r["edit_tcp_a"], r["edit_tcp_b"] = per[pid_a], per[pid_b]
    r["edit_tcp_closed"] = closed

    for dev in (a, b):
        stop(dev.proc)
    return r

if mode == "syncsphere":
    cli, url, server_pid = sys.argv[6], sys.argv[7], int(sys.argv[8])
    os.environ["SYNCSPHERE_PASSWORD"] = "Benchmark-passw0rd"
    a, b = SyncSphereDevice("a", cli, url), SyncSphereDevice("b", cli, url)
    a.account("signup"); b.account("login")
    def make_c():
        c = SyncSphereDevice("c", cli, url)
        c.account("login")
        return c, c.start
    port = int(url.rsplit(":", 1)[1].strip("/"))
    result = run("SyncSphere", a, b, make_c, server_pid, {port})
elif mode == "syncthing":
    a, b = SyncthingDevice("a"), SyncthingDevice("b")
    a.configure([b]); b.configure([a])
    def make_c():
        c = SyncthingDevice("c")
        c.configure([a])
        dev = a.api("/rest/config/defaults/device")
        dev.update({"deviceID": c.id, "name": c.name, "addresses": [f"tcp://127.0.0.1:{c.port}"]})
        a.api("/rest/config/devices", "POST", dev)
        folder = a.api(f"/rest/config/folders/{FOLDER_ID}")
        folder["devices"].append({"deviceID": c.id, "introducedBy": "", "encryptionPassword": ""})
        a.api(f"/rest/config/folders/{FOLDER_ID}", "PUT", folder)
        # The folder restarts (and rescans) with the new device: let it finish before the clock.
        time.sleep(1)
        a.wait(BASE + files, "c (A after adding C)")
        return c, c.start
    result = run("Syncthing", a, b, make_c, None, {a.port, b.port})
else:
    raise SystemExit(f"unknown mode {mode}")
with open(os.path.join(work, f"result-{mode}.json"), "w") as f:
    json.dump(result, f)
PY

cat >"$WORK/table.py" <<'PY'
import json, os, sys
work, header = sys.argv[1], sys.argv[2]
ss = json.load(open(os.path.join(work, "result-syncsphere.json")))
st = json.load(open(os.path.join(work, "result-syncthing.json")))
files, saves, big = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
BASE = min(saves, 20)  # note-N.txt files the saves leave in the folder
n = files + BASE
rows = []
def row(what, x, y, fmt, unit=""):
    show = lambda v: "—" if v is None else (fmt.format(v) + unit)
    ratio = "—" if x is None or y is None or y == 0 else f"{x / y:.2f}×"
    rows.append(f"| {what} | {show(x)} | {show(y)} | {ratio} |")
ms, s, mib = "{:.0f}", "{:.2f}", "{:,.0f}"
row(f"a. save → byte-identical on B, {BASE} files in the folder, p50", ss["save_small"][0], st["save_small"][0], ms, " ms")
row("a. same, p99", ss["save_small"][1], st["save_small"][1], ms, " ms")
row(f"b. {files:,} × 1 KiB dropped on A → all on B, up to date", ss["bulk_s"], st["bulk_s"], s, " s")
row("b. of the files: their writing (before the time above, CPU counted)", ss["bulk_write_s"], st["bulk_write_s"], s, " s")
row("b. CPU of A", ss["bulk_cpu"][0], st["bulk_cpu"][0], s, " s")
row("b. CPU of B", ss["bulk_cpu"][1], st["bulk_cpu"][1], s, " s")
row("b. CPU of the SyncSphere server", ss["bulk_cpu"][2], None, s, " s")
row("b. CPU of all processes (SyncSphere: A + B + server; Syncthing: A + B)", sum(ss["bulk_cpu"]),
    sum(st["bulk_cpu"]), s, " s")
row(f"c. new device C, empty folder → holds all {n:,} files", ss["join_s"], st["join_s"], s, " s")
row("c. of which: C's start → C connected (SyncSphere: to the server, Syncthing: to A)", ss["join_link_s"], st["join_link_s"], s, " s")
row("c. CPU of C", ss["join_cpu_c"], st["join_cpu_c"], s, " s")
row("c. CPU of the SyncSphere server", ss["join_cpu_server"], None, s, " s")
row(f"d. save → byte-identical on B, {n:,} files in the folder, p50", ss["save_big"][0], st["save_big"][0], ms, " ms")
row("d. same, p99", ss["save_big"][1], st["save_big"][1], ms, " ms")
row("d. CPU per save, A", ss["save_cpu"][0] * 1000, st["save_cpu"][0] * 1000, "{:.1f}", " ms")
row("d. CPU per save, B", ss["save_cpu"][1] * 1000, st["save_cpu"][1] * 1000, "{:.1f}", " ms")
row("d. CPU per save, SyncSphere server", ss["save_cpu"][2] * 1000, None, "{:.1f}", " ms")
row(f"e. idle 60 s, {n:,} files: A + B", ss["idle_cores"][0] + ss["idle_cores"][1],
    st["idle_cores"][0] + st["idle_cores"][1], "{:.4f}", " cores")
row("e. idle, SyncSphere server", ss["idle_cores"][2], None, "{:.4f}", " cores")
row(f"f. {big} MiB random file on A → byte-identical on B", ss["big_s"], st["big_s"], s, " s")
row("f. CPU of A (until both up to date)", ss["big_cpu"][0], st["big_cpu"][0], s, " s")
row("f. CPU of B", ss["big_cpu"][1], st["big_cpu"][1], s, " s")
row("f. CPU of the SyncSphere server", ss["big_cpu"][2], None, s, " s")
row("f. CPU of all processes (SyncSphere: A + B + server; Syncthing: A + B)", sum(ss["big_cpu"]),
    sum(st["big_cpu"]), s, " s")
row("g. 1 byte inserted at its start → new version on B", ss["edit_s"], st["edit_s"], s, " s")
row("g. CPU of A", ss["edit_cpu"][0], st["edit_cpu"][0], s, " s")
row("g. CPU of B", ss["edit_cpu"][1], st["edit_cpu"][1], s, " s")
row("g. CPU of the SyncSphere server", ss["edit_cpu"][2], None, s, " s")
row("g. bytes sent by A, as the program counts (SyncSphere: content; Syncthing: BEP)",
    ss["edit_app_up"], st["edit_app_up"], mib)
row("g. bytes received by B, as the program counts", ss["edit_app_down"], st["edit_app_down"], mib)
row("g. TCP payload sent by A (kernel bytes_acked, sync sockets)", ss["edit_tcp_a"][0], st["edit_tcp_a"][0], mib)
row("g. TCP payload received by B (kernel bytes_received)", ss["edit_tcp_b"][1], st["edit_tcp_b"][1], mib)
row("g. TCP payload, A and B, all directions", sum(ss["edit_tcp_a"]) + sum(ss["edit_tcp_b"]),
    sum(st["edit_tcp_a"]) + sum(st["edit_tcp_b"]), mib)
row("g. sync sockets seen closing during the edit", ss["edit_tcp_closed"], st["edit_tcp_closed"], "{:d}")
print(header)
print()
print("| workload | SyncSphere | Syncthing (watcher 1 s) | SyncSphere / Syncthing |")
print("|---|---|---|---|")
print("\n".join(rows))
PY

log "SyncSphere: server and clients"
start_bench_server "$WORK" server --data-dir "$WORK/server"
PIDS+=("$STARTED_PID")
SERVER_PID="$STARTED_PID"
driver syncsphere "$WORK" "$FILES" "$SAVES" "$BIG_MIB" "$REL/syncsphere" "$STARTED_URL" "$SERVER_PID"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
PIDS=()
rm -rf "$WORK"/ss-* "$WORK/server"
sync

log "Syncthing: two instances"
driver syncthing "$WORK" "$FILES" "$SAVES" "$BIG_MIB"

SS_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
ST_VERSION="$(syncthing --version | head -n1)"
HEADER="## SyncSphere vs Syncthing ($(date -u +%F), $(nproc) cores): SyncSphere $SS_REV (release binaries of $SS_BUILT), $ST_VERSION; --files $FILES --saves $SAVES --big-mib $BIG_MIB"
python3 "$WORK/table.py" "$WORK" "$HEADER" "$FILES" "$SAVES" "$BIG_MIB" >"$WORK/table.md"
cat "$WORK/table.md"
if [ -n "${BENCH_PEERS_OUT:-}" ]; then cp "$WORK/table.md" "$BENCH_PEERS_OUT"; fi
