#!/usr/bin/env bash
# Real registry/monitoring servers on loopback, from Debian's packages, for tests and the demo.
#
#   services.sh install
#   services.sh up etcd         --dir DIR --port P        (client 127.0.0.1:P, peer 127.0.0.1:P+1)
#   services.sh up alertmanager --dir DIR --port P
#   services.sh up prometheus   --dir DIR --port P --scrape HOST:PORT[,HOST:PORT...] [--wait-scrape]
#   services.sh up metrics      --dir DIR --port P        (tests/services/metrics.py; touch DIR/errors)
#   services.sh down            --dir DIR
#
# Each server runs in the background, detached (own session, stdin from /dev/null, output to
# DIR/NAME.log), with its pid in DIR/NAME.pid. `up` returns once the server answers over HTTP
# and prints one line: NAME URL pid PID ready in SECONDSs. `down` stops every DIR/*.pid.
# Prometheus scrapes its targets first ~5s after it is ready; --wait-scrape waits for that too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
deadline_secs=${SERVICES_TIMEOUT:-30}

die() { echo "services.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# --- install ---------------------------------------------------------------------------------

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'; }

cmd_install() {
  [ "$(id -u)" = 0 ] || die "install needs root"
  export DEBIAN_FRONTEND=noninteractive
  local need=() p c
  for p in etcd-server prometheus-alertmanager prometheus; do installed "$p" || need+=("$p"); done
  installed etcd-client || need+=(etcd-client)
  [ ${#need[@]} -gt 0 ] || return 0
  # No candidate for a package: the lists are missing or stale.
  for p in "${need[@]}"; do
    [ "$p" != etcd-client ] || continue
    c=$(candidate "$p")
    if [ -z "$c" ] || [ "$c" = "(none)" ]; then
      apt-get update -qq >/dev/null
      break
    fi
  done
  # etcd-client (etcdctl) is optional: only where the release has it.
  c=$(candidate etcd-client)
  if [ -z "$c" ] || [ "$c" = "(none)" ]; then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | grep -vx etcd-client)
    [ ${#need[@]} -gt 0 ] || return 0
  fi
  echo "services.sh: installing ${need[*]}" >&2

  # Keep the packages' own daemons (etcd :2379/:2380, alertmanager :9093/:9094, prometheus
  # :9090) from starting during the install: invoke-rc.d asks policy-rc.d, 101 = "not allowed".
  # Whatever policy-rc.d was there before (Docker images ship one) is put back afterwards.
  local policy=/usr/sbin/policy-rc.d backup=""
  if [ -e "$policy" ]; then
    backup=$(mktemp /usr/sbin/policy-rc.d.services.XXXXXX)
    cp -p "$policy" "$backup"
  fi
  # shellcheck disable=SC2064
  trap "if [ -n '$backup' ]; then mv -f '$backup' '$policy'; else rm -f '$policy'; fi" EXIT
  trap 'exit 130' INT TERM HUP
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"

  local log
  log=$(mktemp)
  if ! apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${need[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "apt-get install ${need[*]} failed"
  fi
  rm -f "$log"

  # The packages enable their units for the next boot: disable them (there may be no systemd
  # running here; systemctl/update-rc.d still edit the links offline).
  local unit
  for unit in etcd prometheus prometheus-alertmanager; do
    if command -v systemctl >/dev/null 2>&1; then
      systemctl disable "$unit.service" >/dev/null 2>&1 || true
      systemctl stop "$unit.service" >/dev/null 2>&1 || true
    fi
    if [ -e "/etc/init.d/$unit" ] && command -v update-rc.d >/dev/null 2>&1; then
      update-rc.d "$unit" disable >/dev/null 2>&1 || true
    fi
  done
}

# --- up ----------------------------------------------------------------------------------------

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start NAME DIR CMD...: run CMD detached, output to DIR/NAME.log, pid to DIR/NAME.pid.
start() {
  local name=$1 dir=$2
  shift 2
  [ ! -s "$dir/$name.pid" ] || ! kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null \
    || die "$name already running in $dir (pid $(cat "$dir/$name.pid"))"
  # A non-interactive shell's background job is not a process-group leader, so setsid(1)
  # execs in place and $! is the server's own pid.
  setsid "$@" </dev/null >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

# wait_http NAME DIR URL [CURL ARGS...]: poll URL until it answers 2xx, or fail (with the
# server's log) when the server dies or the deadline passes.
wait_http() {
  local name=$1 dir=$2 url=$3
  shift 3
  local pid end
  pid=$(cat "$dir/$name.pid")
  end=$(($(date +%s) + deadline_secs))
  while :; do
    if curl -fsS -o /dev/null --max-time 1 "$@" "$url" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$dir/$name.log" >&2 || true
      rm -f "$dir/$name.pid"
      die "$name exited before answering $url (log: $dir/$name.log)"
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      tail -n 30 "$dir/$name.log" >&2 || true
      die "$name did not answer $url within ${deadline_secs}s (pid $pid still running; log: $dir/$name.log)"
    fi
    sleep 0.05
  done
}

ready() {
  echo "$1 http://127.0.0.1:$3 pid $(cat "$2/$1.pid") ready in $(elapsed "$4")s"
}

check_port() {
  [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ] || die "bad port: $1"
  ! port_busy "$1" || die "port $1 on 127.0.0.1 is already in use"
}

up_etcd() {
  local dir=$1 port=$2 peer=$(($2 + 1)) bin
  bin=$(command -v etcd) || die "etcd not found: run services.sh install"
  check_port "$port"
  check_port "$peer"
  local t0
  t0=$(now)
  # etcd 3.4 refuses to start on an architecture other than amd64/ppc64le (arm64 included)
  # unless ETCD_UNSUPPORTED_ARCH names it; on amd64 the variable only draws a warning.
  local arch
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
  case $arch in amd64 | ppc64el) ;; *) export ETCD_UNSUPPORTED_ARCH=$arch ;; esac
  # A single member elects itself: a short election timeout makes it ready in ~0.2s, not ~1s.
  start etcd "$dir" "$bin" \
    --heartbeat-interval 10 --election-timeout 100 \
    --name tranche-test \
    --data-dir "$dir/etcd.data" \
    --listen-client-urls "http://127.0.0.1:$port" \
    --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "tranche-test=http://127.0.0.1:$peer" \
    --initial-cluster-state new \
    --initial-cluster-token "tranche-test-$port" \
    --logger zap --log-outputs stderr
  # /health is the plain health check; it turns true once the member has a leader. The JSON
  # gateway is then checked with a real (empty) range request.
  wait_http etcd "$dir" "http://127.0.0.1:$port/health"
  wait_http etcd "$dir" "http://127.0.0.1:$port/v3/kv/range" -X POST -d '{"key":"Zm9v"}'
  ready etcd "$dir" "$port" "$t0"
}

up_alertmanager() {
  local dir=$1 port=$2 bin
  bin=$(command -v prometheus-alertmanager || command -v alertmanager) \
    || die "prometheus-alertmanager not found: run services.sh install"
  check_port "$port"
  cat >"$dir/alertmanager.yml" <<'EOF'
route:
  receiver: "null"
receivers:
  - name: "null"
EOF
  mkdir -p "$dir/alertmanager.data"
  local t0
  t0=$(now)
  start alertmanager "$dir" "$bin" \
    --config.file "$dir/alertmanager.yml" \
    --storage.path "$dir/alertmanager.data" \
    --web.listen-address "127.0.0.1:$port" \
    --cluster.listen-address= \
    --log.level warn
  wait_http alertmanager "$dir" "http://127.0.0.1:$port/api/v2/status"
  ready alertmanager "$dir" "$port" "$t0"
}

up_prometheus() {
  local dir=$1 port=$2 scrape=$3 wait_scrape=$4 bin
  bin=$(command -v prometheus) || die "prometheus not found: run services.sh install"
  [ -n "$scrape" ] || die "up prometheus needs --scrape HOST:PORT[,HOST:PORT...]"
  check_port "$port"
  local targets="" t
  IFS=, read -r -a ts <<<"$scrape"
  for t in "${ts[@]}"; do
    [[ "$t" =~ ^[^:,\ ]+:[0-9]+$ ]] || die "bad scrape target: $t"
    targets+="${targets:+, }\"$t\""
  done
  cat >"$dir/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: demo
    metrics_path: /metrics
    static_configs:
      - targets: [$targets]
EOF
  mkdir -p "$dir/prometheus.data"
  local t0
  t0=$(now)
  start prometheus "$dir" "$bin" \
    --config.file "$dir/prometheus.yml" \
    --storage.tsdb.path "$dir/prometheus.data" \
    --web.listen-address "127.0.0.1:$port" \
    --log.level warn
  wait_http prometheus "$dir" "http://127.0.0.1:$port/-/ready"
  if [ -n "$wait_scrape" ]; then
    # Prometheus 2.x hands discovered targets to the scrapers at most every 5s, so the first
    # scrape comes ~5s after ready. Wait until every target has been scraped once (up or down).
    local end=$(($(date +%s) + deadline_secs)) body
    while :; do
      body=$(curl -fsS --max-time 1 "http://127.0.0.1:$port/api/v1/targets?state=active" 2>/dev/null || true)
      if [[ "$body" == *'"health":'* && "$body" != *'"health":"unknown"'* ]]; then break; fi
      [ "$(date +%s)" -lt "$end" ] || die "prometheus did not scrape its targets within ${deadline_secs}s"
      sleep 0.1
    done
  fi
  ready prometheus "$dir" "$port" "$t0"
}

up_metrics() {
  local dir=$1 port=$2 py
  py=$(command -v python3) || die "python3 not found"
  check_port "$port"
  local t0
  t0=$(now)
  start metrics "$dir" "$py" "$here/metrics.py" "$port" "$dir/errors"
  wait_http metrics "$dir" "http://127.0.0.1:$port/metrics"
  ready metrics "$dir" "$port" "$t0"
}

cmd_up() {
  [ $# -ge 1 ] || usage
  local what=$1 dir="" port="" scrape="" wait_scrape=""
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --dir) dir=${2:?--dir needs a value}; shift 2 ;;
      --port) port=${2:?--port needs a value}; shift 2 ;;
      --scrape) scrape=${2:?--scrape needs a value}; shift 2 ;;
      --wait-scrape) wait_scrape=1; shift ;;
      *) usage ;;
    esac
  done
  [ -n "$dir" ] && [ -n "$port" ] || usage
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  case $what in
    etcd) up_etcd "$dir" "$port" ;;
    alertmanager) up_alertmanager "$dir" "$port" ;;
    prometheus) up_prometheus "$dir" "$port" "$scrape" "$wait_scrape" ;;
    metrics) up_metrics "$dir" "$port" ;;
    *) die "unknown service: $what (etcd, alertmanager, prometheus, metrics)" ;;
  esac
}

