#!/usr/bin/env bash
# bench/run.sh — tranche's benchmark (issue 6): four comparisons on local fleets of real sshd
# hosts (tests/fleet/fleet.sh), every tool measured in the same run on the same fleet.
#
#   bench/run.sh [lifecycle|noop|stage|scale|all]...      (default: all; needs root)
#
#   lifecycle  full release of the sample service to 50 hosts, batches of 10, a 10 MB artifact,
#              HAProxy drain/register: tranche vs an equivalent Ansible playbook, and tranche vs
#              the "unavoidable waits" (per batch the slowest stop+start+health, + 1 handshake)
#   noop       `true` on 200 hosts with strict host-key checking: xargs -P 50 ssh, pyinfra,
#              bssh 2.2.3, tranche plan --check; wall time and controller CPU per host
#   stage      200 MB to 10 hosts at once: tranche's stage phase vs scp in parallel (MB/s)
#   scale      tranche plan --check over 1,000 inventory aliases on 5 sshd: wall, peak RSS,
#              peak open fds, "Too many open files" / connection resets
#   release1000  a whole release of 1,000 real sshd hosts (busybox httpd service, HAProxy with
#              1,000 servers, a request loop), batches of 10%, stage limit 50: wall, controller
#              CPU per host without handshakes, RSS, fds, failed requests, stages, events/s
#
# Environment:
#   BENCH_REPEAT=3            runs of each measurement (medians are reported)
#   BENCH_WORK=/tmp/tranche-bench   fleets, logs, artifacts (big files are removed at the end)
#   BENCH_MAX_CONNECTING=50   tranche --max-connecting, when tranche has that option
#   BENCH_SCALE_NOFILE=1024   soft RLIMIT_NOFILE for the scale run (hard limit unchanged)
#   TRANCHE_BIN=PATH          use this tranche binary instead of `cargo build --release`
#   BENCH_SKIP_INSTALL=1      do not install anything (use what is there)
#
# Writes bench/results.md (medians, ratios, machine, versions, exact commands) and
# bench/results-raw.tsv (every run); prints a compact table. See bench/README.md.
set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$BENCH/.." && pwd -P)
FLEET_SH=$ROOT/tests/fleet/fleet.sh
LIB=$BENCH/lib
PY=/usr/bin/python3
REPEAT=${BENCH_REPEAT:-3}
WORK=${BENCH_WORK:-/tmp/tranche-bench}
MAXCONN=${BENCH_MAX_CONNECTING:-50}
SCALE_NOFILE=${BENCH_SCALE_NOFILE:-1024}
# sizes (smaller values are for a quick smoke test of the script itself)
LIFE_HOSTS=${BENCH_LIFECYCLE_HOSTS:-50}
NOOP_HOSTS=${BENCH_NOOP_HOSTS:-200}
STAGE_MB=${BENCH_STAGE_MB:-200}
SCALE_HOSTS=${BENCH_SCALE_HOSTS:-1000}
VENV=$BENCH/.venv
TOOLS=$BENCH/.tools
BSSH_VERSION=2.2.3
RAW=$WORK/raw.tsv
META=$WORK/meta.tsv
LOGS=$WORK/logs

# Loopback nets and ports of the benchmark's fleets (the tests use 127.0.20-42, 18100-19130).
NOOP_NET=127.0.50 NOOP_LB=18950 NOOP_API=19950
LIFE_NET=127.0.51 LIFE_LB=18951 LIFE_API=19951
STAGE_NET=127.0.52 STAGE_LB=18952 STAGE_API=19952
SCALE_NET=127.0.53 SCALE_LB=18953 SCALE_API=19953
# release1000: 250 hosts a net (bench/profile.sh uses 127.0.54)
R1K_NETS=127.0.55,127.0.56,127.0.57,127.0.58 R1K_LB=18955 R1K_API=19955
R1K_HOSTS=${BENCH_RELEASE1000_HOSTS:-1000}
R1K_STAGE=${BENCH_RELEASE1000_STAGE:-50}
R1K_PAYLOAD_KB=${BENCH_RELEASE1000_PAYLOAD_KB:-256}
R1K_RATE=${BENCH_RELEASE1000_RATE:-100}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ records
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RAW"; }   # comparison tool rep metric value
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }                           # key value
note() { meta "note.$1" "$2"; log "note ($1): $2"; }

