# shellcheck shell=sh
# Put the artifact on the host, verified, unpacked into ROOT/releases/VERSION, in one shell:
# write it (from stdin, or download it) unless it is already there (SFTP), check its sha256,
# unpack it into a fresh directory, mark it with the checksum and rename it into place.
#
# Arguments: ROOT VERSION SHA256 HOW OFFSET URL BANDWIDTH FORMAT
#   HOW: `sftp` (the part is already written), `cat` (stdin, appended at OFFSET when OFFSET > 0),
#   `pull` (the host downloads URL itself), `fetch` (curl downloads what its config on stdin
#   says: the URL and credentials never reach a command line, so `ps` does not show them);
#   BANDWIDTH in bytes per second, 0 for no limit; FORMAT `tar.gz` or `tar.zst`.
# The directory `current` resolves to is never removed nor replaced.
set -eu
root=$1 version=$2 sha=$3 how=$4 offset=$5 url=$6 bw=$7 format=${8:-tar.gz}
rels=$root/releases
rel=$rels/$version
part=$root/.tranche-stage/$sha.part

case $how in
  sftp) ;;
  cat)
    if [ "$offset" -gt 0 ]; then
      if [ ! -f "$part" ] || [ -L "$part" ] || [ "$(wc -c < "$part")" -ne "$offset" ]; then
        die 13 'the partial upload changed'
      fi
      cat >> "$part"
    else
      rm -f -- "$part"
      (set -C && cat > "$part")
    fi
    ;;
  fetch)
    rm -f -- "$part"
    command -v curl >/dev/null 2>&1 || die 20 'curl is not installed (it reads the credentials on stdin)'
    if [ "$bw" -gt 0 ]; then set -- --limit-rate "$bw"; else set --; fi
    low curl -fsS --retry 3 --connect-timeout 10 --speed-limit 1024 --speed-time 60 "$@" \
      -o "$part" --config - || die 14 "downloading the artifact failed (curl exit $?)"
    ;;
  pull)
    rm -f -- "$part"
    # The URL is an argument, after `--`, never part of the script: whatever it holds is not run.
    if command -v curl >/dev/null 2>&1; then
      if [ "$bw" -gt 0 ]; then set -- --limit-rate "$bw"; else set --; fi
      low curl -fsSL --retry 3 --connect-timeout 10 --speed-limit 1024 --speed-time 60 "$@" \
        -o "$part" -- "$url" || die 14 "downloading the artifact failed (curl exit $?)"
    elif command -v wget >/dev/null 2>&1; then
      case $(wget -V 2>/dev/null) in
        *'GNU Wget'*)
          if [ "$bw" -gt 0 ]; then set -- "--limit-rate=$bw"; else set --; fi
          low wget -q -T 60 --tries=3 "$@" -O "$part" -- "$url" ||
            die 14 "downloading the artifact failed (wget exit $?)"
          ;;
        *)
          # BusyBox wget has no timeout option that works everywhere (Debian's crashes on -T):
          # a watchdog stops it when less than 60 KiB arrived in a minute.
          if command -v nice >/dev/null 2>&1; then
            nice -n 10 wget -q -O "$part" -- "$url" &
          else
            wget -q -O "$part" -- "$url" &
          fi
          pid=$!
          (
            last=-1
            while sleep 60; do
              size=$(wc -c < "$part" 2>/dev/null) || size=0
              if [ "$((size - last))" -lt 61440 ]; then
                kill "$pid"
                exit 0
              fi
              last=$size
            done
          ) > /dev/null 2>&1 &
          dog=$!
          rc=0
          wait "$pid" || rc=$?
          kill "$dog" 2>/dev/null || true
          [ "$rc" = 0 ] || die 14 "downloading the artifact failed (wget exit $rc)"
          ;;
      esac
    else
      die 127 'neither curl nor wget is installed'
    fi
    ;;
  *) die 2 "unknown way to stage: $how" ;;
esac

if [ ! -f "$part" ] || [ -L "$part" ]; then
  die 11 "sha256 mismatch: nothing was received"
fi
got=$(sha256 "$part")
if [ "$got" != "$sha" ]; then
  rm -f -- "$part"
  die 11 "sha256 mismatch: got $got, expected $sha"
fi

live=$(resolved "$root/current")
# What a cut staging left, never what serves traffic.
for d in "$rels"/.tranche-unpack.* "$rel.tmp"; do
  if [ -e "$d" ] || [ -L "$d" ]; then
    holds "$live" "$d" || rm -rf -- "$d"
  fi
done

tmp=$(mktemp -d "$rels/.tranche-unpack.XXXXXX")
chmod 755 "$tmp"
case $format in
  tar.zst)
    # zstd | tar: the status of both (a shell pipeline has only the last one's); zstd's first,
    # since tar fails too on what a failed zstd left.
    trc=0
    zrc=$( { { r=0; low zstd -dcq < "$part" 3>&- || r=$?; echo "$r" >&3; } | low tar -xf - -C "$tmp" >&2 3>&-; } 3>&1) ||
      trc=$?
    if [ "${zrc:-?}" != 0 ]; then
      rm -rf -- "$tmp"
      die 21 "unpacking the artifact failed (zstd exit ${zrc:-?})"
    fi
    [ "$trc" = 0 ] || { rm -rf -- "$tmp"; die 21 "unpacking the artifact failed (tar exit $trc)"; }
    ;;
  *) low tar -xzf "$part" -C "$tmp" ;;
esac

if [ -e "$rel" ] || [ -L "$rel" ]; then
  if holds "$live" "$rel"; then
    # The live release, without tranche's marker (another tool put it there): adopt it if it
    # is the artifact, refuse otherwise. Never replace it.
    if diff -rq -- "$tmp" "$rel" > /dev/null 2>&1; then
      printf '%s\n' "$sha" > "$tmp/.tranche-sha256"
      mv -T -- "$tmp/.tranche-sha256" "$rel/.tranche-sha256"
      rm -rf -- "$tmp" "$part"
      echo staged=adopted
      exit 0
    fi
    rm -rf -- "$tmp"
    die 12 "$rel is the current release, was not put there by tranche and differs from the artifact; release under another version"
  fi
  rm -rf -- "$rel"
fi
printf '%s\n' "$sha" > "$tmp/.tranche-sha256"
mv -T -- "$tmp" "$rel"
rm -f -- "$part"
echo staged=unpacked
