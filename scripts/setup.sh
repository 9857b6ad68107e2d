#!/usr/bin/env bash
# Install what the local fleet needs (OpenSSH server, HAProxy, curl, sudo, and busybox and
# Dropbear for its non-OpenSSH hosts), and Chromium for the HTML report's test, once. Needs root.
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v curl >/dev/null 2>&1 || need+=(curl)
# .tar.zst artifacts are unpacked with zstd on the hosts (tests/artifacts.rs); the S3 test's
# moto runs in a venv that scripts/store-venv.sh makes under target/.
command -v zstd >/dev/null 2>&1 || need+=(zstd)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v sudo >/dev/null 2>&1 || need+=(sudo)
# The host-side scripts are tested under dash, busybox sh and bash --posix, and shellchecked;
# the fleet makes busybox-only hosts and Dropbear hosts.
command -v dash >/dev/null 2>&1 || need+=(dash)
command -v busybox >/dev/null 2>&1 || need+=(busybox)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
[ -x /usr/sbin/dropbear ] || need+=(dropbear-bin)
# tests/ssh_config.rs reaches hosts through a ProxyCommand of `nc`.
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
# The HTML report is rendered and screenshotted in headless Chromium (tests/html_report.rs).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# tests/metrics.rs pushes a run's progress to a real Pushgateway (scraped by Prometheus, which
# tests/services/services.sh installs).
[ -x /usr/bin/prometheus-pushgateway ] || need+=(prometheus-pushgateway)
# tests/images.rs: container images pulled from a real registry and run by rootful podman
# (with runc: crun fails under a cgroup hybrid mode) on the fleet's hosts.
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Keep the packages' own daemons from starting (the fleet's hosts use port 22 themselves);
  # put back whatever policy-rc.d was there before.
  saved=""
  if [ -e /usr/sbin/policy-rc.d ]; then saved=$(mktemp); cp -p /usr/sbin/policy-rc.d "$saved"; fi
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  status=0
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=$?
  if [ -n "$saved" ]; then mv "$saved" /usr/sbin/policy-rc.d; else rm -f /usr/sbin/policy-rc.d; fi
  [ "$status" = 0 ] || { echo "setup: apt-get install ${need[*]} failed" >&2; exit "$status"; }
  # The package enables its unit (:9091) for the next boot; the tests start their own.
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable prometheus-pushgateway.service >/dev/null 2>&1 || true
  fi
  if [ -e /etc/init.d/prometheus-pushgateway ] && command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d prometheus-pushgateway disable >/dev/null 2>&1 || true
  fi
fi
mkdir -p /run/sshd