# timed PREFIX CMD... — run CMD under /usr/bin/time (stdout/stderr to PREFIX.out/.err) and set
# T_RC, T_WALL_MS (date +%s%N around it), T_USER_MS, T_SYS_MS (rusage of the whole waited-for
# process tree) and T_RSS_KB (peak RSS of the largest process). With WATCH=NAME set, also
# samples the open fds / RSS of descendants named NAME every 50 ms into PREFIX.watch. With
# STAGEWATCH="FLEET N SIZE ROOT", records when each host's upload is complete (PREFIX.uploads).
# T_MACHINE_MS: CPU time of the whole machine (every process: the fleet's hosts share its cores)
# while CMD ran, from /proc/stat.
machine_cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%d", ($2 + $3 + $4 + $7 + $8 + $9) * 1000 / hz }' /proc/stat; }
timed() {
  local pfx=$1 t0 t1 line u s m pid wpid="" c0
  shift
  c0=$(machine_cpu_ms)
  t0=$(date +%s%N)
  /usr/bin/time -f 'TIME %e %U %S %M' -o "$pfx.time" "$@" >"$pfx.out" 2>"$pfx.err" </dev/null &
  pid=$!
  if [ -n "${WATCH:-}" ]; then
    "$PY" "$LIB/procwatch.py" "$pid" "$WATCH" "$pfx.watch" 0.05 &
    wpid=$!
  fi
  local swpid=""
  if [ -n "${STAGEWATCH:-}" ]; then
    # shellcheck disable=SC2086
    "$PY" "$LIB/stagewatch.py" "$pid" $STAGEWATCH "$pfx.uploads" &
    swpid=$!
  fi
  wait "$pid"
  T_RC=$?
  t1=$(date +%s%N)
  T_MACHINE_MS=$(($(machine_cpu_ms) - c0))
  [ -n "$wpid" ] && wait "$wpid"
  [ -n "$swpid" ] && wait "$swpid"
  T_WALL_MS=$(((t1 - t0) / 1000000))
  line=$(grep '^TIME ' "$pfx.time" 2>/dev/null | tail -n 1)
  read -r _ _ u s m <<<"${line:-TIME 0 0 0 0}"
  T_USER_MS=$(awk -v x="$u" 'BEGIN { printf "%d", x * 1000 }')
  T_SYS_MS=$(awk -v x="$s" 'BEGIN { printf "%d", x * 1000 }')
  T_RSS_KB=$m
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# the command line as a copy-pastable string
cmdline() { local out="" a; for a in "$@"; do out+="$(printf '%q' "$a") "; done; printf '%s' "${out% }"; }

# ------------------------------------------------------------------ cleanup
FLEETS=()
R1K_FLEET=""
BIG_FILES=()
cleanup() {
  local rc=$? d s
  trap - EXIT INT TERM
  for d in "${FLEETS[@]}"; do
    # Ansible's ControlPersist masters: close them before their hosts go away
    for s in "$d"/../cp-*/*; do
      [ -S "$s" ] && ssh -o ControlPath="$s" -O exit dummy >/dev/null 2>&1
    done
    log "tearing down fleet $d"
    bash "$FLEET_SH" down --dir "$d" >/dev/null 2>&1 || true
    rm -rf "$d"
  done
  if [ -n "${R1K_FLEET:-}" ]; then
    log "tearing down fleet $R1K_FLEET"
    "$PY" "$LIB/fleet1000.py" down "$R1K_FLEET" >/dev/null 2>&1 || true
    rm -rf "$R1K_FLEET"
  fi
  for s in "${BIG_FILES[@]}"; do rm -rf "$s"; done
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# fleet_up NAME HOSTS NET LB API — brings a fleet up in $WORK/NAME/fleet, sets FLEET
fleet_up() {
  local name=$1 hosts=$2 net=$3 lb=$4 api=$5
  FLEET=$WORK/$name/fleet
  mkdir -p "$WORK/$name"
  FLEETS+=("$FLEET")
  log "fleet $name: $hosts hosts on $net.1-$hosts, lb $lb, api $api"
  FLEET_TIMEOUT=60 bash "$FLEET_SH" up --dir "$FLEET" --hosts "$hosts" --net "$net" --lb-port "$lb" \
    --api-port "$api" >"$LOGS/$name-fleet-up.log" 2>&1 \
    || { tail -n 20 "$LOGS/$name-fleet-up.log" >&2; die "fleet $name did not come up"; }
}

fleet_down() {
  local d=$1 keep=() f
  bash "$FLEET_SH" down --dir "$d" >/dev/null 2>&1 || true
  rm -rf "$d"
  for f in "${FLEETS[@]}"; do [ "$f" = "$d" ] || keep+=("$f"); done
  FLEETS=("${keep[@]}")
}

install_service() { # DIR VERSION LOG
  bash "$FLEET_SH" install-service --dir "$1" "$2" >"$3" 2>&1 || { tail -n 20 "$3" >&2; die "install-service $2 failed"; }
}

# ------------------------------------------------------------------ tools
apt_install() {
  [ "${BENCH_SKIP_INSTALL:-0}" = 1 ] && die "missing $*, and BENCH_SKIP_INSTALL=1"
  log "apt-get install $*"
  local policy=/usr/sbin/policy-rc.d made=0
  # keep a freshly installed sshd from starting on 0.0.0.0:22
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; made=1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$@" >"$LOGS/apt.log" 2>&1 \
    || { apt-get update -qq >>"$LOGS/apt.log" 2>&1; apt-get install -y -qq --no-install-recommends "$@" >>"$LOGS/apt.log" 2>&1; } \
    || { [ $made = 1 ] && rm -f $policy; die "apt-get install $* failed (see $LOGS/apt.log)"; }
  [ $made = 1 ] && rm -f $policy
  return 0
}

ensure_system() {
  [ "$(id -u)" = 0 ] || die "run as root (the fleet needs unshare --mount and port 22)"
  local need=()
  [ -x /usr/bin/time ] || need+=(time)
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  command -v ssh >/dev/null && command -v scp >/dev/null || need+=(openssh-client)
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v curl >/dev/null || need+=(curl)
  [ -x $PY ] || need+=(python3)
  [ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
}

ensure_tranche() {
  if [ -n "${TRANCHE_BIN:-}" ]; then
    TRANCHE=$(realpath "$TRANCHE_BIN")
  else
    command -v cargo >/dev/null || die "cargo not found (Rust 1.89+ is needed to build tranche); or set TRANCHE_BIN"
    log "cargo build --release (tranche)"
    (cd "$ROOT" && cargo build --release) >"$LOGS/cargo-build.log" 2>&1 \
      || { tail -n 30 "$LOGS/cargo-build.log" >&2; die "cargo build --release failed"; }
    TRANCHE=$ROOT/target/release/tranche
  fi
  [ -x "$TRANCHE" ] || die "no tranche binary at $TRANCHE"
  TRANCHE_MC=() TRANCHE_MC_PLAN=()
  if "$TRANCHE" plan --help 2>/dev/null | grep -q -- '--max-connecting'; then TRANCHE_MC_PLAN=(--max-connecting "$MAXCONN"); fi
  if "$TRANCHE" release --help 2>/dev/null | grep -q -- '--max-connecting'; then
    TRANCHE_MC=(--max-connecting "$MAXCONN")
    note general "tranche has --max-connecting: every tranche run uses --max-connecting $MAXCONN (the other tools' parallelism)"
  else
    note general "tranche has no --max-connecting option (this build): its built-in limit of connections being set up at once applies"
  fi
  if [ -n "${TRANCHE_BIN:-}" ]; then
    meta version.tranche "$("$TRANCHE" --version 2>&1 | head -n 1) (TRANCHE_BIN=$TRANCHE, built $(date -u -r "$TRANCHE" '+%Y-%m-%d %H:%M UTC'))"
  else
    meta version.tranche "$("$TRANCHE" --version 2>&1 | head -n 1) ($(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?'))"
  fi
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "python3 -m venv $VENV"
    python3 -m venv "$VENV" >"$LOGS/venv.log" 2>&1 || {
      rm -rf "$VENV"
      apt_install python3-venv
      python3 -m venv "$VENV" >>"$LOGS/venv.log" 2>&1 || die "python3 -m venv failed"
    }
  fi
  if [ ! -x "$VENV/bin/ansible-playbook" ] || [ ! -x "$VENV/bin/pyinfra" ]; then
    [ "${BENCH_SKIP_INSTALL:-0}" = 1 ] && die "ansible-core/pyinfra missing in $VENV, and BENCH_SKIP_INSTALL=1"
    log "pip install ansible-core pyinfra (into $VENV)"
    "$VENV/bin/pip" install -q ansible-core pyinfra >"$LOGS/pip.log" 2>&1 || { tail -n 20 "$LOGS/pip.log" >&2; die "pip install failed"; }
  fi
  meta version.ansible-core "$("$VENV/bin/ansible-playbook" --version 2>/dev/null | head -n 1)"
  meta version.pyinfra "$("$VENV/bin/pyinfra" --version 2>/dev/null | head -n 1)"
  meta version.python "$("$VENV/bin/python" --version 2>&1)"
}

BSSH=""
ensure_bssh() {
  local b=$TOOLS/bin/bssh
  if [ ! -x "$b" ] || ! "$b" --version 2>/dev/null | grep -q "$BSSH_VERSION"; then
    if [ "${BENCH_SKIP_INSTALL:-0}" = 1 ]; then
      meta unavailable.noop.bssh "bssh $BSSH_VERSION is not installed (BENCH_SKIP_INSTALL=1)"
      return 0
    fi
    log "cargo install bssh --version $BSSH_VERSION --root $TOOLS (a few minutes)"
    if ! cargo install bssh --version "$BSSH_VERSION" --root "$TOOLS" --locked >"$LOGS/bssh-install.log" 2>&1 \
      && ! cargo install bssh --version "$BSSH_VERSION" --root "$TOOLS" >>"$LOGS/bssh-install.log" 2>&1; then
      meta unavailable.noop.bssh "cargo install bssh --version $BSSH_VERSION failed: $(grep -m1 -E '^error' "$LOGS/bssh-install.log" || tail -n 1 "$LOGS/bssh-install.log")"
      return 0
    fi
  fi
  BSSH=$b
  meta version.bssh "$("$b" --version 2>&1 | head -n 1)"
}

record_machine() {
  meta machine.nproc "$(nproc)"
  meta machine.cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  meta machine.mem "$(free -g | awk '/^Mem:/ { print $2 " GiB" }')"
  meta machine.kernel "$(uname -sr)"
  meta machine.nofile "soft $(ulimit -Sn), hard $(ulimit -Hn) (scale run: soft $SCALE_NOFILE)"
  meta version.openssh "$(ssh -V 2>&1)"
  meta version.haproxy "$(haproxy -v 2>/dev/null | head -n 1)"
  meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
  meta repeat "$REPEAT"
}

# ------------------------------------------------------------------ shared helpers
# the sample service's playbook for a fleet (tests/common/mod.rs Fleet::playbook)
write_playbook() { # FILE ARTIFACT API_PORT|none BATCH HOSTS_PATTERN
  local file=$1 art=$2 api=$3 batch=$4 pattern=${5:-fleet} registry
  if [ "$api" = none ]; then
    registry="registry:
  kind: none"
  else
    registry="registry:
  kind: haproxy
  address: 127.0.0.1:$api
  backend: demo
  server: \"{{ host.name }}\"
  drain: 5s"
  fi
  cat >"$file" <<YML
service: demo
version: "2.0.0"
hosts: "$pattern"
artifact:
  path: $art
rollout:
  canary: 0
  batch: $batch
  stage: { concurrency: 10 }
$registry
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
}

# an artifact: the sample service 2.0.0 plus SIZE of random data (payload.bin)
make_artifact() { # FLEET OUT SIZE_MB GZIP_LEVEL
  local d=$1 out=$2 mb=$3 lvl=$4 st
  st=$(mktemp -d "$WORK/art.XXXXXX")
  tar -xzf "$d/artifacts/demo-2.0.0.tar.gz" -C "$st"
  head -c "$((mb * 1024 * 1024))" /dev/urandom >"$st/payload.bin"
  tar --sort=name --owner=0 --group=0 --numeric-owner -C "$st" -cf - bin VERSION payload.bin | gzip "-$lvl" >"$out"
  rm -rf "$st"
}

# hosts of a fleet whose `current` is releases/VERSION and that answer VERSION on /health
count_on_version() { # FLEET N NET VERSION
  local d=$1 n=$2 net=$3 v=$4 i ok=0
  for ((i = 1; i <= n; i++)); do
    [ "$(readlink "$d/hosts/h$i/srv/demo/current" 2>/dev/null)" = "releases/$v" ] || continue
    [ "$(curl -s --max-time 2 "http://$net.$i:8080/health")" = "$v" ] && ok=$((ok + 1))
  done
  echo "$ok"
}

# median of K OpenSSH handshakes + `true` (ms)
ssh_handshake_ms() { # SSH_CONFIG ADDR K
  local i t0 t1
  for ((i = 0; i < $3; i++)); do
    t0=$(date +%s%N)
    ssh -F "$1" -o ControlMaster=no -o ControlPath=none "$2" true >/dev/null 2>&1
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
  done | median
}

# ================================================================== 1. lifecycle
bench_lifecycle() {
  local c=lifecycle W=$WORK/lifecycle N=$LIFE_HOSTS D rep art sha hs ev pfx b ok
  fleet_up $c $N $LIFE_NET $LIFE_LB $LIFE_API
  D=$FLEET
  art=$W/demo-2.0.0-10mb.tar.gz
  BIG_FILES+=("$art")
  make_artifact "$D" "$art" 10 6
  sha=$(sha256sum "$art" | cut -d' ' -f1)
  meta lifecycle.artifact "$(stat -c %s "$art") bytes (demo 2.0.0 + 10 MiB random, tar.gz)"

  # tranche
  write_playbook "$W/release.yml" "$art" $LIFE_API 10
  "$TRANCHE" validate -i "$D/inventory.yml" "$W/release.yml" >"$LOGS/$c-validate.log" 2>&1 \
    || { cat "$LOGS/$c-validate.log" >&2; die "tranche rejects $W/release.yml"; }
  cp "$W/release.yml" "$LOGS/$c-tranche-playbook.yml"

  # Ansible: inventory, config, playbook
  {
    echo "[fleet]"
    for ((i = 1; i <= N; i++)); do printf 'h%02d ansible_host=%s.%d\n' "$i" $LIFE_NET "$i"; done
    echo
    echo "[fleet:vars]"
    echo "ansible_user=root"
    echo "ansible_ssh_private_key_file=$D/id_ed25519"
    echo "ansible_python_interpreter=/usr/bin/python3"
  } >"$W/ansible-inventory.ini"
  cat >"$W/ansible.cfg" <<CFG
[defaults]
forks = 50
host_key_checking = True
gathering = explicit
retry_files_enabled = False
interpreter_python = /usr/bin/python3
remote_tmp = /srv/.ansible/tmp
local_tmp = $W/ansible-local
deprecation_warnings = False

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$D/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes
CFG
  cat >"$W/ansible-release.yml" <<YML
# The same release as tranche's playbook: stage (copy, sha256, unpack), drain in HAProxy,
# stop, switch current, start, health from the controller, back into HAProxy; batches of 10.
- hosts: fleet
  serial: 10
  gather_facts: false
  any_errors_fatal: true
  vars:
    release: /srv/demo/releases/2.0.0
    api: "127.0.0.1:$LIFE_API"
    ctl: "$LIB/haproxy_ctl.py"
  tasks:
    - name: stage - upload the artifact
      ansible.builtin.copy:
        src: "$art"
        dest: /srv/demo/demo-2.0.0.tar.gz
        mode: "0644"
    - name: stage - check sha256 and unpack
      ansible.builtin.shell: |
        set -e
        got=\$(openssl dgst -sha256 -r /srv/demo/demo-2.0.0.tar.gz); [ "\${got%% *}" = "$sha" ]
        rm -rf {{ release }}.tmp && mkdir -p {{ release }}.tmp
        tar -xzf /srv/demo/demo-2.0.0.tar.gz -C {{ release }}.tmp
        mv -T {{ release }}.tmp {{ release }}
      args:
        creates: "{{ release }}"
    - name: deregister - drain, then maintenance
      ansible.builtin.command: "/usr/bin/python3 {{ ctl }} {{ api }} drain demo {{ inventory_hostname }} 5"
      delegate_to: localhost
    - name: stop
      ansible.builtin.command: /srv/demo/current/bin/stop
    - name: deploy - switch current
      ansible.builtin.shell: ln -sfn releases/2.0.0 /srv/demo/current.tmp && mv -T /srv/demo/current.tmp /srv/demo/current
    - name: start
      ansible.builtin.command: "/srv/demo/current/bin/start {{ ansible_host }}"
    - name: health
      ansible.builtin.uri:
        url: "http://{{ ansible_host }}:8080/health"
        return_content: true
      register: health
      until: health.status == 200 and '2.0.0' in health.content
      retries: 50
      delay: 0.2
      delegate_to: localhost
    - name: register - ready, wait until UP
      ansible.builtin.command: "/usr/bin/python3 {{ ctl }} {{ api }} ready demo {{ inventory_hostname }} 60"
      delegate_to: localhost
YML
  cp "$W/ansible-release.yml" "$W/ansible.cfg" "$LOGS/" 2>/dev/null
  meta file.lifecycle-tranche-playbook "$LOGS/$c-tranche-playbook.yml"
  meta file.lifecycle-ansible-playbook "$LOGS/ansible-release.yml"
  meta file.lifecycle-ansible.cfg "$LOGS/ansible.cfg"
  ANSIBLE_CONFIG=$W/ansible.cfg "$VENV/bin/ansible-playbook" -i "$W/ansible-inventory.ini" --syntax-check \
    "$W/ansible-release.yml" >"$LOGS/$c-ansible-syntax.log" 2>&1 \
    || { cat "$LOGS/$c-ansible-syntax.log" >&2; die "ansible-playbook --syntax-check failed"; }

  local tcmd=("$TRANCHE" release -i "$D/inventory.yml" "$W/release.yml" --known-hosts "$D/known_hosts"
    --no-progress "${TRANCHE_MC[@]}")
  meta cmd.$c.tranche "cd \$WORK/lifecycle && CI=true $(cmdline "${tcmd[@]}") --events EVENTS.jsonl"
  meta cmd.$c.ansible "ANSIBLE_CONFIG=$W/ansible.cfg ANSIBLE_SSH_CONTROL_PATH_DIR=$W/cp-RUN $VENV/bin/ansible-playbook -i $W/ansible-inventory.ini $W/ansible-release.yml   # see $LOGS/ansible-release.yml"
  meta cmd.$c.reset "bash tests/fleet/fleet.sh install-service --dir \$FLEET 1.0.0 && rm -rf \$FLEET/hosts/h*/srv/demo/releases/2.0.0 \$FLEET/hosts/h*/srv/demo/.tranche-stage \$FLEET/hosts/h*/srv/demo/demo-2.0.0.tar.gz \$FLEET/hosts/h*/srv/.ansible"
  meta cmd.$c.handshake "ssh -F \$FLEET/ssh_config -o ControlMaster=no $LIFE_NET.1 true   # 7 times, median"

  reset_lifecycle() {
    install_service "$D" 1.0.0 "$LOGS/$c-reset.log"
    rm -rf "$D"/hosts/h*/srv/demo/releases/2.0.0 "$D"/hosts/h*/srv/demo/releases/2.0.0.tmp \
      "$D"/hosts/h*/srv/demo/.tranche-stage "$D"/hosts/h*/srv/demo/demo-2.0.0.tar.gz "$D"/hosts/h*/srv/.ansible
    sync
  }

  for ((rep = 1; rep <= REPEAT; rep++)); do
    # --- tranche
    reset_lifecycle
    log "$c run $rep/$REPEAT: tranche release of 2.0.0 to $N hosts"
    pfx=$LOGS/$c-tranche-$rep
    ev=$pfx.events.jsonl
    rm -rf "$W/state"
    (cd "$W" && CI=true timed "$pfx" "${tcmd[@]}" --state-dir "$W/state" --events "$ev"
      echo "$T_RC $T_WALL_MS $T_USER_MS $T_SYS_MS $T_RSS_KB $T_MACHINE_MS" >"$pfx.m")
    read -r T_RC T_WALL_MS T_USER_MS T_SYS_MS T_RSS_KB T_MACHINE_MS <"$pfx.m"
    ok=$(count_on_version "$D" $N $LIFE_NET 2.0.0)
    rec $c tranche $rep rc "$T_RC"
    rec $c tranche $rep machine_cpu_ms "$T_MACHINE_MS"
    rec $c tranche $rep ok_hosts "$ok"
    rec $c tranche $rep wall_ms "$T_WALL_MS"
    rec $c tranche $rep cpu_ms $((T_USER_MS + T_SYS_MS))
    rec $c tranche $rep rss_kb "$T_RSS_KB"
    hs=$(ssh_handshake_ms "$D/ssh_config" $LIFE_NET.1 7)
    rec $c handshake $rep ms "$hs"
    "$PY" "$LIB/events.py" baseline "$ev" "$hs" >"$pfx.baseline"
    "$PY" "$LIB/events.py" steps "$ev" >"$pfx.steps"
    b=$(awk '$1 == "baseline_ms" { print $2 }' "$pfx.baseline")
    rec $c tranche $rep baseline_ms "$b"
    rec $c tranche $rep over_baseline "$(awk -v t="$T_WALL_MS" -v b="$b" 'BEGIN { printf "%.3f", t / b }')"
    log "  tranche: rc $T_RC, $ok/$N on 2.0.0, ${T_WALL_MS} ms (baseline ${b} ms, handshake ${hs} ms)"
    [ "$T_RC" = 0 ] && [ "$ok" = $N ] || note $c "tranche run $rep: exit $T_RC, $ok/$N hosts on 2.0.0 (see $pfx.err)"

    # --- Ansible
    reset_lifecycle
    log "$c run $rep/$REPEAT: ansible-playbook, the same release"
    pfx=$LOGS/$c-ansible-$rep
    mkdir -p "$W/cp-$rep"
    ANSIBLE_CONFIG=$W/ansible.cfg ANSIBLE_SSH_CONTROL_PATH_DIR=$W/cp-$rep ANSIBLE_NOCOLOR=1 \
      timed "$pfx" "$VENV/bin/ansible-playbook" -i "$W/ansible-inventory.ini" "$W/ansible-release.yml"
    ok=$(count_on_version "$D" $N $LIFE_NET 2.0.0)
    for s in "$W/cp-$rep"/*; do [ -S "$s" ] && ssh -o ControlPath="$s" -O exit dummy >/dev/null 2>&1; done
    rec $c ansible $rep rc "$T_RC"
    rec $c ansible $rep ok_hosts "$ok"
    rec $c ansible $rep wall_ms "$T_WALL_MS"
    rec $c ansible $rep cpu_ms $((T_USER_MS + T_SYS_MS))
    rec $c ansible $rep machine_cpu_ms "$T_MACHINE_MS"
    log "  ansible: rc $T_RC, $ok/$N on 2.0.0, ${T_WALL_MS} ms"
    [ "$T_RC" = 0 ] && [ "$ok" = $N ] || note $c "Ansible run $rep: exit $T_RC, $ok/$N hosts on 2.0.0 (see $pfx.out)"
  done
  note $c "Ansible's CPU time excludes its detached ControlPersist ssh masters; ControlPersist sockets are fresh for each run (no reuse across runs)."
  note $c "tranche step timings of the last run: $(tr '\n' ';' <"$LOGS/$c-tranche-$REPEAT.steps" | sed 's/;$//')"
  note $c "tranche's timeline of the last run (s from run start): $("$PY" "$LIB/events.py" timeline "$LOGS/$c-tranche-$REPEAT.events.jsonl" | sed 's/^timeline //')"
  fleet_down "$D"
  rm -f "$art"
}

# ================================================================== 2. noop
bench_noop() {
  local c=noop W=$WORK/noop N=$NOOP_HOSTS D rep pfx i tool
  fleet_up $c $N $NOOP_NET $NOOP_LB $NOOP_API
  D=$FLEET
  meta noop.hosts $N
  for ((i = 1; i <= N; i++)); do echo "$NOOP_NET.$i"; done >"$W/hosts.txt"

  # pyinfra: an inventory of the 200 addresses with the key, strict against the fleet's known_hosts
  cat >"$W/pyinfra_inventory.py" <<PYI
_data = {
    "ssh_user": "root",
    "ssh_key": "$D/id_ed25519",
    "ssh_known_hosts_file": "$D/known_hosts",
    "ssh_strict_host_key_checking": "yes",
}
fleet = [("$NOOP_NET.%d" % i, dict(_data)) for i in range(1, $N + 1)]
PYI
  # bssh: reads ~/.ssh/known_hosts for --strict-host-key-checking yes; give it a HOME of its own
  mkdir -p "$W/bssh-home/.ssh"
  cp "$D/known_hosts" "$W/bssh-home/.ssh/known_hosts"
  chmod 700 "$W/bssh-home/.ssh"

  write_playbook "$W/noop.yml" "$D/artifacts/demo-2.0.0.tar.gz" none 10
  local hostlist
  hostlist=$(sed 's/^/root@/' "$W/hosts.txt" | paste -sd,)

  local ssh_cmd=(xargs -a "$W/hosts.txt" -P 50 -I{} ssh -F "$D/ssh_config" -o StrictHostKeyChecking=yes {} true)
  local pyi_cmd=("$VENV/bin/pyinfra" "$W/pyinfra_inventory.py" exec --parallel 50 -y -- true)
  local bssh_cmd=(env HOME="$W/bssh-home" "$BSSH" -H "$hostlist" -i "$D/id_ed25519" --parallel 50
    --strict-host-key-checking yes --require-all-success true)
  # the host-side work of tranche's check-mode preflight (src/executor.rs, layout /srv/demo), for
  # a context row: bssh running it shows what the extra host work costs on this shared machine
  local pre='p=/srv/demo; while [ ! -d "$p" ]; do p=${p%/*}; p=${p:-/}; done; test -w "$p" || { echo "$p is not writable by ${USER:-$(id -un)}" >&2; exit 10; }; if [ -f /srv/demo/releases/2.0.0/.tranche-sha256 ]; then read -r s < /srv/demo/releases/2.0.0/.tranche-sha256 || true; echo "staged=$s"; fi; v=; { read -r v < /srv/demo/.tranche-previous; } 2>/dev/null; echo "previous=$v"; for d in /srv/demo/releases/*/; do [ -d "$d" ] && echo "release=$d"; done; if [ -s /srv/demo/.tranche-stage/x.part ]; then echo "part=$(wc -c < /srv/demo/.tranche-stage/x.part)"; fi; if [ -d /srv/demo/.tranche-lock ]; then echo lock=held; sed "s/^/owner./" /srv/demo/.tranche-lock/owner 2>/dev/null || true; else echo lock=free; fi; df -Pk "$p"; if cd -P /srv/demo/current 2>/dev/null; then printf "current="; pwd -P; fi'
  local bsshp_cmd=("${bssh_cmd[@]:0:${#bssh_cmd[@]}-1}" "$pre")
  local tr_cmd=("$TRANCHE" plan -i "$D/inventory.yml" "$W/noop.yml" --check --known-hosts "$D/known_hosts"
    "${TRANCHE_MC_PLAN[@]}")
  meta cmd.$c.ssh "$(cmdline "${ssh_cmd[@]}")"
  meta cmd.$c.pyinfra "$(cmdline "${pyi_cmd[@]}")   # inventory: see $LOGS/noop-pyinfra_inventory.py"
  local bssh_shown="env HOME=$W/bssh-home $BSSH -H root@$NOOP_NET.1,root@$NOOP_NET.2,...,root@$NOOP_NET.$N -i $D/id_ed25519 --parallel 50 --strict-host-key-checking yes --require-all-success"
  [ -n "$BSSH" ] && meta cmd.$c.bssh "$bssh_shown true   # bssh-home/.ssh/known_hosts = the fleet's known_hosts"
  [ -n "$BSSH" ] && meta cmd.$c.bssh+preflight-script "$bssh_shown '$pre'"
  meta cmd.$c.tranche "cd \$WORK/noop && CI=true $(cmdline "${tr_cmd[@]}")"
  cp "$W/pyinfra_inventory.py" "$LOGS/noop-pyinfra_inventory.py"
  cp "$W/noop.yml" "$LOGS/noop-tranche-playbook.yml"
  meta file.noop-pyinfra-inventory "$LOGS/noop-pyinfra_inventory.py"
  meta file.noop-tranche-playbook "$LOGS/noop-tranche-playbook.yml"

  run_tool() { # TOOL REP (REP 0 = warm-up, not recorded)
    local tool=$1 rep=$2 pfx=$LOGS/$c-$1-$2 ok
    case $tool in
      ssh) timed "$pfx" "${ssh_cmd[@]}" ;;
      pyinfra) (cd "$W" && timed "$pfx" "${pyi_cmd[@]}"; echo "$T_RC $T_WALL_MS $T_USER_MS $T_SYS_MS $T_RSS_KB" >"$pfx.m")
        read -r T_RC T_WALL_MS T_USER_MS T_SYS_MS T_RSS_KB <"$pfx.m" ;;
      bssh) (cd "$W" && timed "$pfx" "${bssh_cmd[@]}"; echo "$T_RC $T_WALL_MS $T_USER_MS $T_SYS_MS $T_RSS_KB" >"$pfx.m")
        read -r T_RC T_WALL_MS T_USER_MS T_SYS_MS T_RSS_KB <"$pfx.m" ;;
      bssh+preflight-script) (cd "$W" && timed "$pfx" "${bsshp_cmd[@]}"; echo "$T_RC $T_WALL_MS $T_USER_MS $T_SYS_MS $T_RSS_KB" >"$pfx.m")
        read -r T_RC T_WALL_MS T_USER_MS T_SYS_MS T_RSS_KB <"$pfx.m" ;;
      tranche) (cd "$W" && CI=true timed "$pfx" "${tr_cmd[@]}"
          echo "$T_RC $T_WALL_MS $T_USER_MS $T_SYS_MS $T_RSS_KB" >"$pfx.m")
        read -r T_RC T_WALL_MS T_USER_MS T_SYS_MS T_RSS_KB <"$pfx.m" ;;
    esac
    log "  $tool: rc $T_RC, ${T_WALL_MS} ms wall, $((T_USER_MS + T_SYS_MS)) ms CPU, RSS ${T_RSS_KB} kB"
    [ "$rep" = 0 ] && return 0
    rec $c "$tool" "$rep" rc "$T_RC"
    rec $c "$tool" "$rep" wall_ms "$T_WALL_MS"
    rec $c "$tool" "$rep" cpu_ms $((T_USER_MS + T_SYS_MS))
    rec $c "$tool" "$rep" rss_kb "$T_RSS_KB"
    [ "$T_RC" = 0 ] || note $c "$tool run $rep exited $T_RC: $(grep -v '^TIME' "$pfx.err" | grep -m1 -iE 'error|fail|denied|refused|reset|key' | cut -c1-200)"
  }

  local tools=(ssh pyinfra tranche)
  [ -n "$BSSH" ] && tools=(ssh pyinfra bssh tranche bssh+preflight-script)
  log "$c: warm-up round (not recorded)"
  for tool in "${tools[@]}"; do run_tool "$tool" 0; done
  for ((rep = 1; rep <= REPEAT; rep++)); do
    log "$c run $rep/$REPEAT: \`true\` on $N hosts"
    for tool in "${tools[@]}"; do run_tool "$tool" "$rep"; done
  done
  note $c "controller CPU = user+sys of the whole waited-for process tree (/usr/bin/time), divided by $N hosts; sshd's CPU is not counted."
  fleet_down "$D"
}

