# shellcheck shell=sh
# Where ROOT/current resolves to: prints `current=PATH`, empty when there is none.
# Arguments: ROOT
set -u
echo "current=$(resolved "$1/current")"
