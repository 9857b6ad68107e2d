# shellcheck shell=sh
# Point ROOT/current at releases/VERSION, record where the host came from in
# ROOT/.tranche-previous, and prune releases beyond the KEEP newest.
#
# Arguments: ROOT VERSION KEEP KEEP_TOO CAME_FROM
#   KEEP_TOO: a release kept whatever its age (the one the host leaves); CAME_FROM: the text of
#   .tranche-previous (empty: none).
# Both files are made in a fresh directory and renamed into place: a link planted at `current`
# or `.tranche-previous` is replaced, never followed. Pruning never removes the release VERSION,
# KEEP_TOO, nor whatever `current` resolves to.
set -eu
root=$1 version=$2 keep=$3 keep_too=$4 came_from=$5
[ -d "$root/releases/$version" ] || die 18 "$root/releases/$version is not on the host"

t=$(mktemp -d "$root/.tranche-tmp.XXXXXX")
ln -s -- "releases/$version" "$t/current"
printf '%s\n' "$came_from" > "$t/previous"
chmod 644 "$t/previous"
mv -T -- "$t/current" "$root/current"
mv -T -- "$t/previous" "$root/.tranche-previous"
rmdir -- "$t"

live=$(resolved "$root/current")
n=0
# Newest first; `ls` leaves out the hidden directories of stagings in progress. The names are
# the releases tranche unpacked (versions: [A-Za-z0-9._+-]), so `ls` reads them right.
# shellcheck disable=SC2012
ls -1t -- "$root/releases" | while IFS= read -r d; do
  case $d in
    *.tmp) continue ;;
  esac
  n=$((n + 1))
  if [ "$n" -le "$keep" ] || [ "$d" = "$version" ] || [ "$d" = "$keep_too" ]; then
    continue
  fi
  holds "$live" "$root/releases/$d" || rm -rf -- "${root:?}/releases/$d"
done
echo "current=$live"
