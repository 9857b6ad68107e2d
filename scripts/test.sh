#!/usr/bin/env bash
# The whole test suite: unit, snapshot and property tests, and the end-to-end tests against a
# real local fleet (sshd per host, HAProxy). Installs what the fleet needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --all-targets "$@"
