#!/usr/bin/env bash
# A newcomer's first look: bring up a local fleet of 8 hosts (real sshd in their own mount
# namespaces, HAProxy in front), put demo 1.0.0 on them, release 2.0.0 with tranche in batches
# while requests flow through HAProxy, show the result, tear everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --quiet
dir=$(mktemp -d /tmp/tranche-demo.XXXXXX)
cleanup() { bash tests/fleet/fleet.sh down --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
bash tests/fleet/fleet.sh up --dir "$dir" --hosts 8 --net 127.0.5 --lb-port 18500 --api-port 19500
bash tests/fleet/fleet.sh install-service --dir "$dir" 1.0.0
sed "s#@API@#127.0.0.1:19500#" playbooks/local-fleet.yml > "$dir/release.yml"
tranche=./target/debug/tranche
echo; echo "\$ tranche plan -i inventory.yml release.yml"
"$tranche" plan -i "$dir/inventory.yml" "$dir/release.yml"
# Requests through HAProxy during the release: none may fail.
( ok=0; bad=0; while [ ! -f "$dir/stop" ]; do
    if curl -fsS -m 5 http://127.0.0.1:18500/ >/dev/null 2>&1; then ok=$((ok+1)); else bad=$((bad+1)); fi
  done; echo "$ok $bad" > "$dir/requests" ) &
echo; echo "\$ tranche release -i inventory.yml release.yml"
"$tranche" release -i "$dir/inventory.yml" "$dir/release.yml" --known-hosts "$dir/known_hosts" --state-dir "$dir/state" && code=0 || code=$?
touch "$dir/stop"; wait
read -r ok bad < "$dir/requests"
echo; echo "requests through HAProxy during the release: $ok ok, $bad failed"
bash tests/fleet/fleet.sh status --dir "$dir"
exit $code
