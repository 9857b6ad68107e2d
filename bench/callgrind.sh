#!/usr/bin/env bash
# bench/callgrind.sh — tranche's own instruction counts (valgrind's callgrind) in the two runs
# whose controller CPU per host matters (issue 16): `plan --check` over 200 hosts (the noop
# comparison) and the 50-host release of the lifecycle comparison. Instruction counts do not
# depend on how busy the machine is, unlike CPU time and perf samples, so two builds can be
# compared on a shared machine.
#
#   bench/callgrind.sh [plan|release]...     (default: both; needs root; installs valgrind)
#
# TRANCHE_BIN=PATH uses that binary (it needs its symbols: not stripped); otherwise
# `cargo build --release`. Writes bench/callgrind.md (appends one section per run, with the
# binary's version) and keeps callgrind's files in $BENCH_WORK/callgrind. Uses its own nets
# (127.0.54 for 200 hosts, 127.0.59 for 50) and ports (18954/19954, 18959/19959).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$BENCH/.." && pwd -P)
W=${BENCH_WORK:-/tmp/tranche-bench}/callgrind
OUT=${CALLGRIND_MD:-$BENCH/callgrind.md}
TOP=${CALLGRIND_TOP:-25}
# connections set up at once: valgrind runs tranche about 50 times slower, one thread at a time
MC=${CALLGRIND_MAX_CONNECTING:-10}
log() { printf '[callgrind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
command -v valgrind >/dev/null || {
  log "apt-get install valgrind"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
}
if [ -n "${TRANCHE_BIN:-}" ]; then
  T=$(realpath "$TRANCHE_BIN")
  DESC="$("$T" --version) ($T, built $(date -u -r "$T" '+%Y-%m-%d %H:%M UTC'))"
else
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release -q)
  T=$ROOT/target/release/tranche
  DESC="$("$T" --version) ($(cd "$ROOT" && git describe --always --dirty))"
