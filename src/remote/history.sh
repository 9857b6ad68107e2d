# shellcheck shell=sh
# The host's history of changes, ROOT/.tranche-history: one line per change, fields separated
# by tabs: TIME RUN OPERATOR CONTROLLER FROM TO OUTCOME.
#
# Arguments: ROOT append TIME RUN OPERATOR CONTROLLER FROM TO OUTCOME
#        or: ROOT tail N   (the last N lines, each printed as `history=LINE`)
# A value holding a tab or a line break is refused (exit 19): it would split or add a line.
# tranche escapes such values before it sends them. A link planted at ROOT/.tranche-history is
# refused, never written through.
set -eu
root=$1 action=$2
file=$root/.tranche-history
tab=$(printf '\t')
nl='
'
cr=$(printf '\r')
case $action in
  append)
    [ "$#" -eq 9 ] || die 19 "append takes 7 values, not $(($# - 2))"
    shift 2
    for v in "$@"; do
      case $v in
        *"$tab"* | *"$nl"* | *"$cr"*) die 19 "a history value holds a tab or a line break" ;;
      esac
    done
    [ -d "$root" ] || die 10 "$root is not a directory"
    [ ! -L "$file" ] || die 10 "$file is a symbolic link"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$file"
    ;;
  tail)
    case ${3-} in
      '' | *[!0-9]*) die 19 "tail takes a number of lines, not '${3-}'" ;;
    esac
    [ -f "$file" ] || exit 0
    tail -n "$3" -- "$file" | while IFS= read -r l || [ -n "$l" ]; do
      printf 'history=%s\n' "$l"
    done
    ;;
  *) die 19 "unknown action '$action'" ;;
esac
