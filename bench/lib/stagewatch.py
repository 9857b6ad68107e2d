#!/usr/bin/env python3
"""Watch tranche's uploads on the fleet's hosts (their /srv is FLEET/hosts/hI/srv on this
machine) to split tranche's stage step into upload and verify+unpack.

  stagewatch.py ROOT_PID FLEET N SIZE ROOT OUT

Every 20 ms until ROOT_PID exits: for host I, the upload is done at the first sample where a
file in ROOT/.tranche-stage has SIZE bytes or more, or ROOT/releases/<anything>.tmp or a
sha256 marker appeared (the upload was faster than a sample). Writes `hI EPOCH_SECONDS` lines.
"""
import os
import sys
import time

root_pid, fleet, n, size, root, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
rel = root.lstrip("/")
done = {}
before = {}
for i in range(1, n + 1):
    rdir = os.path.join(fleet, "hosts", f"h{i}", "srv", rel.removeprefix("srv/"), "releases")
    try:
        before[i] = set(os.listdir(rdir))
    except OSError:
        before[i] = set()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


while alive(root_pid) and len(done) < n:
    now = time.time()
    for i in range(1, n + 1):
        if i in done:
            continue
        base = os.path.join(fleet, "hosts", f"h{i}", "srv", rel.removeprefix("srv/"))
        hit = False
        try:
            for name in os.listdir(os.path.join(base, ".tranche-stage")):
                try:
                    if os.path.getsize(os.path.join(base, ".tranche-stage", name)) >= size:
                        hit = True
                        break
                except OSError:
                    pass
        except OSError:
            pass
        if not hit:
            try:
                hit = bool(set(os.listdir(os.path.join(base, "releases"))) - before[i])
            except OSError:
                pass
        if hit:
            done[i] = now
    time.sleep(0.02)

with open(out, "w") as f:
    for i, t in sorted(done.items()):
        f.write(f"h{i} {t:.3f}\n")
