# shellcheck shell=sh
# The lease of SPEC §4 after preflight: take over a stale lock, renew, release, break, look.
#
# Arguments: OP ROOT then, by OP:
#   take-over RUN EXPIRES OWNER  replace the lock RUN holds with EXPIRES (as preflight saw it)
#                                by ours: rename it to a unique name, check it is the one seen,
#                                then take the lock as preflight does. Only one run wins (17).
#   renew RUN OWNER              write OWNER if RUN still holds the lock; 16 when it does not,
#                                also when a take-over raced the write.
#   release RUN                  remove the lock if RUN holds it.
#   break                        remove the lock whoever holds it, printing its owner.
#   peek                         print the lock's state.
# Output: `lock=acquired|renewed|released|held|free|gone|taken`, then the owner lines.
set -u
op=$1 root=$2
lock=$root/.tranche-lock

# inode PATH: the inode number of PATH, empty if there is none (POSIX sh has no `test -ef`).
inode() {
  # Only the inode number, the first field, is read: the name does not matter.
  # shellcheck disable=SC2012
  ls -di -- "$1" 2>/dev/null | { read -r n _ && printf '%s' "$n"; }
}

held() {
  echo lock=held
  print_owner "$lock/owner"
}

case $op in
  take-over)
    run=$3 expires=$4 owner=$5
    is_owner "$lock/owner" "$run" "$expires" || { held; exit 17; }
    u=$(mktemp -d "$root/.tranche-lock.stale.XXXXXX") || exit 1
    # A rename onto the empty directory `u`: atomic, and only the first of two runs moves it.
    if ! mv -T "$lock" "$u" 2>/dev/null; then
      rmdir "$u"
      held
      exit 17
    fi
    if ! is_owner "$u/owner" "$run" "$expires"; then
      # Another run took it over between the look and the rename: give it back.
      mv -T "$u" "$lock" 2>/dev/null || true
      held
      exit 17
    fi
    rm -rf -- "$u"
    if new_lock "$root" "$owner"; then
      echo lock=acquired
    else
      held
      exit 17
    fi
    ;;
  renew)
    run=$3 owner=$4
    # Work in the lock through this shell's working directory (ROOT is absolute), which stays
    # with the directory if a take-over renames it away: the new owner can never be written
    # into another run's lock, whatever happens between the look and the write.
    if [ -L "$lock" ] || ! cd "$lock" 2>/dev/null; then
      echo lock=gone
      exit 16
    fi
    if ! is_owner ./owner "$run"; then
      echo lock=taken
      print_owner ./owner
      exit 16
    fi
    write_file ./owner "$owner" || exit 1
    # A take-over in between moved this directory away: the lock at the path is then another
    # run's, or none, and the lease was lost.
    here=$(inode .)
    if [ -z "$here" ] || [ "$(inode "$lock")" != "$here" ]; then
      if [ -d "$lock" ]; then
        echo lock=taken
        print_owner "$lock/owner"
      else
        echo lock=gone
      fi
      exit 16
    fi
    echo lock=renewed
    ;;
  release)
    run=$3
    is_owner "$lock/owner" "$run" || exit 0
    u=$(mktemp -d "$root/.tranche-lock.old.XXXXXX") || exit 1
    mv -T "$lock" "$u" 2>/dev/null || { rmdir "$u"; exit 0; }
    if is_owner "$u/owner" "$run"; then
      rm -rf -- "$u"
      echo lock=released
    else
      mv -T "$u" "$lock" 2>/dev/null || true
    fi
    ;;
  break)
    if [ -d "$lock" ] || [ -L "$lock" ]; then
      held
      rm -rf -- "$lock"
    else
      echo lock=free
    fi
    ;;
  peek)
    if [ -d "$lock" ]; then held; else echo lock=free; fi
    ;;
  *)
    die 2 "unknown lock operation: $op"
    ;;
esac
