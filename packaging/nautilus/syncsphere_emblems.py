"""SyncSphere sync-state emblems for Nautilus (nautilus-python).

Asks the running SyncSphere app, over its emblem socket, which state each file Nautilus shows
is in, and adds the matching emblem: synced -> emblem-default (check mark), syncing ->
emblem-synchronizing, conflict -> emblem-important, error -> emblem-unreadable. Paused, ignored
and "none" get no emblem. The app installs this file into
$XDG_DATA_HOME/nautilus-python/extensions/ when sync starts and removes it on sign-out.

The socket is $XDG_RUNTIME_DIR/syncsphere/emblems.sock (else emblems.sock in the app's config
folder) and speaks tab-separated lines (see the app's src-tauri/src/emblems.rs):
  STATE\t<path>\n  ->  STATE\t<word>\t<path>\n   (or ERROR\t<reason>\n)
  pushed: CHANGED\t<path>\n (that file), CHANGED\t<folder>/\n (everything under it)

This runs inside Nautilus: it never raises into it, asks with a short timeout, connects
lazily and, after a failure, waits RETRY_SECONDS before trying again, so a missing or stuck
app costs Nautilus almost nothing.
"""

import os
import socket
import time

import gi

try:
    gi.require_version("Nautilus", "4.0")
except ValueError:
    gi.require_version("Nautilus", "3.0")
from gi.repository import GLib, GObject, Nautilus  # noqa: E402

EMBLEMS = {
    "synced": "emblem-default",
    "syncing": "emblem-synchronizing",
    "conflict": "emblem-important",
    "error": "emblem-unreadable",
}

# Seconds to wait for one answer; a stuck app then costs one such wait per RETRY_SECONDS.
TIMEOUT = 0.25
RETRY_SECONDS = 2.0
# Files remembered for CHANGED announcements; the oldest are forgotten beyond this.
MAX_KNOWN = 20000


def socket_path(environ=None):
    """Where the app serves the socket, by the same rules as the app."""
    env = os.environ if environ is None else environ
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        return os.path.join(runtime, "syncsphere", "emblems.sock")
    config = env.get("SYNCSPHERE_CONFIG_DIR", "")
    if not config:
        base = env.get("XDG_CONFIG_HOME", "")
        if not os.path.isabs(base):
            base = os.path.join(os.path.expanduser("~"), ".config")
        config = os.path.join(base, "syncsphere")
    return os.path.join(config, "emblems.sock")


class EmblemClient:
    """One connection to the app's socket, made when first needed."""

    def __init__(self, path, on_changed):
        self.path = path
        self.on_changed = on_changed
        self.sock = None
        self.buffer = b""
        self.watch = None
        self.retry_at = 0.0

    def ask(self, path):
        """The state word for `path` (bytes), or None when the app cannot tell now."""
        if b"\n" in path or not self._connected():
            return None
        try:
            self.sock.sendall(b"STATE\t" + path + b"\n")
            while True:
                line = self._next_line()
                fields = line.split(b"\t", 2)
                if fields[0] == b"CHANGED" and len(fields) == 2:
                    # Seen while waiting for the answer: handled once Nautilus is idle.
                    GLib.idle_add(self._announce, fields[1])
                elif fields[0] == b"STATE" and len(fields) == 3 and fields[2] == path:
                    return fields[1].decode("ascii", "replace")
                elif fields[0] == b"ERROR":
                    return None
        except (OSError, ValueError):
            self.close(retry_later=True)
            return None

    def _connected(self):
        if self.sock is not None:
            return True
        if time.monotonic() < self.retry_at:
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            self.retry_at = time.monotonic() + RETRY_SECONDS
            return False
        self.sock = sock
        self.buffer = b""
        self.watch = GLib.io_add_watch(
            sock.fileno(),
            GLib.PRIORITY_DEFAULT,
            GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR,
            self._readable,
        )
        return True

    def _next_line(self):
        """The next line from the socket (blocking up to TIMEOUT for each read)."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ValueError("the app closed the socket")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def _readable(self, _fd, condition):
        """GLib IO watch: CHANGED lines pushed while Nautilus was not asking."""
        try:
            if condition & (GLib.IO_HUP | GLib.IO_ERR):
                raise ValueError("the socket hung up")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ValueError("the app closed the socket")
            self.buffer += chunk
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                fields = line.split(b"\t", 1)
                if fields[0] == b"CHANGED" and len(fields) == 2:
                    self._announce(fields[1])
            return True
        except socket.timeout:
            return True
        except (OSError, ValueError):
            self.close(retry_later=False)
            # The app went away: its emblems are no longer true.
            self.on_changed(None)
            return False

    def _announce(self, path):
        self.on_changed(path)
        return False  # as a GLib idle callback: run once

    def close(self, retry_later):
        if self.watch is not None:
            GLib.source_remove(self.watch)
            self.watch = None
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self.buffer = b""
        if retry_later:
            self.retry_at = time.monotonic() + RETRY_SECONDS


class SyncSphereEmblems(GObject.GObject, Nautilus.InfoProvider):
    def __init__(self):
        super().__init__()
        self.known = {}  # path (bytes) -> the Nautilus file last given an answer for it
        self.client = EmblemClient(socket_path(), self._changed)

    def update_file_info(self, file):
        try:
            location = file.get_location()
            path = location.get_path() if location is not None else None
            if not path:
                return
            path = os.fsencode(path)
            self._remember(path, file)
            emblem = EMBLEMS.get(self.client.ask(path))
            if emblem is not None:
                file.add_emblem(emblem)
        except Exception:  # noqa: BLE001 - never break Nautilus over an emblem
            pass

    def _remember(self, path, file):
        self.known.pop(path, None)
        self.known[path] = file
        while len(self.known) > MAX_KNOWN:
            self.known.pop(next(iter(self.known)))

    def _changed(self, path):
        """Invalidates the file at `path`, everything under it when it ends in `/`, or every
        known file when `path` is None."""
        try:
            if path is None:
                hits = list(self.known.values())
            elif path.endswith(b"/"):
                folder = path.rstrip(b"/")
                hits = [
                    f
                    for p, f in self.known.items()
                    if p == folder or p.startswith(folder + b"/") or folder == b""
                ]
            else:
                hits = [self.known[path]] if path in self.known else []
            for file in hits:
                file.invalidate_extension_info()
        except Exception:  # noqa: BLE001
            pass
