"""The Nautilus emblem extension (packaging/nautilus/syncsphere_emblems.py) against a fake
Nautilus (stub gi modules) and a socket server speaking the app's emblem protocol
(src-tauri/src/emblems.rs). Stdlib only: python3 -m unittest discover -s tests/desktop
"""

import importlib.util
import os
import select
import socket
import sys
import tempfile
import threading
import time
import types
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXTENSION = os.path.join(ROOT, "packaging", "nautilus", "syncsphere_emblems.py")
# Recorded from the app's real socket server by src-tauri/src/emblems.rs's tests.
TRANSCRIPT = os.path.join(ROOT, "packaging", "nautilus", "protocol-transcript.txt")


def read_transcript(folder):
    """(request -> reply lines, lines pushed at the end) with `folder` for {folder}."""
    replies, pushed, request = {}, [], None
    with open(TRANSCRIPT, "rb") as f:
        for line in f:
            line = line.replace(b"{folder}", folder)
            if line.startswith(b"> "):
                request = line[2:].rstrip(b"\n")
                replies[request] = []
            elif line.startswith(b"< ") and request is not None and line[2:9] != b"CHANGED":
                replies[request].append(line[2:])
            elif line.startswith(b"< "):
                pushed.append(line[2:])
    return replies, pushed


class FakeGLib(types.ModuleType):
    IO_IN, IO_OUT, IO_PRI, IO_ERR, IO_HUP = 1, 4, 2, 8, 16
    PRIORITY_DEFAULT = 0

    def __init__(self):
        super().__init__("gi.repository.GLib")
        self.watches = {}
        self.idle = []
        self.next_id = 1

    def io_add_watch(self, fd, priority, condition, callback):
        self.next_id += 1
        self.watches[self.next_id] = (fd, condition, callback)
        return self.next_id

    def source_remove(self, source):
        del self.watches[source]

    def idle_add(self, callback, *args):
        self.idle.append((callback, args))

    def run_idle(self):
        pending, self.idle = self.idle, []
        for callback, args in pending:
            callback(*args)

    def dispatch(self, timeout=2.0):
        """What the main loop does: run the watch callbacks whose sockets are readable."""
        deadline = time.monotonic() + timeout
        while self.watches and time.monotonic() < deadline:
            for source, (fd, _, callback) in list(self.watches.items()):
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready:
                    condition = self.IO_IN
                    if callback(fd, condition) is False:
                        self.watches.pop(source, None)
                    return True
        return False


def install_fake_gi(nautilus_versions=("4.0", "3.0")):
    gi = types.ModuleType("gi")
    gi.required = {}

    def require_version(name, version):
        if name == "Nautilus" and version not in nautilus_versions:
            raise ValueError(f"Namespace {name} not available for version {version}")
        gi.required[name] = version

    gi.require_version = require_version
    repository = types.ModuleType("gi.repository")
    glib = FakeGLib()
    gobject = types.ModuleType("gi.repository.GObject")
    gobject.GObject = type("GObject", (), {})
    nautilus = types.ModuleType("gi.repository.Nautilus")
    nautilus.InfoProvider = type("InfoProvider", (), {})
    repository.GLib, repository.GObject, repository.Nautilus = glib, gobject, nautilus
    gi.repository = repository
    sys.modules.update(
        {
            "gi": gi,
            "gi.repository": repository,
            "gi.repository.GLib": glib,
            "gi.repository.GObject": gobject,
            "gi.repository.Nautilus": nautilus,
        }
    )
    return gi, glib


