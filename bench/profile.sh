#!/usr/bin/env bash
# bench/profile.sh — where the CPU goes in the lifecycle benchmark's release (issue 6): the same
# release as `bench/run.sh lifecycle` (50 hosts, 10 MB artifact, HAProxy, batches of 10), run
# once under a system-wide `perf record` (every process: the fleet's hosts share this machine's
# cores), summed by process and, for sshd and tranche, by what they do.
#
#   bench/profile.sh            (needs root; installs linux-perf, openssh-server, haproxy, curl)
#
# Writes bench/profile.md; the perf data stays in $BENCH_WORK/profile (default
# /tmp/tranche-bench/profile). Uses its own net (127.0.54) and ports (18954/19954).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$BENCH/.." && pwd -P)
W=${BENCH_WORK:-/tmp/tranche-bench}/profile
N=${PROFILE_HOSTS:-50}
NET=127.0.54 LB=18954 API=19954
HZ=${PROFILE_HZ:-299}   # samples a second per core (perf -F): more costs the run more
D=$W/fleet
log() { printf '[profile %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
if ! perf version >/dev/null 2>&1; then
  log "apt-get install linux-perf"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null; }
fi
bash "$ROOT/scripts/setup.sh"
log "cargo build --release"
(cd "$ROOT" && cargo build --release -q)
T=$ROOT/target/release/tranche

mkdir -p "$W"
cleanup() { bash "$ROOT/tests/fleet/fleet.sh" down --dir "$D" >/dev/null 2>&1 || true; rm -rf "$D" "$W/art"; }
trap cleanup EXIT
log "fleet: $N hosts on $NET"
FLEET_TIMEOUT=60 bash "$ROOT/tests/fleet/fleet.sh" up --dir "$D" --hosts "$N" --net $NET --lb-port $LB --api-port $API >"$W/up.log" 2>&1 \
  || { tail -n 20 "$W/up.log" >&2; exit 1; }

# The benchmark's artifact and playbook (bench/run.sh: make_artifact, write_playbook).
mkdir -p "$W/art/st"
art=$W/art/demo-2.0.0-10mb.tar.gz
tar -xzf "$D/artifacts/demo-2.0.0.tar.gz" -C "$W/art/st"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$W/art/st/payload.bin"
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$W/art/st" -cf - bin VERSION payload.bin | gzip -6 >"$art"
cat >"$W/release.yml" <<YML
service: demo
version: "2.0.0"
hosts: fleet
artifact:
  path: $art
rollout:
  canary: 0
  batch: 10
  stage: { concurrency: 10 }
registry:
  kind: haproxy
  address: 127.0.0.1:$API
  backend: demo
  server: "{{ host.name }}"
  drain: 5s
stop:
  command: /srv/demo/current/bin/stop
  timeout: 30s
start:
  command: "/srv/demo/current/bin/start {{ host.address }}"
health:
  http: "http://{{ host.address }}:8080/health"
  expect_body: "{{ version }}"
  interval: 200ms
  timeout: 10s
YML

release() { # PERF-PREFIX...
  bash "$ROOT/tests/fleet/fleet.sh" install-service --dir "$D" 1.0.0 >"$W/reset.log" 2>&1
  rm -rf "$D"/hosts/h*/srv/demo/releases/2.0.0 "$D"/hosts/h*/srv/demo/.tranche-stage "$W/state"
  sync
  (cd "$W" && CI=true "$@" "$T" release -i "$D/inventory.yml" "$W/release.yml" --known-hosts "$D/known_hosts" \
    --no-progress --max-connecting 50 --state-dir "$W/state" --events "$W/events.jsonl" >"$W/release.log" 2>&1)
}
log "warm-up release (not profiled)"
release
log "profiled release"
busy() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%d", ($2 + $3 + $4 + $7 + $8 + $9) * 1000 / hz }' /proc/stat; }
c0=$(busy); t0=$(date +%s%N)
release perf record -q -a -F "$HZ" -g -o "$W/perf.data" --
t1=$(date +%s%N); c1=$(busy)
tail -n 2 "$W/release.log" >&2
perf script -i "$W/perf.data" -F comm,tid,ip,sym,dso 2>/dev/null >"$W/perf.script"
/usr/bin/python3 "$BENCH/lib/profile.py" "$W/perf.script" "$(((t1 - t0) / 1000000))" "$((c1 - c0))" "$(nproc)" "$HZ" \
  "$("$T" --version) ($(cd "$ROOT" && git describe --always --dirty))" >"$BENCH/profile.md"
cat "$BENCH/profile.md"
log "wrote $BENCH/profile.md (perf data: $W/perf.data)"
