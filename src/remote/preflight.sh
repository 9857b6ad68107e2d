# shellcheck shell=sh
# Preflight, in one round trip: create the layout (unless this is a check), say what is there
# (`staged=`, `previous=`, `release=`, `part=`), the free space (`df -Pk`), take the lock (or only
# look at it, for a check), and say where `current` resolves to (`current=`).
#
# Arguments: ROOT VERSION SHA256 MODE(check|release) BECOME(0|1) OWNER(the lock's owner file)
#   NEEDS: the programs staging will need (`zstd`, `curl`), space-separated: when one is missing,
#   `missing=NAMES` and exit 20 before anything is created or locked.
# Shell builtins only, but for `df` (and `wc` when a cut upload is there, `mktemp`/`chmod`/`mv`
# for the lock): every program a host starts costs about as much as the SSH session itself.
set -u
root=$1 version=$2 sha=$3 mode=$4 become=$5 owner=$6 needs=${7:-}
rel=$root/releases/$version
part=$root/.tranche-stage/$sha.part

missing=
for n in $needs; do
  # Found and runs (`zstd` and `curl` both answer `--version`).
  { command -v "$n" && "$n" --version; } >/dev/null 2>&1 || missing="$missing $n"
done
if [ -n "$missing" ]; then
  echo "missing=${missing# }"
  exit 20
fi

if [ "$mode" != check ]; then
  mkdir -p -- "$root/releases" "$root/.tranche-stage" || exit 10
fi
p=$root
while [ ! -d "$p" ]; do
  p=${p%/*}
  p=${p:-/}
done
[ -w "$p" ] || die 10 "$p is not writable by ${USER:-$(id -un)}"

# Under become, root writes only into directories no other user can write to: a login user who
# could plant a link there could make root overwrite any file.
if [ "$become" = 1 ]; then
  for d in "$root" "$root/releases" "$root/.tranche-stage"; do
    [ -e "$d" ] || continue
    # shellcheck disable=SC2046 # the fields of `ls -ld`, split on purpose
    set -- $(ls -ldLn -- "$d")
    case $1 in
      ?????w* | ????????w*) ok= ;;
      *) if [ -O "$d" ]; then ok=1; else ok=; fi ;;
    esac
    [ -n "$ok" ] || die 15 "$d is $1 owned by uid $3: under become, tranche writes as root only where no other user can write (chown root and chmod go-w it)"
  done
fi

if [ -f "$rel/.tranche-sha256" ]; then
  s=
  read -r s < "$rel/.tranche-sha256" || true
  echo "staged=$s"
fi
v=
{ read -r v < "$root/.tranche-previous"; } 2>/dev/null
echo "previous=$v"
for d in "$root"/releases/*/; do
  [ -d "$d" ] && echo "release=$d"
done
if [ -f "$part" ] && [ ! -L "$part" ] && [ -s "$part" ]; then
  echo "part=$(wc -c < "$part")"
fi
df -Pk "$p"

lock=$root/.tranche-lock
if [ "$mode" = check ]; then
  if [ -d "$lock" ]; then
    echo lock=held
    print_owner "$lock/owner"
  else
    echo lock=free
  fi
else
  # A lock without its owner file is another run's take-over in progress (the stale lock renamed
  # away, the new one not yet in place): look again a few times before reporting it as it is.
  n=0
  while :; do
    if new_lock "$root" "$owner"; then
      echo lock=acquired
      break
    fi
    if [ -f "$lock/owner" ] || [ "$n" -ge 20 ]; then
      echo lock=held
      print_owner "$lock/owner"
      break
    fi
    n=$((n + 1))
  done
fi

c=$(resolved "$root/current")
if [ -n "$c" ]; then
  echo "current=$c"
fi
