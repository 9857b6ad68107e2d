# shellcheck shell=sh
# The functions every host-side script of tranche starts with: src/remote/mod.rs puts this text
# in front of each script. Values reach the scripts only as positional arguments.
#
# Exit codes (named in src/remote/mod.rs, `HostExit`):
#   10 the layout root cannot be created or written     11 the artifact's sha256 differs
#   12 the live release differs and is not tranche's      13 a cut upload changed meanwhile
#   14 the download failed                                15 a directory root would write into
#                                                            is not root's alone (become)
#   16 the lock is not ours (gone or taken)               17 another run won the lock
#   18 the release to switch to is not on the host       127 neither curl nor wget
#   19 a value the script refuses (a history field with a tab or a line break)
#   20 a program staging needs is missing (preflight: `zstd`, `curl` for credentials on stdin)
#   21 unpacking the artifact failed

unset CDPATH

# die CODE MESSAGE: MESSAGE on stderr, then exit CODE.
die() {
  printf '%s\n' "$2" >&2
  exit "$1"
}

# resolved PATH: the physical path of the directory PATH leads to (links resolved); empty when
# it leads to no directory. A subshell: the caller's directory does not change.
resolved() {
  (cd -P -- "$1" 2>/dev/null && pwd -P) || true
}

# holds LIVE DIR: DIR resolves to LIVE (the directory `current` resolves to) or to a directory
# above it: removing or replacing DIR would remove the release serving traffic.
holds() {
  [ -n "$1" ] || return 1
  h=$(resolved "$2")
  [ -n "$h" ] || return 1
  case "$1/" in
    "$h"/*) return 0 ;;
  esac
  return 1
}

# low PROGRAM ARGS...: run it at a lower CPU priority where the host has `nice`. Staging runs
# while the host serves traffic: hashing, unpacking and downloading yield the CPU to it.
low() {
  if command -v nice >/dev/null 2>&1; then
    nice -n 10 "$@"
  else
    "$@"
  fi
}

# sha256 FILE: the file's sha256 in hex. `openssl dgst` where the host has it (it uses the
# CPU's SHA instructions: about 6 times less CPU than coreutils' `sha256sum`), else
# `sha256sum`. The file is read from stdin, so that no name is ever escaped in the output.
sha256() {
  if command -v openssl >/dev/null 2>&1; then
    s=$(low openssl dgst -sha256 -r < "$1") || return 1
  else
    s=$(low sha256sum < "$1") || return 1
  fi
  printf '%s\n' "${s%% *}"
}

# has_line FILE LINE: FILE (a regular file) has the line LINE. Shell builtins only.
has_line() {
  [ -f "$1" ] || return 1
  while IFS= read -r l || [ -n "$l" ]; do
    [ "$l" = "$2" ] && return 0
  done < "$1"
  return 1
}

# print_owner FILE: the lines of a lock's owner file, each prefixed `owner.`.
print_owner() {
  [ -f "$1" ] || return 0
  while IFS= read -r l || [ -n "$l" ]; do
    printf 'owner.%s\n' "$l"
  done < "$1"
}

# new_lock ROOT OWNER: take ROOT/.tranche-lock. The lock is built whole (owner file included)
# in a fresh directory, then renamed into place: a rename onto an existing lock (a directory
# that is not empty) fails, so exactly one of two racing runs wins, and no lock is ever seen
# without its owner file. Nothing is written through a name another user could have planted.
new_lock() {
  # `mkdir` (one program, the umask's mode) under a name this shell owns; `mktemp` only when a
  # crashed shell of the same pid left that name behind.
  t=$1/.tranche-lock.new.$$
  if ! mkdir "$t" 2>/dev/null; then
    t=$(mktemp -d "$1/.tranche-lock.new.XXXXXX") && chmod 755 "$t" || return 1
  fi
  if printf '%s' "$2" > "$t/owner" && mv -T "$t" "$1/.tranche-lock" 2>/dev/null; then
    return 0
  fi
  rm -rf -- "$t"
  return 1
}

# is_owner FILE RUN [EXPIRES]: the owner file names RUN (and EXPIRES, when given).
is_owner() {
  has_line "$1" "run=$2" || return 1
  [ -z "${3:-}" ] || has_line "$1" "expires=$3"
}

# write_file DEST TEXT: replace DEST by a new file holding TEXT. The file is written in a fresh
# directory only this user can enter, then renamed onto DEST: a link planted at DEST is replaced,
# never followed.
write_file() {
  w=$(mktemp -d "${1%/*}/.tranche-tmp.XXXXXX") || return 1
  if printf '%s' "$2" > "$w/f" && chmod 644 "$w/f" && mv -T "$w/f" "$1"; then
    rmdir "$w"
    return 0
  fi
  rm -rf -- "$w"
  return 1
}