def load_extension(**gi_options):
    gi, glib = install_fake_gi(**gi_options)
    spec = importlib.util.spec_from_file_location("syncsphere_emblems", EXTENSION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, gi, glib


class FakeLocation:
    def __init__(self, path):
        self.path = path

    def get_path(self):
        return self.path


class FakeFile:
    """The part of Nautilus.FileInfo the extension uses."""

    def __init__(self, path):
        self.location = FakeLocation(path)
        self.emblems = []
        self.invalidated = 0

    def get_location(self):
        return self.location

    def add_emblem(self, name):
        self.emblems.append(name)

    def invalidate_extension_info(self):
        self.invalidated += 1


class ProtocolServer:
    """Answers STATE requests from `states` (path -> word; unknown -> none) like the app,
    refuses anything else with ERROR, and pushes CHANGED lines on demand."""

    def __init__(self, path, states, answer=True):
        self.states = states
        self.answer = answer
        self.requests = []
        self.clients = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.clients.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buffer = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self.requests.append(line)
                if self.answer:
                    conn.sendall(self.reply(line))

    def reply(self, line):
        if line.startswith(b"STATE\t") and line[6:].startswith(b"/"):
            path = line[6:]
            word = self.states.get(path, b"none")
            return b"STATE\t" + word + b"\t" + path + b"\n"
        return b"ERROR\tunknown request\n"

    def push(self, line):
        for conn in self.clients:
            conn.sendall(line)

    def stop(self):
        try:
            # Wakes the accepting thread (a plain close() would not, on Linux).
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for conn in self.clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


class TranscriptServer(ProtocolServer):
    """Replies exactly what the app replied in the recorded session."""

    def __init__(self, path, replies):
        self.replies = replies
        self.unrecorded = []
        super().__init__(path, {})

    def reply(self, line):
        if line not in self.replies:
            self.unrecorded.append(line)
            return b"ERROR\tnot in the recorded session\n"
        return b"".join(self.replies[line])


class EmblemTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.runtime = self.dir.name
        os.makedirs(os.path.join(self.runtime, "syncsphere"))
        self.socket = os.path.join(self.runtime, "syncsphere", "emblems.sock")
        self.old_runtime = os.environ.get("XDG_RUNTIME_DIR")
        os.environ["XDG_RUNTIME_DIR"] = self.runtime
        self.ext, self.gi, self.glib = load_extension()
        self.servers = []
        self.providers = []

    def provider(self):
        provider = self.ext.SyncSphereEmblems()
        self.providers.append(provider)
        return provider

    def tearDown(self):
        for provider in self.providers:
            provider.client.close(retry_later=False)
        for server in self.servers:
            server.stop()
        if self.old_runtime is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = self.old_runtime
        self.dir.cleanup()

    def serve(self, states, **options):
        server = ProtocolServer(self.socket, states, **options)
        self.servers.append(server)
        return server

    def test_each_state_gets_its_emblem(self):
        words = {
            "synced": ["emblem-default"],
            "syncing": ["emblem-synchronizing"],
            "conflict": ["emblem-important"],
            "error": ["emblem-unreadable"],
            "paused": [],
            "ignored": [],
            "none": [],
        }
        self.serve({f"/s/{w}.txt".encode(): w.encode() for w in words})
        provider = self.provider()
        for word, emblems in words.items():
            file = FakeFile(f"/s/{word}.txt")
            self.assertIsNone(provider.update_file_info(file))
            self.assertEqual(file.emblems, emblems, word)
        self.assertEqual(self.gi.required["Nautilus"], "4.0")

    def test_the_apps_recorded_answers_and_announcements(self):
        folder = "/home/ada/Sync"
        replies, pushed = read_transcript(folder.encode())
        server = TranscriptServer(self.socket, replies)
        self.servers.append(server)
        provider = self.provider()
        expected = {
            "new.txt": ["emblem-synchronizing"],
            "d/moving.bin": ["emblem-synchronizing"],
            "d": ["emblem-synchronizing"],
            "r (conflicted copy from pc 2026-11-25 103015).txt": ["emblem-important"],
            "notes.txt~": [],
            "bad\\name.txt": ["emblem-unreadable"],
            "gone.txt": [],
        }
        files = {}
        for name, emblems in expected.items():
            files[name] = FakeFile(f"{folder}/{name}")
            provider.update_file_info(files[name])
            self.assertEqual(files[name].emblems, emblems, name)
        outside = FakeFile("/elsewhere/a.txt")
        provider.update_file_info(outside)
        self.assertEqual(outside.emblems, [])
        self.assertEqual(server.unrecorded, [])
        self.assertEqual(len(pushed), 2)

        server.push(b"".join(pushed))
        deadline = time.monotonic() + 2
        while files["d/moving.bin"].invalidated == 0 and time.monotonic() < deadline:
            self.glib.dispatch(timeout=0.1)
        self.assertEqual(
            {n for n, f in files.items() if f.invalidated},
            {"d", "d/moving.bin"},
        )

    def test_bytes_that_are_not_utf8_are_asked_as_they_are(self):
        raw = b"/s/caf\xe9.txt"
        server = self.serve({raw: b"synced"})
        file = FakeFile(os.fsdecode(raw))
        self.provider().update_file_info(file)
        self.assertEqual(file.emblems, ["emblem-default"])
        self.assertEqual(server.requests, [b"STATE\t" + raw])

    def test_no_app_means_no_emblem_and_no_error(self):
        provider = self.provider()
        for path in ["/s/a.txt", "/s/b.txt"]:
            file = FakeFile(path)
            provider.update_file_info(file)
            self.assertEqual(file.emblems, [])
        provider.update_file_info(FakeFile(None))  # no local path (a remote location)

        class Broken(FakeFile):
            def get_location(self):
                raise RuntimeError("Nautilus hiccup")

        provider.update_file_info(Broken("/s/c.txt"))

    def test_a_stuck_app_costs_one_timeout_then_waits_before_retrying(self):
        self.serve({}, answer=False)
        provider = self.provider()
        started = time.monotonic()
        first = FakeFile("/s/a.txt")
        provider.update_file_info(first)
        self.assertLess(time.monotonic() - started, self.ext.TIMEOUT + 0.5)
        started = time.monotonic()
        for i in range(20):
            provider.update_file_info(FakeFile(f"/s/{i}.txt"))
        self.assertLess(time.monotonic() - started, 0.1, "no waiting while backing off")
        self.assertEqual(first.emblems, [])

    def test_reconnects_lazily_after_the_app_restarts(self):
        self.ext.RETRY_SECONDS = 0.0
        provider = self.provider()
        before = FakeFile("/s/a.txt")
        provider.update_file_info(before)
        self.assertEqual(before.emblems, [])
        self.serve({b"/s/a.txt": b"synced"})
        after = FakeFile("/s/a.txt")
        provider.update_file_info(after)
        self.assertEqual(after.emblems, ["emblem-default"])

    def test_changed_lines_invalidate_the_files_they_name(self):
        server = self.serve({})
        provider = self.provider()
        files = {p: FakeFile(p) for p in ["/s/a.txt", "/s/d/b.txt", "/s/d/e/c.txt", "/s/dd.txt"]}
        for file in files.values():
            provider.update_file_info(file)

        server.push(b"CHANGED\t/s/a.txt\n")
        self.assertTrue(self.glib.dispatch())
        self.assertEqual({p: f.invalidated for p, f in files.items()},
                         {"/s/a.txt": 1, "/s/d/b.txt": 0, "/s/d/e/c.txt": 0, "/s/dd.txt": 0})

        server.push(b"CHANGED\t/s/d/\n")  # everything under /s/d
        self.assertTrue(self.glib.dispatch())
        self.assertEqual({p: f.invalidated for p, f in files.items()},
                         {"/s/a.txt": 1, "/s/d/b.txt": 1, "/s/d/e/c.txt": 1, "/s/dd.txt": 0})

        # Pushed just before an answer: handled once Nautilus is idle.
        server.push(b"CHANGED\t/s/dd.txt\n")
        time.sleep(0.05)
        answered = FakeFile("/s/new.txt")
        provider.update_file_info(answered)
        self.assertEqual(files["/s/dd.txt"].invalidated, 0)
        self.glib.run_idle()
        self.assertEqual(files["/s/dd.txt"].invalidated, 1)

    def test_the_app_going_away_clears_every_emblem(self):
        server = self.serve({b"/s/a.txt": b"synced"})
        provider = self.provider()
        file = FakeFile("/s/a.txt")
        provider.update_file_info(file)
        self.assertEqual(file.emblems, ["emblem-default"])
        server.stop()
        self.servers.remove(server)
        self.assertTrue(self.glib.dispatch())
        self.assertEqual(file.invalidated, 1)
        self.assertEqual(self.glib.watches, {})
        again = FakeFile("/s/a.txt")
        provider.update_file_info(again)
        self.assertEqual(again.emblems, [])

    def test_a_path_with_a_newline_is_not_asked(self):
        server = self.serve({})
        provider = self.provider()
        provider.update_file_info(FakeFile("/s/two\nlines"))
        provider.update_file_info(FakeFile("/s/ok"))
        self.assertEqual(server.requests, [b"STATE\t/s/ok"])

    def test_falls_back_to_nautilus_3(self):
        _, gi, _ = load_extension(nautilus_versions=("3.0",))
        self.assertEqual(gi.required["Nautilus"], "3.0")

    def test_socket_path_follows_the_app(self):
        path = self.ext.socket_path
        self.assertEqual(path({"XDG_RUNTIME_DIR": "/run/user/7"}),
                         "/run/user/7/syncsphere/emblems.sock")
        self.assertEqual(path({"XDG_RUNTIME_DIR": "rel", "SYNCSPHERE_CONFIG_DIR": "/c"}),
                         "/c/emblems.sock")
        self.assertEqual(path({"XDG_CONFIG_HOME": "/x"}), "/x/syncsphere/emblems.sock")


if __name__ == "__main__":
    unittest.main()
