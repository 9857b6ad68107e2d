#!/usr/bin/env python3
"""A fleet of up to 1,000 real hosts for the release1000 benchmark (bench/run.sh release1000).

  fleet1000.py up DIR N LB_PORT API_PORT NET[,NET...]
  fleet1000.py install DIR VERSION      every host runs VERSION (files written from the
                                        controller, services started from here), all UP in HAProxy
  fleet1000.py down DIR

Each host is one OpenSSH sshd on its own loopback address (NET.1..NET.250 of each NET in
turn, 250 a net), in its own mount namespace (`unshare --mount`) with a private /srv
(DIR/hosts/hI/srv), as tests/fleet/fleet.sh does for its hosts; fleet.sh stops at 254 hosts
and one net, and its HAProxy and python3 service are too heavy for 1,000 hosts on 2 cores.
The service is busybox `httpd` serving the release's www/ (`/health` and `/VERSION` hold the
version): a few hundred kB of memory and no start-up work. HAProxy has all N servers in one
backend `demo`. Standard library only.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import io
import time

BUSYBOX = shutil.which("busybox") or "/usr/bin/busybox"
PER_NET = 250

START = """#!/bin/sh
# start ADDR: busybox httpd on ADDR:8080 serving this release's www/ (health and version)
r=$(cd "$(dirname "$0")/.." && pwd -P) || exit 1
setsid %s httpd -f -p "$1:8080" -h "$r/www" </dev/null >/dev/null 2>&1 &
echo $! >"$r/../../app.pid"
""" % BUSYBOX

STOP = """#!/bin/sh
# stop: the httpd of app.pid, and wait until it is gone
r=$(cd "$(dirname "$0")/.." && pwd -P) || exit 1
f=$r/../../app.pid
[ -s "$f" ] || exit 0
read -r p <"$f"
kill "$p" 2>/dev/null || { rm -f "$f"; exit 0; }
i=0
while kill -0 "$p" 2>/dev/null; do
  i=$((i + 1)); [ $i -eq 100 ] && kill -KILL "$p" 2>/dev/null
  sleep 0.02
done
rm -f "$f"
"""


def addr_of(i):
    """Address of host i (1-based)."""
    return "%s.%d" % (NETS[(i - 1) // PER_NET], (i - 1) % PER_NET + 1)


def name_of(i):
    return "h%04d" % i


def artifact(path, version, payload_kb):
    """A tar.gz of the light service: bin/start, bin/stop, www/health, www/VERSION, VERSION,
    and payload.bin (PAYLOAD_KB of random bytes, so that staging does some work)."""
    files = {
        "bin/start": (START.encode(), 0o755),
        "bin/stop": (STOP.encode(), 0o755),
        "www/health": (version.encode() + b"\n", 0o644),
        "www/VERSION": (version.encode() + b"\n", 0o644),
        "VERSION": (version.encode() + b"\n", 0o644),
    }
    if payload_kb:
        files["payload.bin"] = (os.urandom(payload_kb * 1024), 0o644)
    with tarfile.open(path, "w:gz", compresslevel=6) as t:
        for d in ("bin", "www"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1700000000
            t.addfile(ti)
        for n, (data, mode) in sorted(files.items()):
            ti = tarfile.TarInfo(n)
            ti.size, ti.mode, ti.mtime = len(data), mode, 1700000000
            t.addfile(ti, io.BytesIO(data))


def sshd_config(hd, addr, d):
    return """# sshd of release1000 host %s (bench/lib/fleet1000.py)
