#!/usr/bin/python3
"""Controller-side helper of tests/fleet/fleet.sh (standard library only).

  port-free ADDR:PORT...                     exit 1 (and list them) if something accepts there
  wait-tcp DEADLINE SPEC...                  SPEC = ADDR:PORT[:PIDFILE[:LOGFILE]]; poll until all
                                             accept; fail early if the pid in PIDFILE dies
  api ADDR:PORT COMMAND...                   one HAProxy runtime-API command, print the answer
  wait-api ADDR:PORT DEADLINE                poll until `show info` answers
  wait-settled ADDR:PORT BACKEND DEADLINE    poll until every server of BACKEND had a health check
  wait-up ADDR:PORT BACKEND DEADLINE         poll until every server of BACKEND is UP (op state 2)
                                             and its last health check passed
  kill-fleet DIR                             stop everything of the fleet in DIR (see below)
  status DIR                                 one line per host
"""
import os
import re
import signal
import socket
import sys
import time


def hostport(s):
    a, _, p = s.rpartition(":")
    return a, int(p)


def accepts(addr, port, timeout=0.5, ssh=False):
    """True if something accepts on addr:port; with ssh=True it must also send an SSH banner
    (we answer with ours before closing, which keeps sshd's log quieter)."""
    try:
        with socket.create_connection((addr, port), timeout=timeout) as s:
            if not ssh:
                return True
            s.settimeout(2.0)
            banner = s.recv(256)
            if not banner.startswith(b"SSH-"):
                return False
            s.sendall(b"SSH-2.0-fleet-probe\r\n")
            return True
    except OSError:
        return False


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def alive(pid):
    """True if pid exists and is not a zombie (pid 1 here may not reap orphans quickly)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (OSError, ValueError):
        return False
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


def pid_from(path):
    s = read(path)
    return int(s) if s.isdigit() else None


def mntns(pid):
    try:
        return os.readlink("/proc/%d/ns/mnt" % pid)
    except OSError:
        return None


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def srv_root(pid):
    """The 'root' field of the mount on /srv in pid's mount namespace (None if no such mount)."""
    root = None
    try:
        with open("/proc/%d/mountinfo" % pid) as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4] == "/srv":
                    root = fields[3]  # the last mount on /srv is the visible one
    except OSError:
        return None
    return root


# ---------------------------------------------------------------- HAProxy runtime API
def api(target, command, timeout=2.0):
    addr, port = hostport(target)
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode(errors="replace")


def servers_state(target, backend):
    """{server_name: (op_state, admin_state, check_result)} from `show servers state`."""
    out = api(target, "show servers state %s" % backend)
    res = {}
    for line in out.splitlines():
        if not line or line.startswith("#") or line[0].isalpha():
            continue
        f = line.split()
        if len(f) > 12 and f[1] == backend:
            res[f[3]] = (int(f[5]), int(f[6]), int(f[11]))
    return res


def describe(op, admin):
    s = {0: "DOWN", 1: "STARTING", 2: "UP", 3: "STOPPING"}.get(op, "op=%d" % op)
    if admin & 0x67:
        s += "/MAINT"
    elif admin & 0x18:
        s += "/DRAIN"
    return s


# ---------------------------------------------------------------- commands
def cmd_port_free(specs):
    busy = [s for s in specs if accepts(*hostport(s), timeout=0.3)]
    for s in busy:
        print("fleet: %s already accepts connections (another fleet or a system sshd?)" % s, file=sys.stderr)
    return 1 if busy else 0