# ================================================================== 3. stage
bench_stage() {
  local c=stage W=$WORK/stage N=10 D rep art size pfx ev i
  fleet_up $c $N $STAGE_NET $STAGE_LB $STAGE_API
  D=$FLEET
  install_service "$D" 1.0.0 "$LOGS/$c-install.log"
  art=$W/demo-2.0.0-${STAGE_MB}mb.tar.gz
  BIG_FILES+=("$art")
  log "$c: making a $STAGE_MB MiB artifact"
  make_artifact "$D" "$art" "$STAGE_MB" 1
  size=$(stat -c %s "$art")
  meta stage.total_mb "$(awk -v s="$size" -v n=$N 'BEGIN { printf "%.1f", s * n / 1e6 }')"
  meta stage.artifact "$size bytes (demo 2.0.0 + $STAGE_MB MiB random, tar.gz), to $N hosts = $(awk -v s="$size" -v n=$N 'BEGIN { printf "%.0f", s * n / 1e6 }') MB"
  write_playbook "$W/stage.yml" "$art" $STAGE_API 10
  cp "$W/stage.yml" "$LOGS/stage-tranche-playbook.yml"

  cat >"$W/scp_all.sh" <<SH
#!/bin/bash
# scp the artifact to /srv/x on the $N hosts at once; exit 1 if any failed
pids=()
for i in \$(seq 1 $N); do scp -q -F $D/ssh_config $art $STAGE_NET.\$i:/srv/x & pids+=(\$!); done
rc=0; for p in "\${pids[@]}"; do wait \$p || rc=1; done; exit \$rc
SH
  cat >"$W/scp_verify_unpack.sh" <<SH
#!/bin/bash
# the same work as tranche's stage with OpenSSH: scp, sha256 (openssl, as tranche), tar -x, on the $N hosts at once
sha=\$(sha256sum $art | cut -d' ' -f1)
pids=()
for i in \$(seq 1 $N); do
  ( scp -q -F $D/ssh_config $art $STAGE_NET.\$i:/srv/x \
    && ssh -F $D/ssh_config $STAGE_NET.\$i "set -e; got=\\\$(openssl dgst -sha256 -r /srv/x); [ \\\${got%% *} = \$sha ]; mkdir -p /srv/xu; tar -xzf /srv/x -C /srv/xu" ) &
  pids+=(\$!)
done
rc=0; for p in "\${pids[@]}"; do wait \$p || rc=1; done; exit \$rc
SH
  chmod +x "$W/scp_all.sh" "$W/scp_verify_unpack.sh"
  cp "$W/scp_all.sh" "$W/scp_verify_unpack.sh" "$LOGS/"
  meta file.stage-tranche-playbook "$LOGS/stage-tranche-playbook.yml"
  meta file.stage-scp_all.sh "$LOGS/scp_all.sh"
  meta file.stage-scp_verify_unpack.sh "$LOGS/scp_verify_unpack.sh"
  local tcmd=("$TRANCHE" release -i "$D/inventory.yml" "$W/stage.yml" --known-hosts "$D/known_hosts"
    --no-progress "${TRANCHE_MC[@]}")
  meta cmd.$c.tranche "cd \$WORK/stage && CI=true $(cmdline "${tcmd[@]}") --events EVENTS.jsonl   # stage = first stage step_started .. last stage step_finished"
  meta cmd.$c.scp "for i in \$(seq 1 $N); do scp -q -F \$FLEET/ssh_config $art $STAGE_NET.\$i:/srv/x & done; wait   # $LOGS/scp_all.sh"
  meta cmd.$c.scp+verify+unpack "scp, then ssh HOST 'openssl dgst -sha256 (compared) && tar -xzf /srv/x -C /srv/xu', the $N hosts at once   # $LOGS/scp_verify_unpack.sh"

  clean_hosts() {
    rm -rf "$D"/hosts/h*/srv/demo/releases/2.0.0 "$D"/hosts/h*/srv/demo/releases/2.0.0.tmp \
      "$D"/hosts/h*/srv/demo/.tranche-stage "$D"/hosts/h*/srv/x "$D"/hosts/h*/srv/xu
    sync
  }

  for ((rep = 1; rep <= REPEAT; rep++)); do
    install_service "$D" 1.0.0 "$LOGS/$c-reset.log"
    clean_hosts
    log "$c run $rep/$REPEAT: tranche release with a $STAGE_MB MiB artifact to $N hosts"
    pfx=$LOGS/$c-tranche-$rep
    ev=$pfx.events.jsonl
    rm -rf "$W/state"
    (cd "$W" && CI=true STAGEWATCH="$D $N $size /srv/demo" timed "$pfx" "${tcmd[@]}" --state-dir "$W/state" --events "$ev"
      echo "$T_RC $T_WALL_MS $T_USER_MS $T_SYS_MS $T_RSS_KB" >"$pfx.m")
    read -r T_RC T_WALL_MS T_USER_MS T_SYS_MS T_RSS_KB <"$pfx.m"
    "$PY" "$LIB/events.py" stage "$ev" >"$pfx.stage"
    "$PY" "$LIB/events.py" upload "$ev" "$pfx.uploads" >>"$pfx.stage"
    local ums uh
    ums=$(awk '$1 == "upload_ms" { print $2 }' "$pfx.stage")
    uh=$(awk '$1 == "upload_hosts" { print $2 }' "$pfx.stage")
    [ "$uh" = $N ] && rec $c tranche $rep upload_ms "$ums"
    "$PY" "$LIB/events.py" steps "$ev" >"$pfx.steps"
    local sms sok
    sms=$(awk '$1 == "stage_ms" { print $2 }' "$pfx.stage")
    sok=$(awk '$1 == "stage_ok" { print $2 }' "$pfx.stage")
    rec $c tranche $rep rc "$T_RC"
    rec $c tranche $rep stage_ms "$sms"
    rec $c tranche $rep stage_ok "${sok:-0}"
    rec $c tranche $rep release_wall_ms "$T_WALL_MS"
    rec $c tranche $rep cpu_ms $((T_USER_MS + T_SYS_MS))
    rec $c tranche $rep rss_kb "$T_RSS_KB"
    log "  tranche: rc $T_RC, stage phase ${sms} ms ($sok/$N ok; uploads done after ${ums} ms, $uh hosts seen), whole release ${T_WALL_MS} ms, CPU $((T_USER_MS + T_SYS_MS)) ms"
    [ "$T_RC" = 0 ] && [ "${sok:-0}" = $N ] || note $c "tranche run $rep: exit $T_RC, $sok/$N stage ok (see $pfx.err)"
    clean_hosts

    log "$c run $rep/$REPEAT: scp to $N hosts at once"
    pfx=$LOGS/$c-scp-$rep
    timed "$pfx" "$W/scp_all.sh"
    rec $c scp $rep rc "$T_RC"
    rec $c scp $rep wall_ms "$T_WALL_MS"
    rec $c scp $rep cpu_ms $((T_USER_MS + T_SYS_MS))
    log "  scp: rc $T_RC, ${T_WALL_MS} ms, CPU $((T_USER_MS + T_SYS_MS)) ms"
    [ "$T_RC" = 0 ] || note $c "scp run $rep exited $T_RC"
    clean_hosts

    pfx=$LOGS/$c-scpfull-$rep
    timed "$pfx" "$W/scp_verify_unpack.sh"
    rec $c scp+verify+unpack $rep rc "$T_RC"
    rec $c scp+verify+unpack $rep wall_ms "$T_WALL_MS"
    log "  scp+sha256sum+tar: rc $T_RC, ${T_WALL_MS} ms"
    clean_hosts
  done
  note $c "tranche's stage phase includes the sha256 check (openssl) and unpacking on each host (all $N hosts share this machine's 2 cores); plain scp only writes the file. The scp+verify+unpack row does the same work as tranche's stage."
  fleet_down "$D"
  rm -f "$art"
}