ListenAddress %s:22
HostKey %s/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile %s/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 10
LogLevel ERROR
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
""" % (addr, addr, hd, d)


HOST_SH = r'''
set -e
h=$1
mount --bind "$h/srv" /srv
if [ -e /root/.bashrc ]; then mount --bind "$h/bashrc" /root/.bashrc; fi
if [ -e /root/.profile ]; then mount --bind "$h/bashrc" /root/.profile; fi
readlink /proc/self/ns/mnt >"$h/mntns"
echo $$ >"$h/sshd.pid"
exec /usr/sbin/sshd -D -e -f "$h/sshd_config"
'''


def accepts(addr, port, timeout=0.3):
    try:
        with socket.create_connection((addr, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH") if port == 22 else True
    except OSError:
        return False


def api(target, cmd, timeout=5.0):
    host, port = target.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(cmd.encode() + b"\n")
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    return out.decode(errors="replace")


def servers_up(target):
    """(servers, UP with a passed check) of backend demo."""
    out = api(target, "show servers state demo")
    lines = [ln.split() for ln in out.splitlines() if ln and not ln.startswith("#")]
    rows = [ln for ln in lines if len(ln) > 6 and ln[1] == "demo"]
    # columns: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ... srv_check_result(9)
    up = sum(1 for r in rows if r[5] == "2" and r[6] == "0")
    return len(rows), up


def read_env(d):
    env = {}
    with open(os.path.join(d, "fleet.env")) as f:
        for ln in f:
            k, _, v = ln.strip().partition("=")
            env[k] = v
    return env


def up(d, n, lb, apiport, nets):
    global NETS
    NETS = nets
    if n > PER_NET * len(nets):
        sys.exit("fleet1000: %d hosts need %d nets of %d" % (n, -(-n // PER_NET), PER_NET))
    d = os.path.realpath(d)
    os.makedirs(d, exist_ok=True)
    os.makedirs("/run/sshd", exist_ok=True)
    os.makedirs("/srv", exist_ok=True)
    for i in range(1, n + 1):
        if accepts(addr_of(i), 22, 0.05):
            sys.exit("fleet1000: %s:22 is in use" % addr_of(i))
    t0 = time.monotonic()
    key = os.path.join(d, "id_ed25519")
    for f in (key, key + ".pub"):
        if os.path.exists(f):
            os.unlink(f)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release1000", "-f", key], check=True)
    shutil.copy(key + ".pub", os.path.join(d, "authorized_keys"))
    kh = []
    procs = []
    for i in range(1, n + 1):
        hd = os.path.join(d, "hosts", "h%d" % i)
        shutil.rmtree(hd, ignore_errors=True)
        os.makedirs(os.path.join(hd, "srv"))
        open(os.path.join(hd, "bashrc"), "w").close()
        hk = os.path.join(hd, "ssh_host_ed25519_key")
        procs.append(subprocess.Popen(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", addr_of(i), "-f", hk]))
        if len(procs) >= 16:
            for p in procs:
                p.wait()
            procs = []
        with open(os.path.join(hd, "sshd_config"), "w") as f:
            f.write(sshd_config(hd, addr_of(i), d))
    for p in procs:
        p.wait()
    for i in range(1, n + 1):
        hd = os.path.join(d, "hosts", "h%d" % i)
        with open(os.path.join(hd, "ssh_host_ed25519_key.pub")) as f:
            kh.append("%s %s\n" % (addr_of(i), " ".join(f.read().split()[:2])))
    with open(os.path.join(d, "known_hosts"), "w") as f:
        f.writelines(kh)
    subprocess.run(["/usr/sbin/sshd", "-t", "-f", os.path.join(d, "hosts", "h1", "sshd_config")], check=True)
    print("fleet1000: %d keys in %.1fs" % (n, time.monotonic() - t0), file=sys.stderr)

    for i in range(1, n + 1):
        hd = os.path.join(d, "hosts", "h%d" % i)
        log = open(os.path.join(hd, "sshd.log"), "w")
        subprocess.Popen(["setsid", "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", HOST_SH,
                          "fleet-host", hd], stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True)
        log.close()
    pending = list(range(1, n + 1))
    end = time.monotonic() + 120
    while pending and time.monotonic() < end:
        pending = [i for i in pending if not accepts(addr_of(i), 22)]
        if pending:
            time.sleep(0.2)
    if pending:
        sys.exit("fleet1000: %d sshd did not come up (first: %s)" % (len(pending), addr_of(pending[0])))
    print("fleet1000: %d sshd up after %.1fs" % (n, time.monotonic() - t0), file=sys.stderr)

    with open(os.path.join(d, "ssh_config"), "w") as f:
        f.write("Host %s\n    User root\n    IdentityFile %s\n    IdentitiesOnly yes\n"
                "    UserKnownHostsFile %s/known_hosts\n    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n    BatchMode yes\n    ConnectTimeout 5\n    LogLevel ERROR\n"
                % (" ".join(n_ + ".*" for n_ in nets), key, d))
    with open(os.path.join(d, "inventory.yml"), "w") as f:
        f.write("all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: %s\n"
                "  children:\n    fleet:\n      hosts:\n" % key)
        for i in range(1, n + 1):
            f.write("        %s: { ansible_host: %s, zone: z%d }\n" % (name_of(i), addr_of(i), (i - 1) % 3 + 1))
    os.makedirs(os.path.join(d, "artifacts"), exist_ok=True)
    artifact(os.path.join(d, "artifacts", "svc-1.0.0.tar.gz"), "1.0.0", 0)
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write("""# HAProxy of the release1000 fleet (bench/lib/fleet1000.py)
global
    stats socket ipv4@127.0.0.1:%d level admin
    stats timeout 2m
    maxconn 8192

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout check 2s

