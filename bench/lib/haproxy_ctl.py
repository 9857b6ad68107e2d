#!/usr/bin/env python3
"""HAProxy runtime API calls for the Ansible side of the lifecycle benchmark.

The same calls, in the same order and with the same waits, as tranche's `registry: haproxy`
(src/registry.rs):

  haproxy_ctl.py HOST:PORT drain BACKEND SERVER [DRAIN_S]
      set server B/S state drain; poll `show stat` every 100 ms until scur is 0 or DRAIN_S
      (default 5) passed; set server B/S state maint
  haproxy_ctl.py HOST:PORT ready BACKEND SERVER [TIMEOUT_S]
      set server B/S state ready; poll `show servers state B` every 100 ms until the server is
      running (srv_op_state 2) with a passed health check (srv_check_result 3); fail after
      TIMEOUT_S (default 60)

Standard library only.
"""
import socket
import sys
import time


def api(addr, cmd):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall((cmd + "\n").encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode()


def expect_empty(out, what):
    if out.strip():
        sys.exit(f"{what}: HAProxy says: {out.strip()}")


def sessions(addr, backend, server):
    lines = api(addr, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    scur = header.index("scur")
    for line in lines[1:]:
        cols = line.split(",")
        if len(cols) > 1 and cols[0] == backend and cols[1] == server:
            return int(cols[scur] or 0)
    sys.exit(f"HAProxy has no server {backend}/{server}")


def is_up(addr, backend, server):
    lines = [l for l in api(addr, f"show servers state {backend}").splitlines() if l.strip()]
    header = lines[1].lstrip("# ").split()
    i = {name: header.index(name) for name in ("srv_name", "srv_op_state", "srv_check_result")}
    for line in lines[2:]:
        cols = line.split()
        if cols[i["srv_name"]] == server:
            return cols[i["srv_op_state"]] == "2" and cols[i["srv_check_result"]] == "3"
    sys.exit(f"HAProxy has no server {backend}/{server}")


def main():
    addr, action, backend, server = sys.argv[1:5]
    limit = float(sys.argv[5]) if len(sys.argv) > 5 else (5.0 if action == "drain" else 60.0)
    deadline = time.monotonic() + limit
    if action == "drain":
        expect_empty(api(addr, f"set server {backend}/{server} state drain"), "drain")
        n = sessions(addr, backend, server)
        while n > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            n = sessions(addr, backend, server)
        expect_empty(api(addr, f"set server {backend}/{server} state maint"), "maint")
        print("drained, in maintenance" if n == 0 else f"in maintenance with {n} sessions left")
    elif action == "ready":
        expect_empty(api(addr, f"set server {backend}/{server} state ready"), "ready")
        while not is_up(addr, backend, server):
            if time.monotonic() > deadline:
                sys.exit(f"HAProxy did not report {backend}/{server} UP within {limit:g}s")
            time.sleep(0.1)
        print("UP in HAProxy")
    else:
        sys.exit(f"unknown action {action}")


if __name__ == "__main__":
    main()
