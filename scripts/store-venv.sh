#!/usr/bin/env bash
# The Python environment of tests/artifacts.rs's S3 test: moto (an S3-compatible server) and
# boto3/botocore (an independent SigV4 signer to check tranche's presigned URLs against), in a
# venv under target/ (never committed). Prints the venv's python. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${STORE_VENV:-$here/target/store-venv}
if ! "$venv/bin/python" -c 'import moto.server, botocore, werkzeug' >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q 'moto[server]>=5,<6' >&2
fi
echo "$venv/bin/python"
