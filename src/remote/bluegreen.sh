# shellcheck shell=sh
# Blue-green: which side is live on this host, recorded in ROOT/.tranche-live.
#
# Arguments: OP ROOT then, by OP:
#   get             print the record and where each slot's `current` resolves
#   set SIDE RUN    record SIDE (blue or green) as live, switched by run RUN; the side live
#                   before becomes `previous`; SIDE is no longer retired
#   retire SIDE STOP  refuse (exit 20) when SIDE is the live side; else run STOP (a shell
#                   command, empty for none) and record SIDE as retired
# Output: `live=SIDE`, `previous=SIDE`, `run=RUN`, `retired=SIDE` (empty when none), then `blue=PATH`,
# `green=PATH` and `current=PATH`: what ROOT/blue/current, ROOT/green/current and ROOT/current
# resolve to (empty: no release).
# The record is written in a fresh directory and renamed into place: a link planted at
# `.tranche-live` is replaced, never followed. Under become, ROOT must be root's alone (exit 15).
set -eu
op=$1 root=$2
rec=$root/.tranche-live

value() {
  [ -f "$rec" ] || return 0
  sed -n "s/^$1=//p" "$rec" | head -n 1
}

show() {
  echo "live=$(value live)"
  echo "previous=$(value previous)"
  echo "run=$(value run)"
  echo "retired=$(value retired)"
  echo "blue=$(resolved "$root/blue/current")"
  echo "green=$(resolved "$root/green/current")"
  echo "current=$(resolved "$root/current")"
}

# write LIVE PREVIOUS RUN RETIRED: the record, in a fresh directory renamed into place.
write() {
  t=$(mktemp -d "$root/.tranche-tmp.XXXXXX") || die 10 "cannot write in $root"
  printf 'live=%s\nprevious=%s\nrun=%s\nretired=%s\n' "$1" "$2" "$3" "$4" > "$t/live"
  chmod 644 "$t/live"
  mv -T -- "$t/live" "$rec"
  rmdir -- "$t"
}

# trusted DIR: under become (tranche's `sudo -n -- sh -c`: root, with the SUDO_UID sudo sets),
# root writes the record only into a folder no other user can write to, as the other scripts
# do (exit 15): a login user who could write there could plant what root then writes through.
trusted() {
  [ -n "${SUDO_UID:-}" ] && [ "$(id -u)" = 0 ] || return 0
  [ -e "$1" ] || return 0
  d=$1
  # shellcheck disable=SC2046 # the fields of `ls -ld`, split on purpose
  set -- $(ls -ldLn -- "$d")
  case $1 in
    ?????w* | ????????w*) ok= ;;
    *) if [ -O "$d" ]; then ok=1; else ok=; fi ;;
  esac
  [ -n "$ok" ] || die 15 "$d is $1 owned by uid $3: under become, tranche writes as root only where no other user can write (chown root and chmod go-w it)"
}

case $op in
  get)
    show
    ;;
  set)
    side=$3 run=$4
    case $side in
      blue | green) ;;
      *) die 19 "the side must be blue or green" ;;
    esac
    case $run in
      *[!A-Za-z0-9._+-]*) die 19 "the run id has characters a record cannot hold" ;;
    esac
    trusted "$root"
    mkdir -p -- "$root" || die 10 "cannot create $root"
    trusted "$root"
    was=$(value live)
    [ "$was" = "$side" ] && was=$(value previous)
    retired=$(value retired)
    [ "$retired" = "$side" ] && retired=
    write "$side" "$was" "$run" "$retired"
    show
    ;;
  retire)
    side=$3 stop=$4
    case $side in
      blue | green) ;;
      *) die 19 "the side must be blue or green" ;;
    esac
    [ "$(value live)" = "$side" ] && die 20 "$side is the live side on this host: it is not retired"
    trusted "$root"
    if [ -n "$stop" ]; then
      sh -c "$stop" || die 21 "the stop command of the $side side failed"
    fi
    mkdir -p -- "$root" || die 10 "cannot create $root"
    write "$(value live)" "$(value previous)" "$(value run)" "$side"
    show
    ;;
  *)
    die 19 "unknown operation $op"
    ;;
esac