def cmd_wait_tcp(deadline, specs):
    end = time.monotonic() + float(deadline)
    pending = list(specs)
    while True:
        still = []
        for spec in pending:
            parts = spec.split(":")
            addr, port = parts[0], int(parts[1])
            pidfile = parts[2] if len(parts) > 2 else None
            logfile = parts[3] if len(parts) > 3 else None
            if accepts(addr, port, timeout=0.3, ssh=(port == 22)):
                continue
            if pidfile:
                pid = pid_from(pidfile)
                # the pidfile is written just before exec; give it a moment to appear
                if pid is not None and not alive(pid):
                    print("fleet: process for %s:%d (pid %d) died" % (addr, port, pid), file=sys.stderr)
                    if logfile:
                        print("---- %s:\n%s" % (logfile, "\n".join(read(logfile).splitlines()[-15:])), file=sys.stderr)
                    return 1
            still.append(spec)
        if not still:
            return 0
        if time.monotonic() > end:
            for spec in still:
                parts = spec.split(":")
                print("fleet: nothing accepts on %s:%s after %ss" % (parts[0], parts[1], deadline), file=sys.stderr)
                if len(parts) > 3:
                    print("---- %s:\n%s" % (parts[3], "\n".join(read(parts[3]).splitlines()[-15:])), file=sys.stderr)
            return 1
        pending = still
        time.sleep(0.05)


def cmd_api(target, words):
    sys.stdout.write(api(target, " ".join(words)))
    return 0


def cmd_wait_api(target, deadline):
    end = time.monotonic() + float(deadline)
    last = ""
    while time.monotonic() < end:
        try:
            out = api(target, "show info", timeout=1.0)
            if "Name:" in out or "Version:" in out:
                return 0
            last = out.strip()
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    print("fleet: HAProxy API %s does not answer `show info` after %ss (%s)" % (target, deadline, last), file=sys.stderr)
    return 1


def cmd_wait_up(target, backend, deadline):
    end = time.monotonic() + float(deadline)
    st = {}
    err = ""
    while time.monotonic() < end:
        try:
            st = servers_state(target, backend)
            err = ""
            # op state 2 = UP; check_result 3 = passed, 4 = conditionally passed
            if st and all(op == 2 and chk in (3, 4) for op, _, chk in st.values()):
                return 0
        except OSError as e:
            err = str(e)
        time.sleep(0.1)
    print("fleet: not all servers of backend %s are UP after %ss: %s%s" % (
        backend, deadline,
        ", ".join("%s=%s" % (n, describe(op, adm)) for n, (op, adm, _) in sorted(st.items())),
        err), file=sys.stderr)
    return 1


def cmd_wait_settled(target, backend, deadline):
    """Until every server of BACKEND has had a health check: right after start HAProxy reports
    each server UP (op state 2) with check result 0 (unknown) until its first check ran."""
    end = time.monotonic() + float(deadline)
    st = {}
    while time.monotonic() < end:
        try:
            st = servers_state(target, backend)
            if st and all(chk != 0 and (op == 0 or chk in (3, 4)) for op, _, chk in st.values()):
                return 0
        except OSError:
            pass
        time.sleep(0.05)
    print("fleet: HAProxy health checks of %s not settled after %ss: %s" % (
        backend, deadline, ", ".join("%s=%s/chk%d" % (n, describe(op, adm), chk)
                                     for n, (op, adm, chk) in sorted(st.items()))), file=sys.stderr)
    return 1


def hosts_of(d):
    hd = os.path.join(d, "hosts")
    try:
        names = [n for n in os.listdir(hd) if re.fullmatch(r"h\d+", n)]
    except OSError:
        return []
    return [(int(n[1:]), os.path.join(hd, n)) for n in sorted(names, key=lambda n: int(n[1:]))]


def host_pids(hdir, ns):
    """Pids whose mount namespace is ns and whose /srv is this host's srv dir."""
    want = os.path.realpath(os.path.join(hdir, "srv"))
    me = mntns(os.getpid())
    out = []
    if not ns or ns == me:
        return out
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        pid = int(e)
        if pid == os.getpid() or mntns(pid) != ns or not alive(pid):
            continue
        root = srv_root(pid)
        if root and want.endswith(root) and root.endswith("/srv"):
            out.append(pid)
    return out


def terminate(pids, grace=5.0):
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass
    end = time.monotonic() + grace
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    end = time.monotonic() + 2
    while time.monotonic() < end and any(alive(p) for p in left):
        time.sleep(0.05)
    return left


