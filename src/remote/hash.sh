# shellcheck shell=sh
# The sha256 of a cut upload (to go on from where it stopped): prints `sha256=HEX`.
# Arguments: PART
set -eu
if [ ! -f "$1" ] || [ -L "$1" ]; then
  die 13 "$1 is not a regular file"
fi
echo "sha256=$(sha256 "$1")"
