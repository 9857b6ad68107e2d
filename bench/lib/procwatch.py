#!/usr/bin/env python3
"""Sample a process tree every INTERVAL seconds until ROOT_PID exits.

  procwatch.py ROOT_PID NAME OUT [INTERVAL]

Finds the descendants of ROOT_PID whose comm is NAME (e.g. `time` -> `tranche`) and records the
peak number of open fds (/proc/PID/fd), peak VmRSS and peak thread count. Writes `key value`
lines to OUT when ROOT_PID is gone.
"""
import os
import sys
import time


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def descendants(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def main():
    root, name, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.05
    peak_fd = peak_rss = peak_thr = samples = 0
    while os.path.exists(f"/proc/{root}"):
        for p in descendants(root):
            if comm(p) != name:
                continue
            try:
                nfd = len(os.listdir(f"/proc/{p}/fd"))
                with open(f"/proc/{p}/status") as f:
                    st = dict(l.split(":", 1) for l in f if ":" in l)
                rss = int(st.get("VmRSS", "0 kB").split()[0])
                thr = int(st.get("Threads", "0").strip())
            except (OSError, ValueError):
                continue
            samples += 1
            peak_fd, peak_rss, peak_thr = max(peak_fd, nfd), max(peak_rss, rss), max(peak_thr, thr)
        # a zombie root counts as gone
        try:
            with open(f"/proc/{root}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except OSError:
            break
        time.sleep(interval)
    with open(out, "w") as f:
        f.write(f"peak_fds {peak_fd}\npeak_rss_kb {peak_rss}\npeak_threads {peak_thr}\nsamples {samples}\n")


if __name__ == "__main__":
    main()