def cmd_kill_fleet(d):
    d = os.path.realpath(d)
    me = mntns(os.getpid())
    victims = set()
    for i, hdir in hosts_of(d):
        ns = read(os.path.join(hdir, "mntns"))
        victims.update(host_pids(hdir, ns))
        # the recorded sshd (also in ns, unless it never got that far)
        pid = pid_from(os.path.join(hdir, "sshd.pid"))
        # (sshd names its config on its command line, dropbear its host key)
        if pid and alive(pid) and any(os.path.join(hdir, f) in cmdline(pid)
                                      for f in ("sshd_config", "dropbear_ed25519_key")):
            victims.add(pid)
        # the service by its pidfile (covers a missing mntns file)
        pid = pid_from(os.path.join(hdir, "srv", "demo", "app.pid"))
        if pid and alive(pid) and "server.py" in cmdline(pid) and mntns(pid) not in (None, me):
            root = srv_root(pid)
            if root and os.path.realpath(os.path.join(hdir, "srv")).endswith(root):
                victims.add(pid)
    pid = pid_from(os.path.join(d, "haproxy.pid"))
    if pid and alive(pid) and os.path.join(d, "haproxy.cfg") in cmdline(pid):
        victims.add(pid)
    victims.discard(os.getpid())
    left = terminate(sorted(victims))
    for p in left:
        print("fleet: pid %d survived SIGKILL" % p, file=sys.stderr)
    print("fleet: stopped %d process(es) of %s" % (len(victims), d), file=sys.stderr)
    return 0


def cmd_status(d):
    d = os.path.realpath(d)
    env = {}
    for line in read(os.path.join(d, "fleet.env")).splitlines():
        k, _, v = line.partition("=")
        env[k.strip()] = v.strip().strip("'\"")
    st, err = {}, ""
    if env.get("FLEET_API"):
        try:
            st = servers_state(env["FLEET_API"], "demo")
        except OSError as e:
            err = "haproxy API: %s" % e
    hpid = pid_from(os.path.join(d, "haproxy.pid"))
    print("fleet %s  lb %s  api %s  haproxy %s" % (
        d, env.get("FLEET_LB", "?"), env.get("FLEET_API", "?"),
        "up (pid %d)" % hpid if hpid and alive(hpid) else "down"))
    fmt = "%-5s %-14s %-9s %-16s %-16s %-20s %s"
    print(fmt % ("host", "address", "kind", "sshd", "service", "current", "haproxy"))
    for i, hdir in hosts_of(d):
        name = read(os.path.join(hdir, "name"), "h%02d" % i)
        spid = pid_from(os.path.join(hdir, "sshd.pid"))
        apid = pid_from(os.path.join(hdir, "srv", "demo", "app.pid"))
        try:
            cur = os.readlink(os.path.join(hdir, "srv", "demo", "current"))
        except OSError:
            cur = "-"
        hs = st.get(name)
        print(fmt % (
            name, read(os.path.join(hdir, "address"), "?"), read(os.path.join(hdir, "kind"), "openssh"),
            "up (pid %d)" % spid if spid and alive(spid) else "down",
            "up (pid %d)" % apid if apid and alive(apid) else "down",
            cur,
            describe(hs[0], hs[1]) if hs else ("?" if err else "-")))
    if err:
        print(err)
    return 0


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    c, a = argv[0], argv[1:]
    if c == "port-free":
        return cmd_port_free(a)
    if c == "wait-tcp":
        return cmd_wait_tcp(a[0], a[1:])
    if c == "api":
        return cmd_api(a[0], a[1:])
    if c == "wait-api":
        return cmd_wait_api(a[0], a[1])
    if c == "wait-up":
        return cmd_wait_up(a[0], a[1], a[2])
    if c == "wait-settled":
        return cmd_wait_settled(a[0], a[1], a[2])
    if c == "kill-fleet":
        return cmd_kill_fleet(a[0])
    if c == "status":
        return cmd_status(a[0])
    print("fleet_helper: unknown command %s" % c, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # e.g. `status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