frontend fe_demo
    bind 127.0.0.1:%d
    default_backend demo

backend demo
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 5s fastinter 250ms downinter 500ms fall 2 rise 1
    retry-on all-retryable-errors
    retries 3
    option redispatch
""" % (apiport, lb))
        for i in range(1, n + 1):
            f.write("    server %s %s:8080 check\n" % (name_of(i), addr_of(i)))
    with open(os.path.join(d, "fleet.env"), "w") as f:
        f.write("FLEET_HOSTS=%d\nFLEET_NETS=%s\nFLEET_LB=127.0.0.1:%d\nFLEET_API=127.0.0.1:%d\n"
                % (n, ",".join(nets), lb, apiport))
    print("fleet1000: up: %d hosts on %s, lb 127.0.0.1:%d, api 127.0.0.1:%d (%.1fs)"
          % (n, ",".join(nets), lb, apiport, time.monotonic() - t0), file=sys.stderr)


def install(d, version):
    """Every host runs VERSION: unpacked into releases/VERSION, `current` switched, the old
    httpd stopped and the new one started (from the controller: /srv of host I is
    DIR/hosts/hI/srv here); then HAProxy started (if it is not running) and every server UP."""
    global NETS
    d = os.path.realpath(d)
    env = read_env(d)
    NETS = env["FLEET_NETS"].split(",")
    n = int(env["FLEET_HOSTS"])
    art = os.path.join(d, "artifacts", "svc-%s.tar.gz" % version)
    if not os.path.exists(art):
        artifact(art, version, 0)
    t0 = time.monotonic()
    stops = []
    for i in range(1, n + 1):
        root = os.path.join(d, "hosts", "h%d" % i, "srv", "demo")
        cur = os.path.join(root, "current")
        if os.path.exists(os.path.join(cur, "bin", "stop")):
            stops.append(subprocess.Popen([os.path.join(cur, "bin", "stop")]))
        if len(stops) >= 32:
            [p.wait() for p in stops]
            stops = []
    [p.wait() for p in stops]
    for i in range(1, n + 1):
        root = os.path.join(d, "hosts", "h%d" % i, "srv", "demo")
        for v in os.listdir(os.path.join(root, "releases")) if os.path.isdir(os.path.join(root, "releases")) else []:
            shutil.rmtree(os.path.join(root, "releases", v))
        for f in (".tranche-stage", ".tranche-lock", ".tranche-previous"):
            p = os.path.join(root, f)
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.unlink(p)
        rel = os.path.join(root, "releases", version)
        os.makedirs(rel)
        with tarfile.open(art) as t:
            t.extractall(rel)
        tmp = os.path.join(root, "current.tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink("releases/" + version, tmp)
        os.replace(tmp, os.path.join(root, "current"))
        subprocess.run([os.path.join(rel, "bin", "start"), addr_of(i)], check=True)
    print("fleet1000: %s installed and started on %d hosts (%.1fs)" % (version, n, time.monotonic() - t0),
          file=sys.stderr)
    pidf = os.path.join(d, "haproxy.pid")
    if not (os.path.exists(pidf) and alive(int(open(pidf).read().split()[0]))):
        subprocess.run(["haproxy", "-c", "-q", "-f", os.path.join(d, "haproxy.cfg")], check=True)
        subprocess.run(["haproxy", "-D", "-p", pidf, "-f", os.path.join(d, "haproxy.cfg")], check=True,
                       stdin=subprocess.DEVNULL, stdout=open(os.path.join(d, "haproxy.log"), "a"),
                       stderr=subprocess.STDOUT, close_fds=True)
    target = env["FLEET_API"]
    end = time.monotonic() + 120
    last = (0, 0)
    while time.monotonic() < end:
        try:
            last = servers_up(target)
            if last[0] == n and last[1] == n:
                print("fleet1000: all %d servers UP in HAProxy (%.1fs)" % (n, time.monotonic() - t0), file=sys.stderr)
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("fleet1000: %d of %d servers UP after 120s" % (last[1], last[0]))


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def down(d):
    """Every process of the fleet: those in the hosts' mount namespaces (sshd, its sessions,
    what they started), the services by their pidfiles, HAProxy by its pidfile."""
    d = os.path.realpath(d)
    hosts = os.path.join(d, "hosts")
    if not os.path.isdir(hosts):
        return
    nss, victims = set(), set()
    me = os.readlink("/proc/self/ns/mnt")
    for h in os.listdir(hosts):
        hd = os.path.join(hosts, h)
        try:
            ns = open(os.path.join(hd, "mntns")).read().strip()
            if ns and ns != me:
                nss.add(ns)
        except OSError:
            pass
        for f in (os.path.join(hd, "sshd.pid"), os.path.join(hd, "srv", "demo", "app.pid")):
            try:
                pid = int(open(f).read().split()[0])
                with open("/proc/%d/cmdline" % pid, "rb") as c:
                    cl = c.read()
                if (hd.encode() + b"/sshd_config") in cl or b"httpd" in cl:
                    victims.add(pid)
            except (OSError, ValueError, IndexError):
                pass
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                if os.readlink("/proc/%s/ns/mnt" % e) in nss:
                    victims.add(int(e))
            except OSError:
                pass
    try:
        pid = int(open(os.path.join(d, "haproxy.pid")).read().split()[0])
        with open("/proc/%d/cmdline" % pid, "rb") as c:
            if os.path.join(d, "haproxy.cfg").encode() in c.read():
                victims.add(pid)
    except (OSError, ValueError, IndexError):
        pass
    victims.discard(os.getpid())
    for p in victims:
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass
    end = time.monotonic() + 5
    while time.monotonic() < end and any(alive(p) for p in victims):
        time.sleep(0.1)
    for p in victims:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
    print("fleet1000: stopped %d process(es) of %s" % (len(victims), d), file=sys.stderr)


NETS = []

if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) == 6 and a[0] == "up":
        up(a[1], int(a[2]), int(a[3]), int(a[4]), a[5].split(","))
    elif len(a) == 3 and a[0] == "install":
        install(a[1], a[2])
    elif len(a) == 2 and a[0] == "down":
        down(a[1])
    elif len(a) == 4 and a[0] == "artifact":
        artifact(a[1], a[2], int(a[3]))
    else:
        sys.exit(__doc__)
