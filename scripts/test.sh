#!/usr/bin/env bash
# The whole test suite: unit, snapshot and property tests, and the end-to-end tests against a
# real local fleet (sshd per host, HAProxy) and real etcd, Alertmanager and Prometheus servers.
# Installs what they need first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The host-side scripts (src/remote/): POSIX sh, checked by Debian's shellcheck (setup installs it).
shellcheck -s sh src/remote/*.sh
bash tests/services/services.sh install
cargo test --all-targets "$@"
