#!/usr/bin/env python3
"""A request loop through the load balancer, for the release1000 benchmark.

  reqloop.py HOST:PORT PATH RATE WORKERS OUT

WORKERS threads send GET PATH (a new connection each: HAProxy picks a server per request) at
about RATE requests a second in all, until SIGTERM or SIGINT; then write to OUT `key value` lines:
requests, ok (status 200 with a body), failed, and up to 5 samples of failures, and per body
(the version that answered) its count. Standard library only.
"""
import http.client
import signal
import sys
import threading
import time
from collections import Counter

host, port = sys.argv[1].rsplit(":", 1)
path, rate, workers, out = sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
stop = threading.Event()
lock = threading.Lock()
stats = Counter()
bodies = Counter()
samples = []


def worker():
    gap = workers / rate
    nxt = time.monotonic()
    while not stop.is_set():
        err = None
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            c.request("GET", path, headers={"Connection": "close"})
            r = c.getresponse()
            body = r.read().decode(errors="replace").strip()
            c.close()
            if r.status != 200 or not body:
                err = "status %d body %r" % (r.status, body[:60])
        except Exception as e:  # noqa: BLE001 - every failure counts
            err = "%s: %s" % (type(e).__name__, e)
            body = None
        with lock:
            stats["requests"] += 1
            if err:
                stats["failed"] += 1
                if len(samples) < 5:
                    samples.append("%.3f %s" % (time.time(), err))
            else:
                stats["ok"] += 1
                bodies[body] += 1
        nxt += gap
        d = nxt - time.monotonic()
        if d > 0:
            stop.wait(d)
        else:
            nxt = time.monotonic()


def finish(*_):
    stop.set()


signal.signal(signal.SIGTERM, finish)
signal.signal(signal.SIGINT, finish)
t0 = time.monotonic()
ts = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
for t in ts:
    t.start()
while not stop.is_set():
    stop.wait(0.2)
for t in ts:
    t.join(15)
with open(out, "w") as f:
    f.write("seconds %.1f\n" % (time.monotonic() - t0))
    for k in ("requests", "ok", "failed"):
        f.write("%s %d\n" % (k, stats[k]))
    for b, n in sorted(bodies.items()):
        f.write("body.%s %d\n" % (b.replace(" ", "_")[:40], n))
    for s in samples:
        f.write("failure %s\n" % s)
