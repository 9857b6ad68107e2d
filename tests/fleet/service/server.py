#!/usr/bin/python3
"""demo service of the tranche test fleet.

Usage: server.py --addr ADDR [--port 8080] [--pidfile /srv/demo/app.pid]

  GET /health   200, body = version   (500 "unhealthy" in a release that has a file UNHEALTHY)
  GET /         200, "hello from <version>"
  GET /metrics  Prometheus text: demo_requests_total, demo_errors_total, demo_inflight_requests
  GET /slow?ms=N  sleeps N ms (max 60000) then 200 "slow <version>": an in-flight request for tests

The pidfile is written (atomically) only after the socket is bound and listening, so
"pidfile exists" means "accepting connections".  On SIGTERM (or SIGINT) it stops
accepting, lets in-flight requests finish, removes its pidfile and exits 0.
Standard library only; run it with /usr/bin/python3.
"""
import argparse
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HERE = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def read_version():
    try:
        with open(os.path.join(HERE, "VERSION")) as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"


VERSION = read_version()
HEALTHY = not os.path.exists(os.path.join(HERE, "UNHEALTHY"))
# A release with a file ERRORS is healthy but fails its users: "/" answers 500, and every
# scrape of /metrics finds one more error (so a metric gate sees errors without traffic).
FLAKY = os.path.exists(os.path.join(HERE, "ERRORS"))

_lock = threading.Lock()
_requests = 0
_errors = 0
_inflight = 0


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a graceful stop never waits on idle keep-alives.
    protocol_version = "HTTP/1.0"
    server_version = "demo/" + VERSION

    def log_message(self, fmt, *args):  # one short line per request on stderr (app.log)
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status, body, ctype="text/plain; charset=utf-8"):
        global _errors
        data = body.encode()
        if status >= 500:
            with _lock:
                _errors += 1
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Demo-Version", VERSION)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        global _requests, _inflight, _errors
        with _lock:
            _requests += 1
            _inflight += 1
        try:
            url = urlparse(self.path)
            if url.path == "/health":
                if HEALTHY:
                    self._send(200, VERSION + "\n")
                else:
                    self._send(500, "unhealthy\n")
            elif url.path == "/":
                if FLAKY:
                    self._send(500, "oops from %s\n" % VERSION)
                else:
                    self._send(200, "hello from %s\n" % VERSION)
            elif url.path == "/metrics":
                with _lock:
                    if FLAKY:
                        _errors += 1
                    r, e, i = _requests, _errors, _inflight
                self._send(
                    200,
                    "# HELP demo_requests_total Requests received.\n"
                    "# TYPE demo_requests_total counter\n"
                    "demo_requests_total %d\n"
                    "# HELP demo_errors_total Responses with status >= 500.\n"
                    "# TYPE demo_errors_total counter\n"
                    "demo_errors_total %d\n"
                    "# HELP demo_inflight_requests Requests being served.\n"
                    "# TYPE demo_inflight_requests gauge\n"
                    "demo_inflight_requests %d\n"
                    "# HELP demo_build_info Version of the running release.\n"
                    "# TYPE demo_build_info gauge\n"
                    'demo_build_info{version="%s"} 1\n' % (r, e, i, VERSION),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            elif url.path == "/slow":
                try:
                    ms = int(parse_qs(url.query).get("ms", ["1000"])[0])
                except ValueError:
                    ms = 1000
                time.sleep(max(0, min(ms, 60000)) / 1000.0)
                self._send(200, "slow %s\n" % VERSION)
            else:
                self._send(404, "not found\n")
        finally:
            with _lock:
                _inflight -= 1


class Server(ThreadingHTTPServer):
    # Non-daemon, tracked threads: server_close() joins them, i.e. waits for in-flight requests.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128


def write_pidfile(path):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--pidfile", default="/srv/demo/app.pid")
    a = ap.parse_args()

    srv = Server((a.addr, a.port), Handler)
    stopping = threading.Event()

    def on_term(signum, frame):
        if stopping.is_set():
            return
        stopping.set()
        sys.stderr.write("signal %d: stopping (version %s)\n" % (signum, VERSION))
        # shutdown() blocks until serve_forever returns: never call it from that thread.
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    write_pidfile(a.pidfile)
    sys.stderr.write("demo %s listening on %s:%d pid %d\n" % (VERSION, a.addr, a.port, os.getpid()))
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()  # closes the listening socket, then joins in-flight request threads
        try:
            with open(a.pidfile) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(a.pidfile)
        except OSError:
            pass
        sys.stderr.write("demo %s stopped\n" % VERSION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
