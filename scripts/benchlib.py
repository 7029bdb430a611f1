"""Shared helpers of the benchmark drivers (the Python embedded in scripts/bench-*.sh).

scripts/lib.sh puts this folder on PYTHONPATH: `from benchlib import cpu, timed_saves`.
"""
import os
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    """CPU seconds (user + system) of a process so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def timed_saves(src_dir, dst_dir, n, failed):
    """Saves a 2 KB file into src_dir n times, as editors do (written to a temporary name,
    then renamed; 20 names cycling, 250 ms apart), each timed until the file is byte-identical
    in dst_dir (polled every millisecond). Returns the latencies in ms, sorted; exits with
    `failed(i, name)` when a save has not arrived after 30 s."""
    lat = []
    for i in range(n):
        body = os.urandom(1024).hex().encode()
        name = f"note-{i % 20}.txt"
        src, tmp = os.path.join(src_dir, name), os.path.join(src_dir, f".{name}.swp")
        dst = os.path.join(dst_dir, name)
        with open(tmp, "wb") as f:
            f.write(body)
        t0 = time.perf_counter()
        os.rename(tmp, src)
        while True:
            try:
                with open(dst, "rb") as f:
                    if f.read() == body:
                        break
            except OSError:
                pass
            if time.perf_counter() - t0 > 30:
                sys.exit(failed(i, name))
            time.sleep(0.001)
        lat.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.25)
    lat.sort()
    return lat


def quantile(lat, p):
    """The p-quantile of sorted latencies, as the benchmarks have always read it."""
    return lat[min(len(lat) - 1, int(p * len(lat)))]