# --- down --------------------------------------------------------------------------------------

cmd_down() {
  local dir=""
  while [ $# -gt 0 ]; do
    case $1 in
      --dir) dir=${2:?--dir needs a value}; shift 2 ;;
      *) usage ;;
    esac
  done
  [ -n "$dir" ] || usage
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd -P)
  local f pid pids=()
  shopt -s nullglob
  for f in "$dir"/*.pid; do
    pid=$(tr -dc 0-9 <"$f" || true)
    rm -f "$f"
    [ -n "$pid" ] || continue
    # Only a process started for this DIR (its command line names DIR): never a stranger
    # that got the pid after ours exited.
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir"; then
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  local end=$(($(date +%s) + 10)) left killed=""
  while :; do
    left=()
    for pid in "${pids[@]}"; do
      # A zombie (exited, not yet reaped by its parent) counts as gone.
      if [ -e "/proc/$pid" ] && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        left+=("$pid")
      fi
    done
    [ ${#left[@]} -gt 0 ] || return 0
    if [ "$(date +%s)" -ge "$end" ]; then
      if [ -n "$killed" ]; then
        echo "services.sh: pids ${left[*]} still there after SIGKILL" >&2
        return 0
      fi
      kill -KILL "${left[@]}" 2>/dev/null || true
      killed=1
      end=$(($(date +%s) + 5))
    fi
    pids=("${left[@]}")
    sleep 0.05
  done
}

case ${1:-} in
  install) shift; cmd_install "$@" ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  *) usage ;;
esac
