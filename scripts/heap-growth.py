#!/usr/bin/env python3
"""What a process's heap grew by between two moments, by call stack, from a heaptrack file.

heaptrack_print shows what is alive at the end (leaks) or at the peak; a slow creep needs the
difference between two moments after the warm-up. This reads heaptrack's own data (format v3,
`zstd -dc file.zst`: `a size trace` allocation kinds, `+ k` / `- k` allocations and frees of a
kind, `c ms` timestamps, `t ip parent` traces, `i ip module fn …` frames, `s len text` strings)
and counts each kind's live allocations at both moments.

  scripts/heap-growth.py FILE.zst FROM_S TO_S [--top 20]   # net growth by stack
  scripts/heap-growth.py FILE.zst --series 60 --match REGEX…  # live bytes of the stacks
                                                              # each REGEX matches, every 60 s

Times are seconds since the process started. Record with e.g.
`BENCH_SERVER_WRAP="heaptrack -o /tmp/ht/server" scripts/bench-soak.sh --duration 1500`.
"""
import argparse
import collections
import re
import subprocess
import sys

# Frames that say where memory is allocated, not who wants it: left out of a stack's name.
ALLOCATOR = ("alloc::", "rdl_alloc", "__rust_alloc", "RawVec", "raw_vec", "malloc", "realloc",
             "core::ptr", "hashbrown::raw", "exchange_malloc", "__rustc")


class Trace:
    def __init__(self):
        self.strings = [None]
        self.ips = [None]
        self.traces = [(0, 0)]
        self.kinds = []  # (size, trace)

    def take(self, line):
        """Records a definition line; False if the line is not one."""
        c = line[0]
        if c == "a":
            _, size, trace = line.split()
            self.kinds.append((int(size, 16), int(trace, 16)))
        elif c == "t":
            _, ip, parent = line.split()
            self.traces.append((int(ip, 16), int(parent, 16)))
        elif c == "i":
            parts = line.split()
            self.ips.append(int(parts[3], 16) if len(parts) > 3 else 0)
        elif c == "s":
            rest = line[2:].rstrip("\n")
            self.strings.append(rest.split(" ", 1)[1] if " " in rest else "")
        else:
            return False
        return True

    def stack(self, trace, depth):
        frames = []
        while trace and len(frames) < 64:
            ip, trace = self.traces[trace]
            fn = self.ips[ip]
            name = re.sub(r"::h[0-9a-f]{16}$", "", self.strings[fn] if fn else "?")
            if not any(a in name for a in ALLOCATOR):
                frames.append(name[:120])
        return tuple(frames[:depth])


def lines(path):
    proc = subprocess.Popen(["zstd", "-dc", path], stdout=subprocess.PIPE, text=True,
                            errors="replace", bufsize=1 << 20)
    yield from proc.stdout
    if proc.wait() != 0:
        sys.exit(f"zstd could not read {path}")


def growth(args):
    t1, t2 = int(args.from_s * 1000), int(args.to_s * 1000)
    tr, live, snaps, now = Trace(), collections.Counter(), {}, 0
    for line in lines(args.file):
        c = line[0]
        if c == "+":
            live[int(line[2:], 16)] += 1
        elif c == "-":
            live[int(line[2:], 16)] -= 1
        elif c == "c":
            now = int(line[2:], 16)
            for t in (t1, t2):
                if t not in snaps and now >= t:
                    snaps[t] = live.copy()
        else:
            tr.take(line)
    if t1 not in snaps:
        sys.exit(f"the recording ends at {now / 1000:.0f} s, before {args.from_s} s")
    if t2 not in snaps:
        print(f"(the recording ends at {now / 1000:.0f} s: its end is used)")
        snaps[t2] = live
    by_stack, count = collections.Counter(), collections.Counter()
    a, b = snaps[t1], snaps[t2]
    for kind in set(a) | set(b):
        n = b[kind] - a[kind]
        if n:
            size, trace = tr.kinds[kind]
            key = tr.stack(trace, args.depth)
            by_stack[key] += n * size
            count[key] += n
    total = sum(by_stack.values())
    print(f"heap {args.from_s:.0f} s -> {args.to_s:.0f} s: {total / 1024:+.1f} KiB net")
    ranked = sorted(by_stack.items(), key=lambda kv: -abs(kv[1]))
    for key, size in ranked[: args.top]:
        print(f"\n{size / 1024:+10.1f} KiB in {count[key]:+d} allocations")
        for frame in key:
            print(f"      {frame}")


def series(args):
    tr, kind_of, live, now, nxt = Trace(), {}, collections.Counter(), 0, args.series * 1000
    patterns = args.patterns
    adds, frees = collections.Counter(), collections.Counter()
    print("t (s) | " + " | ".join(f"{p}: live KiB (allocs / frees)" for p in patterns))
    for line in lines(args.file):
        c = line[0]
        if c in "+-":
            kind = int(line[2:], 16)
            if kind not in kind_of:
                size, trace = tr.kinds[kind]
                text = " | ".join(tr.stack(trace, 64))
                kind_of[kind] = next((p for p in patterns if re.search(p, text)), None)
            p = kind_of[kind]
            if p:
                size = tr.kinds[kind][0]
                if c == "+":
                    live[p] += size
                    adds[p] += 1
                else:
                    live[p] -= size
                    frees[p] += 1
        elif c == "c":
            now = int(line[2:], 16)
            while now >= nxt:
                print(f"{nxt // 1000} | " + " | ".join(
                    f"{live[p] / 1024:.0f} ({adds[p]} / {frees[p]})" for p in patterns))
                nxt += args.series * 1000
        else:
            tr.take(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("from_s", nargs="?", type=float)
    ap.add_argument("to_s", nargs="?", type=float)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--depth", type=int, default=8, help="frames that name a stack")
    ap.add_argument("--series", type=int, metavar="SECONDS", help="seconds between rows")
    ap.add_argument("--match", action="append", dest="patterns", default=[],
                    metavar="REGEX", help="with --series: stacks to follow (repeatable)")
    args = ap.parse_args()
    if args.series:
        if not args.patterns:
            ap.error("--series needs at least one --match")
        series(args)
    elif args.from_s is None or args.to_s is None:
        ap.error("give FROM_S and TO_S, or --series SECONDS with --match patterns")
    else:
        growth(args)


if __name__ == "__main__":
    main()