# ================================================================== 4. scale
bench_scale() {
  local c=scale W=$WORK/scale N=$SCALE_HOSTS S=5 D rep pfx i
  fleet_up $c $S $SCALE_NET $SCALE_LB $SCALE_API
  D=$FLEET
  meta scale.hosts $N
  # raise MaxStartups and MaxSessions on the 5 sshd, and reload them (SIGHUP re-execs sshd)
  for ((i = 1; i <= S; i++)); do
    sed -i -e 's/^MaxStartups .*/MaxStartups 1000:30:2000/' -e 's/^MaxSessions .*/MaxSessions 1000/' "$D/hosts/h$i/sshd_config"
    kill -HUP "$(cat "$D/hosts/h$i/sshd.pid")"
  done
  sleep 1
  for ((i = 1; i <= S; i++)); do
    local tries=0
    until ssh -F "$D/ssh_config" $SCALE_NET.$i true >/dev/null 2>&1; do
      tries=$((tries + 1)); [ $tries -gt 50 ] && die "sshd h$i did not come back after SIGHUP"
      sleep 0.2
    done
  done
  {
    echo "all:"
    echo "  vars:"
    echo "    ansible_user: root"
    echo "    ansible_ssh_private_key_file: $D/id_ed25519"
    echo "  children:"
    echo "    fleet:"
    echo "      hosts:"
    for ((i = 1; i <= N; i++)); do printf '        h%04d: { ansible_host: %s.%d }\n' "$i" $SCALE_NET $((i % S + 1)); done
  } >"$W/inventory-1000.yml"
  # known_hosts: the fleet's lines, one per address
  cp "$D/known_hosts" "$W/known_hosts"
  write_playbook "$W/scale.yml" "$D/artifacts/demo-2.0.0.tar.gz" none 100
  cp "$W/scale.yml" "$LOGS/scale-tranche-playbook.yml"
  local tcmd=("$TRANCHE" plan -i "$W/inventory-1000.yml" "$W/scale.yml" --check --known-hosts "$W/known_hosts"
    "${TRANCHE_MC_PLAN[@]}")
  meta cmd.$c.tranche "cd \$WORK/scale && ulimit -Sn $SCALE_NOFILE && CI=true $(cmdline "${tcmd[@]}")   # inventory: h0001..h1000 -> $SCALE_NET.(i%5+1); sshd: MaxStartups 1000:30:2000, MaxSessions 1000"

  for ((rep = 1; rep <= REPEAT; rep++)); do
    log "$c run $rep/$REPEAT: tranche plan --check over $N aliases on $S sshd (soft nofile $SCALE_NOFILE)"
    pfx=$LOGS/$c-tranche-$rep
    rm -rf "$W/state"
    (cd "$W" && ulimit -Sn "$SCALE_NOFILE" && CI=true WATCH="$(basename "$TRANCHE" | cut -c1-15)" timed "$pfx" "${tcmd[@]}"
      echo "$T_RC $T_WALL_MS $T_USER_MS $T_SYS_MS $T_RSS_KB" >"$pfx.m")
    read -r T_RC T_WALL_MS T_USER_MS T_SYS_MS T_RSS_KB <"$pfx.m"
    local fds ok emfile resets fail
    fds=$(awk '$1 == "peak_fds" { print $2 }' "$pfx.watch" 2>/dev/null)
    # plan --check has no --events: read its plain output ("[b] host preflight ok|FAILED ...", "done: N ok, ...")
    ok=$(grep -c ' preflight  ok ' "$pfx.err")
    fail=$(grep -c ' preflight  FAILED ' "$pfx.err")
    emfile=$(grep -ci 'too many open files' "$pfx.err")
    resets=$(grep -ciE 'connection reset|reset by peer|broken pipe' "$pfx.err")
    rec $c tranche $rep rc "$T_RC"
    rec $c tranche $rep wall_ms "$T_WALL_MS"
    rec $c tranche $rep cpu_ms $((T_USER_MS + T_SYS_MS))
    rec $c tranche $rep rss_kb "$T_RSS_KB"
    rec $c tranche $rep peak_fds "${fds:-0}"
    rec $c tranche $rep ok_hosts "${ok:-0}"
    rec $c tranche $rep emfile "${emfile:-0}"
    rec $c tranche $rep resets "${resets:-0}"
    log "  tranche: rc $T_RC, ${T_WALL_MS} ms, $ok ok / $fail failed, peak RSS ${T_RSS_KB} kB, peak fds $fds, EMFILE lines $emfile, reset lines $resets"
    if [ "$T_RC" != 0 ]; then
      note $c "run $rep: exit $T_RC, $ok ok / $fail failed; first failures: $(grep -E ' preflight  FAILED |^error' "$pfx.err" | head -n 3 | sed 's/  */ /g' | paste -sd';' | cut -c1-400)"
    fi
  done
  note $c "sshd drops past MaxStartups, from the 5 sshd logs: $(cat "$D"/hosts/h*/sshd.log 2>/dev/null | grep -ci 'maxstartups\|drop connection') lines"
  fleet_down "$D"
}

