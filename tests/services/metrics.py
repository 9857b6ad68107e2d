#!/usr/bin/env python3
"""metrics.py PORT ERRFILE: serve /metrics (Prometheus text format) on 127.0.0.1:PORT.
Every scrape adds 1 to demo_requests_total; while ERRFILE exists it also adds N (the number in
the file, 1 if empty) to demo_errors_total."""
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, errfile = int(sys.argv[1]), sys.argv[2]
counts = {"requests": 0, "errors": 0}


class Metrics(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/metrics":
            return self.send_error(404)
        counts["requests"] += 1
        if os.path.exists(errfile):
            counts["errors"] += int(open(errfile).read().strip() or 1)
        body = "".join(
            f"# HELP demo_{k}_total Demo {k}.\n# TYPE demo_{k}_total counter\ndemo_{k}_total {v}\n"
            for k, v in counts.items()
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Metrics).serve_forever()