fi
which=("$@")
[ ${#which[@]} -eq 0 ] && which=(plan release)

mkdir -p "$W"
FLEETS=()
cleanup() {
  local d
  for d in "${FLEETS[@]}"; do bash "$ROOT/tests/fleet/fleet.sh" down --dir "$d" >/dev/null 2>&1 || true; rm -rf "$d"; done
}
trap cleanup EXIT
fleet() { # DIR HOSTS NET LB API
  FLEETS+=("$1")
  log "fleet: $2 hosts on $3"
  FLEET_TIMEOUT=60 bash "$ROOT/tests/fleet/fleet.sh" up --dir "$1" --hosts "$2" --net "$3" --lb-port "$4" --api-port "$5" \
    >"$W/up-$2.log" 2>&1 || { tail -n 20 "$W/up-$2.log" >&2; exit 1; }
}
playbook() { # FILE ARTIFACT REGISTRY_API|none
  local reg="registry: { kind: none }"
  [ "$3" = none ] || reg="registry:
  kind: haproxy
  address: 127.0.0.1:$3
  backend: demo
  server: \"{{ host.name }}\"
  drain: 5s"
  cat >"$1" <<YML
service: demo
version: "2.0.0"
hosts: fleet
artifact:
  path: $2
rollout:
  canary: 0
  batch: 10
  stage: { concurrency: 10 }
$reg
stop:
  command: /srv/demo/current/bin/stop
  timeout: 30s
start:
  command: "/srv/demo/current/bin/start {{ host.address }}"
health:
  http: "http://{{ host.address }}:8080/health"
  expect_body: "{{ version }}"
  interval: 200ms
  timeout: 30s
YML
}

# callgrind RUN_NAME HOSTS CMD...: one run under callgrind; appends its summary to $OUT
callgrind() {
  local name=$1 hosts=$2 f t0 t1
  shift 2
  f=$W/callgrind.$name.out
  rm -f "$f"
  t0=$(date +%s)
  (cd "$W" && CI=true valgrind --tool=callgrind --callgrind-out-file="$f" --dump-instr=no \
    "$@" >"$W/$name.log" 2>"$W/$name.err") || { tail -n 20 "$W/$name.err" >&2; log "$name failed under valgrind"; return 1; }
  t1=$(date +%s)
  local total
  # (no early exit from these pipelines: a SIGPIPE would end the script under pipefail)
  total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ && !t { gsub(",", "", $1); t = $1 } END { print t }')
  {
    echo
    echo "## $name: $hosts hosts — $DESC"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, ${t1}-${t0} s under valgrind."
    echo "Command: \`$(printf '%q ' "$@" | sed "s|$W|\$W|g")\`"
    echo
    echo "- instructions (Ir) in all: $(python3 -c "print(f'{int(\"$total\"):,}')" 2>/dev/null || echo "$total"), **$(awk -v t="$total" -v h="$hosts" 'BEGIN { printf "%.2f", t / h / 1e6 }') M a host**"
    echo
    echo "Inclusive (the function and what it calls), top $TOP:"
    echo
    echo '```'
    callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null | awk '/^-+$/ { n++ } n >= 3' | grep -v '^-' | grep -v '^$' | awk -v n="$((TOP + 1))" 'NR <= n' | cut -c1-220
    echo '```'
    echo
    echo "Exclusive (the function's own instructions), top $TOP:"
    echo
    echo '```'
    callgrind_annotate --threshold=100 "$f" 2>/dev/null | awk '/^-+$/ { n++ } n >= 3' | grep -v '^-' | grep -v '^$' | awk -v n="$((TOP + 1))" 'NR <= n' | cut -c1-220
    echo '```'
  } >>"$OUT"
  log "$name: $total instructions ($(awk -v t="$total" -v h="$hosts" 'BEGIN { printf "%.2f", t / h / 1e6 }') M a host); $OUT"
}

[ -f "$OUT" ] || printf '# tranche under callgrind (bench/callgrind.sh)\n\nInstruction counts of the controller only (valgrind runs tranche; the hosts are not counted), one section a run, newest last.\n' >"$OUT"
for w in "${which[@]}"; do
  case $w in
    plan)
      fleet "$W/f200" 200 127.0.54 18954 19954
      playbook "$W/noop.yml" "$W/f200/artifacts/demo-2.0.0.tar.gz" none
      CI=true "$T" plan -i "$W/f200/inventory.yml" "$W/noop.yml" --check --known-hosts "$W/f200/known_hosts" --max-connecting "$MC" --connect-timeout 120s >/dev/null 2>&1 || true
      callgrind plan-check 200 "$T" plan -i "$W/f200/inventory.yml" "$W/noop.yml" --check --known-hosts "$W/f200/known_hosts" --max-connecting "$MC" --connect-timeout 120s
      ;;
    release)
      fleet "$W/f50" 50 127.0.59 18959 19959
      mkdir -p "$W/art/st"
      tar -xzf "$W/f50/artifacts/demo-2.0.0.tar.gz" -C "$W/art/st"
      head -c $((10 * 1024 * 1024)) /dev/urandom >"$W/art/st/payload.bin"
      tar --sort=name --owner=0 --group=0 --numeric-owner -C "$W/art/st" -cf - bin VERSION payload.bin | gzip -6 >"$W/art/demo-2.0.0-10mb.tar.gz"
      playbook "$W/release.yml" "$W/art/demo-2.0.0-10mb.tar.gz" 19959
      bash "$ROOT/tests/fleet/fleet.sh" install-service --dir "$W/f50" 1.0.0 >"$W/reset.log" 2>&1
      rm -rf "$W/state"
      callgrind release-50 50 "$T" release -i "$W/f50/inventory.yml" "$W/release.yml" --known-hosts "$W/f50/known_hosts" \
        --no-progress --max-connecting "$MC" --connect-timeout 120s --state-dir "$W/state" --events "$W/events.jsonl"
      rm -rf "$W/art"
      ;;
    *) log "unknown run $w (plan|release)"; exit 2 ;;
  esac
done