# ================================================================== 5. release1000
# A whole release of 1,000 real hosts: one sshd per host on its own loopback address, each in
# its own mount namespace with a private /srv (bench/lib/fleet1000.py), a busybox httpd as the
# service, HAProxy with all 1,000 servers, a request loop through it during the release.
bench_release1000() {
  local c=release1000 W=$WORK/release1000 N=$R1K_HOSTS D rep art pfx ev j i
  D=$W/fleet
  mkdir -p "$W"
  R1K_FLEET=$D
  log "fleet $c: $N hosts on $R1K_NETS (one sshd each), lb $R1K_LB, api $R1K_API"
  "$PY" "$LIB/fleet1000.py" up "$D" "$N" "$R1K_LB" "$R1K_API" "$R1K_NETS" >"$LOGS/$c-fleet-up.log" 2>&1 \
    || { tail -n 20 "$LOGS/$c-fleet-up.log" >&2; die "fleet $c did not come up"; }
  "$PY" "$LIB/fleet1000.py" install "$D" 1.0.0 >>"$LOGS/$c-fleet-up.log" 2>&1 \
    || { tail -n 20 "$LOGS/$c-fleet-up.log" >&2; die "fleet $c: 1.0.0 not installed"; }
  meta $c.hosts "$N"
  meta $c.stage "$R1K_STAGE"
  meta $c.fleet "$N real OpenSSH sshd on $R1K_NETS (250 a net), each in its own mount namespace with its own /srv; service: busybox httpd (bench/lib/fleet1000.py); HAProxy: one backend of $N servers, checks every 5s (250ms while changing, 500ms while down)"
  art=$W/svc-2.0.0.tar.gz
  "$PY" "$LIB/fleet1000.py" artifact "$art" 2.0.0 "$R1K_PAYLOAD_KB"
  meta $c.artifact "$(stat -c %s "$art") bytes (busybox httpd start/stop scripts, www/health, + $R1K_PAYLOAD_KB KiB random, tar.gz)"
  cat >"$W/release.yml" <<YML
service: demo
version: "2.0.0"
hosts: fleet
artifact:
  path: $art
rollout:
  canary: 0
  batch: "10%"
  stage: { concurrency: $R1K_STAGE }
registry:
  kind: haproxy
  address: 127.0.0.1:$R1K_API
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
  interval: 100ms
  timeout: 10s
YML
  "$TRANCHE" validate -i "$D/inventory.yml" "$W/release.yml" >"$LOGS/$c-validate.log" 2>&1 \
    || { cat "$LOGS/$c-validate.log" >&2; die "tranche rejects $W/release.yml"; }
  cp "$W/release.yml" "$LOGS/$c-tranche-playbook.yml"
  meta file.release1000-tranche-playbook "$LOGS/$c-tranche-playbook.yml"
  local rcmd=("$TRANCHE" release -i "$D/inventory.yml" "$W/release.yml" --known-hosts "$D/known_hosts"
    --no-progress "${TRANCHE_MC[@]}")
  local pcmd=("$TRANCHE" plan -i "$D/inventory.yml" "$W/release.yml" --check --known-hosts "$D/known_hosts"
    "${TRANCHE_MC_PLAN[@]}")
  meta cmd.$c.tranche "cd \$WORK/release1000 && CI=true $(cmdline "${rcmd[@]}") --state-dir STATE --events EVENTS.jsonl   # while: bench/lib/reqloop.py 127.0.0.1:$R1K_LB /health $R1K_RATE 4 OUT"
  meta cmd.$c.handshakes "cd \$WORK/release1000 && CI=true $(cmdline "${pcmd[@]}")   # connect, host key, authenticate, one preflight command: subtracted from the release's CPU"
  local tname
  tname=$(basename "$TRANCHE" | cut -c1-15)

  for ((rep = 1; rep <= REPEAT; rep++)); do
    # the SSH handshakes (and the check-mode preflight command) of every host, on the same fleet
    pfx=$LOGS/$c-handshakes-$rep
    log "$c run $rep/$REPEAT: tranche plan --check on $N hosts (handshakes; load $(cut -d' ' -f1-3 /proc/loadavg))"
    rec $c handshakes $rep load1 "$(cut -d' ' -f1 /proc/loadavg)"
    (cd "$W" && CI=true timed "$pfx" "${pcmd[@]}"
      echo "$T_RC $T_WALL_MS $T_USER_MS $T_SYS_MS $T_RSS_KB $T_MACHINE_MS" >"$pfx.m")
    read -r T_RC T_WALL_MS T_USER_MS T_SYS_MS T_RSS_KB T_MACHINE_MS <"$pfx.m"
    rec $c handshakes $rep rc "$T_RC"
    rec $c handshakes $rep wall_ms "$T_WALL_MS"
    rec $c handshakes $rep cpu_ms $((T_USER_MS + T_SYS_MS))
    rec $c handshakes $rep rss_kb "$T_RSS_KB"
    log "  plan --check: rc $T_RC, ${T_WALL_MS} ms, CPU $((T_USER_MS + T_SYS_MS)) ms, RSS ${T_RSS_KB} kB"
    [ "$T_RC" = 0 ] || note $c "plan --check run $rep exited $T_RC: $(grep -m1 -iE 'error|fail' "$pfx.err" | cut -c1-200)"

    # the release, with the request loop through HAProxy
    "$PY" "$LIB/fleet1000.py" install "$D" 1.0.0 >"$LOGS/$c-reset-$rep.log" 2>&1 \
      || { tail -n 20 "$LOGS/$c-reset-$rep.log" >&2; die "$c: reset to 1.0.0 failed"; }
    rm -rf "$W/state"
    sync
    pfx=$LOGS/$c-tranche-$rep
    ev=$pfx.events.jsonl
    "$PY" "$LIB/reqloop.py" "127.0.0.1:$R1K_LB" /health "$R1K_RATE" 4 "$pfx.requests" &
    local rq=$!
    sleep 1
    log "$c run $rep/$REPEAT: tranche release of $N hosts, batches of 10%, stage limit $R1K_STAGE (load $(cut -d' ' -f1-3 /proc/loadavg))"
    rec $c tranche $rep load1 "$(cut -d' ' -f1 /proc/loadavg)"
    (cd "$W" && CI=true WATCH="$tname" timed "$pfx" "${rcmd[@]}" --state-dir "$W/state" --events "$ev"
      echo "$T_RC $T_WALL_MS $T_USER_MS $T_SYS_MS $T_RSS_KB $T_MACHINE_MS" >"$pfx.m")
    read -r T_RC T_WALL_MS T_USER_MS T_SYS_MS T_RSS_KB T_MACHINE_MS <"$pfx.m"
    sleep 1
    kill -TERM "$rq" 2>/dev/null
    wait "$rq"
    j=("$W"/state/runs/*/journal.jsonl)
    [ -f "${j[0]}" ] || j=()
    "$PY" "$LIB/events.py" run "$ev" "${j[@]:0:1}" >"$pfx.run" 2>&1
    "$PY" "$LIB/events.py" steps "$ev" >"$pfx.steps" 2>&1
    get() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }
    local okh stages evs peak jl req fail fds on
    okh=$(get hosts_ok "$pfx.run")
    stages=$(get max_concurrent_stages "$pfx.run")
    evs=$(get events_per_s "$pfx.run")
    peak=$(get events_peak_per_s "$pfx.run")
    jl=$(get journal_lag_ms "$pfx.run")
    req=$(get requests "$pfx.requests")
    fail=$(get failed "$pfx.requests")
    fds=$(get peak_fds "$pfx.watch")
    on=0
    for ((i = 1; i <= N; i++)); do
      [ "$(readlink "$D/hosts/h$i/srv/demo/current")" = releases/2.0.0 ] && on=$((on + 1))
    done
    rec $c tranche $rep rc "$T_RC"
    rec $c tranche $rep wall_ms "$T_WALL_MS"
    rec $c tranche $rep cpu_ms $((T_USER_MS + T_SYS_MS))
    rec $c tranche $rep rss_kb "$T_RSS_KB"
    rec $c tranche $rep machine_cpu_ms "$T_MACHINE_MS"
    rec $c tranche $rep peak_fds "${fds:-nan}"
    rec $c tranche $rep ok_hosts "${okh:-0}"
    rec $c tranche $rep on_2.0.0 "$on"
    rec $c tranche $rep max_concurrent_stages "${stages:-nan}"
    rec $c tranche $rep events_per_s "${evs:-nan}"
    rec $c tranche $rep events_peak_per_s "${peak:-nan}"
    rec $c tranche $rep journal_lag_ms "${jl:-nan}"
    rec $c tranche $rep journal_records "$(get journal_records "$pfx.run")"
    rec $c tranche $rep events "$(get events "$pfx.run")"
    rec $c tranche $rep requests "${req:-0}"
    rec $c tranche $rep failed_requests "${fail:-nan}"
    log "  release: rc $T_RC, ${T_WALL_MS} ms, CPU $((T_USER_MS + T_SYS_MS)) ms, RSS ${T_RSS_KB} kB, fds $fds, ok $okh (on 2.0.0: $on), max stages $stages, events ${evs}/s (peak $peak/s), journal lag ${jl} ms, requests $req, failed $fail"
    [ "$T_RC" = 0 ] || note $c "release run $rep: exit $T_RC, $okh ok; $(grep -m1 -E '^error|FAILED' "$pfx.err" | cut -c1-200)"
    [ "${fail:-1}" = 0 ] || note $c "release run $rep: $fail of $req requests failed: $(grep -m2 '^failure' "$pfx.requests" | paste -sd';' | cut -c1-300)"
  done
  note $c "controller CPU = user+sys of tranche (/usr/bin/time); per host without handshakes = (release CPU - plan --check CPU on the same fleet) / $N: plan --check does the connections, host keys, authentications and one check-mode preflight command per host, which the release also does. The hosts (1,000 sshd, their sessions, the httpd) share this machine's 2 cores with the controller: the machine CPU and the load are beside each figure."
  "$PY" "$LIB/fleet1000.py" down "$D" >/dev/null 2>&1
  rm -rf "$D"
  R1K_FLEET=""
}

# ================================================================== main
main() {
  local which=("$@") w
  [ ${#which[@]} -eq 0 ] && which=(all)
  for w in "${which[@]}"; do
    case $w in lifecycle | noop | stage | scale | release1000 | all) ;; -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) die "unknown comparison '$w' (lifecycle|noop|stage|scale|release1000|all)" ;; esac
  done
  [ "${which[*]}" = all ] && which=(lifecycle noop stage scale release1000)

  mkdir -p "$WORK" "$LOGS"
  : >"$RAW"
  : >"$META"
  meta which "${which[*]}"
  ensure_system
  ensure_tranche
  record_machine
  local w2
  for w2 in "${which[@]}"; do
    case $w2 in lifecycle | noop) ensure_venv; break ;; esac
  done
  for w2 in "${which[@]}"; do [ "$w2" = noop ] && ensure_bssh; done

  local t0=$SECONDS
  for w in "${which[@]}"; do
    log "=== $w"
    "bench_$w"
  done
  log "all done in $((SECONDS - t0)) s"
  # A run of some comparisons only: the others keep their figures from bench/results-raw.tsv
  # and bench/results-meta.tsv (the run that measured them), and results.md says so.
  local all=(lifecycle noop stage scale release1000) kept=()
  for w in "${all[@]}"; do
    [[ " ${which[*]} " == *" $w "* ]] && continue
    grep -q "^$w	" "$BENCH/results-raw.tsv" 2>/dev/null || continue
    kept+=("$w")
    grep "^$w	" "$BENCH/results-raw.tsv" >>"$RAW"
    [ -f "$BENCH/results-meta.tsv" ] && grep -E "^(cmd|note|unavailable|file)\.$w(\.|	)|^$w\." "$BENCH/results-meta.tsv" >>"$META"
    # The date of the run that measured it: kept already by the last run, or measured by it.
    meta "kept.$w" "$(awk -F'\t' -v k="kept.$w" '$1 == k { kept = $2 } $1 == "date" { date = $2 }
      END { print (kept != "" ? kept : date) }' "$BENCH/results-meta.tsv" 2>/dev/null)"
  done
  if [ ${#kept[@]} -gt 0 ]; then
    log "kept from the earlier run (bench/results-raw.tsv): ${kept[*]}"
    # the versions of the tools that only the kept comparisons ran
    grep '^version\.' "$BENCH/results-meta.tsv" 2>/dev/null | while IFS=$'\t' read -r k v; do
      grep -q "^$k	" "$META" || meta "$k" "$v (earlier run)"
    done
  fi
  cp "$RAW" "$BENCH/results-raw.tsv"
  cp "$META" "$BENCH/results-meta.tsv"
  "$PY" "$LIB/report.py" "$RAW" "$META" "$BENCH/results.md"
  log "wrote $BENCH/results.md and $BENCH/results-raw.tsv (logs: $LOGS)"
}

main "$@"
