#!/usr/bin/env python3
"""Summarise a system-wide `perf script -F comm,tid,ip,sym,dso` (with call chains) of one
tranche release on the local fleet (bench/profile.sh) as Markdown on stdout.

  profile.py PERF_SCRIPT WALL_MS MACHINE_CPU_MS CORES HZ VERSION

HZ is perf record's -F: HZ samples a second of CPU.
"""
import collections
import sys

GROUPS = [
    ("sshd: the hosts' SSH servers (connections, sessions, SFTP)", {"sshd", "sftp-server"}),
    ("the sample service (python3: its start-up and HAProxy's checks)", {"python3"}),
    ("unpacking the artifact (tar, gzip)", {"tar", "gzip"}),
    ("checking its sha256 (openssl)", {"openssl", "sha256sum"}),
    ("shells of the commands tranche runs (bash, the login shell)", {"bash", "sh", "dash"}),
    ("the service's start and stop scripts (and what they run)", {"start", "stop", "sleep", "grep", "cat", "setsid", "nohup", "readlink", "date"}),
    ("small programs in tranche's scripts (mkdir, mv, rm, ln, ls, df, nice)", {"mkdir", "mv", "rm", "ln", "ls", "df", "nice"}),
    ("tranche itself (the controller)", {"tranche", "tokio-rt-worker"}),
    ("HAProxy", {"haproxy"}),
    ("idle", {"swapper"}),
]


def samples(path):
    """(comm, [(sym, dso)] innermost first) per sample."""
    comm, stack = None, []
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            if not line[0].isspace():
                if comm is not None:
                    yield comm, stack
                comm, stack = line.split()[0], []
            else:
                parts = line.split(None, 2)
                if len(parts) == 3:
                    stack.append((parts[1].split("+")[0], parts[2].strip().strip("()")))
    if comm is not None:
        yield comm, stack


def sshd_activity(stack):
    syms = [s for s, _ in stack]
    leaf_sym, leaf_dso = stack[0] if stack else ("", "")
    if any(s in ("exc_page_fault", "asm_exc_page_fault") for s in syms):
        return "page faults (first touch of buffers it grows)"
    if "memmove" in leaf_sym or "memcpy" in leaf_sym or "memset" in leaf_sym:
        return "copying buffers (memmove, memset)"
    if any(s.startswith(("__x64_sys_execve", "__do_sys_clone", "__x64_sys_exit_group", "__x64_sys_munmap")) for s in syms) \
            or "ld-linux" in leaf_dso:
        return "starting and ending processes (fork, exec, dynamic linking, exit, munmap)"
    if "libcrypto" in leaf_dso:
        return "crypto (key exchange, ciphers, MACs)"
    if "kernel" in leaf_dso:
        return "other kernel work (sockets, pipes, files)"
    return "other"


def main():
    global HZ
    path, wall_ms, machine_ms, cores, HZ, version = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                                     int(sys.argv[5]), sys.argv[6])
    by_comm = collections.Counter()
    sshd = collections.Counter()
    tranche = collections.Counter()
    total = 0
    for comm, stack in samples(path):
        total += 1
        by_comm[comm] += 1
        if comm in ("sshd", "sftp-server"):
            sshd[sshd_activity(stack)] += 1
        elif comm in ("tranche", "tokio-rt-worker") and stack:
            sym, dso = stack[0]
            tranche[f"{sym} ({dso.rsplit('/', 1)[-1]})"] += 1
    busy = total - by_comm["swapper"]
    s = lambda n: f"{n / HZ:.2f} s"
    pct = lambda n, d: f"{100 * n / d:.0f}%" if d else "n/a"
    out = []
    out.append("# Where the CPU goes in the 50-host release (bench/profile.sh)\n")
    out.append(f"One `tranche release` of the lifecycle benchmark (50 hosts, 10 MB artifact, HAProxy, batches of "
               f"10), under `perf record -a -F {HZ} -g` on this {cores}-core machine; {version}.\n")
    out.append(f"- wall time (with perf attached): {wall_ms / 1000:.2f} s; the cores could give {wall_ms * cores / 1000:.2f} s of CPU")
    out.append(f"- CPU used by the whole machine (/proc/stat): {machine_ms / 1000:.2f} s, "
               f"{pct(machine_ms, wall_ms * cores)} of what the cores could give")
    out.append(f"- samples: {total} ({s(total)}), of them busy {busy} ({s(busy)}). perf itself costs the run: "
               f"the samples account for {pct(busy * 1000 / HZ, machine_ms)} of the CPU the machine used, and the "
               f"same release without perf takes about 10 s and 18-20 s of CPU (`bench/results.md`). The shares "
               f"below are those of the samples.\n")
    out.append("| who | CPU | share of the busy CPU |")
    out.append("|---|---|---|")
    grouped = collections.Counter()
    named = set()
    for name, comms in GROUPS:
        grouped[name] = sum(by_comm[c] for c in comms)
        named |= comms
    grouped["everything else (kernel threads, the fleet's tools, ...)"] = sum(n for c, n in by_comm.items() if c not in named)
    for name, n in grouped.most_common():
        if name == "idle":
            continue
        out.append(f"| {name} | {s(n)} | {pct(n, busy)} |")
    out.append("")
    sshd_total = sum(sshd.values())
    out.append(f"sshd ({s(sshd_total)}), by what it does:\n")
    out.append("| activity | CPU | share of sshd |")
    out.append("|---|---|---|")
    for what, n in sshd.most_common():
        out.append(f"| {what} | {s(n)} | {pct(n, sshd_total)} |")
    out.append("")
    tr_total = sum(tranche.values())
    out.append(f"tranche ({s(tr_total)}), the functions the samples landed in (top 12):\n")
    out.append("| function | CPU | share of tranche |")
    out.append("|---|---|---|")
    for what, n in tranche.most_common(12):
        out.append(f"| `{what}` | {s(n)} | {pct(n, tr_total)} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
