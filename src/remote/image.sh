# shellcheck shell=sh
# Container images as the artifact (`artifact.image`): pull by digest and verify, start, stop.
#
# Arguments: ACTION ROOT VERSION RUNTIME SERVICE GLOBALS, then per ACTION:
#   detect                          print `runtime=NAME` (exit 20 when the host has none)
#   pull   INSECURE REF HEX LOGIN REGISTRY
#                                   pull REF (NAME@sha256:HEX), check the pulled image's digest,
#                                   record it in ROOT/releases/VERSION/.tranche-image; LOGIN (a
#                                   user name, empty: none) logs in to REGISTRY first, the
#                                   password on stdin
#   start  RUNOPTS COMMAND ENVIN    run the image recorded for VERSION as SERVICE-VERSION (ENVIN
#                                   1: stdin holds KEY=VALUE lines for --env-file), then remove
#                                   the containers and images of pruned releases
#   stop   SECONDS                  stop the running containers of SERVICE
#   live                            print `image=REF` of the release `current` resolves to
# RUNTIME: podman, docker, or auto (podman, else docker). GLOBALS, RUNOPTS and COMMAND are lists,
# one word per line (the controller refuses words with a line break); they are split on line
# breaks only, never globbed nor evaluated. Values are never part of this script.
set -eu
action=$1 root=$2 version=$3 runtime=$4 service=$5 globals=$6
shift 6

case $runtime in
  auto)
    if command -v podman > /dev/null 2>&1; then
      runtime=podman
    elif command -v docker > /dev/null 2>&1; then
      runtime=docker
    else
      die 20 'neither podman nor docker is installed on the host (artifact.image needs one of them)'
    fi
    ;;
  podman | docker)
    command -v "$runtime" > /dev/null 2>&1 ||
      die 20 "$runtime is not installed on the host (artifact.runtime: $runtime)"
    ;;
  *) die 2 "unknown container runtime: $runtime" ;;
esac

nl='
'

# rt ARGS...: the runtime with the playbook's global options in front of ARGS.
rt() {
  set -f
  old=$IFS
  IFS=$nl
  # shellcheck disable=SC2086 # split on line breaks only, globbing off: one option per line
  set -- $globals "$@"
  IFS=$old
  set +f
  "$runtime" "$@"
}

# The containers of this service (any state), one `ID NAME` per line.
containers() {
  rt ps -a --filter "label=tranche.service=$service" --format '{{.ID}} {{.Names}}'
}

case $action in
  detect)
    echo "runtime=$runtime"
    ;;
  pull)
    insecure=$1 ref=$2 hex=$3 login=$4 registry=$5
    if [ "$insecure" = 1 ] && [ "$runtime" = podman ]; then
      set -- --tls-verify=false
    else
      set --
    fi
    # `artifact.login`: the password is on stdin. The login goes into an auth file of its own
    # (podman reads REGISTRY_AUTH_FILE, docker DOCKER_CONFIG), in a folder only this user
    # reads, removed after the pull: no password on a command line, none left on the host.
    authdir=
    if [ -n "$login" ]; then
      authdir=$(umask 077 && mktemp -d "$root/.tranche-auth.XXXXXX") || die 10 "cannot write in $root"
      REGISTRY_AUTH_FILE=$authdir/auth.json DOCKER_CONFIG=$authdir
      export REGISTRY_AUTH_FILE DOCKER_CONFIG
      rt login "$@" --username "$login" --password-stdin -- "$registry" > /dev/null ||
        { rc=$?; rm -rf -- "$authdir"; die 14 "logging in to $registry as $login failed ($runtime exit $rc)"; }
    fi
    # `-q`: the image's id only; the reference is an argument after `--`.
    rt pull -q "$@" -- "$ref" > /dev/null ||
      { rc=$?; [ -z "$authdir" ] || rm -rf -- "$authdir"; die 14 "pulling $ref failed ($runtime exit $rc)"; }
    [ -z "$authdir" ] || rm -rf -- "$authdir"
    # What the host now holds under that name: its repository digests must include the planned
    # one (a registry or a mirror that answered with another image is refused).
    got=$(rt image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' -- "$ref") ||
      die 11 "digest mismatch: $ref is not on the host after the pull"
    found=0
    for d in $got; do
      case $d in
        *@sha256:"$hex") found=1 ;;
      esac
    done
    if [ "$found" != 1 ]; then
      rt rmi -- "$ref" > /dev/null 2>&1 || true
      die 11 "digest mismatch: pulled $ref, whose digests are: $(printf '%s' "$got" | tr '\n' ' ')"
    fi
    rels=$root/releases
    rel=$rels/$version
    live=$(resolved "$root/current")
    if [ -e "$rel" ] || [ -L "$rel" ]; then
      if holds "$live" "$rel"; then
        die 12 "$rel is the current release and was not staged from this image; release under another version"
      fi
      rm -rf -- "$rel"
    fi
    tmp=$(mktemp -d "$rels/.tranche-unpack.XXXXXX")
    chmod 755 "$tmp"
    printf '%s\n' "$ref" > "$tmp/.tranche-image"
    printf '%s\n' "$runtime" > "$tmp/.tranche-runtime"
    printf '%s\n' "$hex" > "$tmp/.tranche-sha256"
    mv -T -- "$tmp" "$rel"
    # Every image tranche pulled, for `start` to remove once no release names it.
    has_line "$root/.tranche-images" "$ref" || printf '%s\n' "$ref" >> "$root/.tranche-images"
    echo staged=pulled
    echo "runtime=$runtime"
    ;;
  start)
    runopts=$1 command=$2 envin=$3
    rel=$root/releases/$version
    [ -f "$rel/.tranche-image" ] || die 18 "$rel/.tranche-image is not on the host"
    IFS= read -r ref < "$rel/.tranche-image"
    name=$service-$version
    # A container of that name stopped earlier (the release a rollback goes back to): replaced.
    rt rm -f -- "$name" > /dev/null 2>&1 || true
    # The `env` values come on stdin: into a file only this user reads, removed once `run`
    # returned, so that they are on no command line the process list shows.
    envdir=
    set -- run -d --name "$name" --label "tranche.service=$service" --label "tranche.version=$version"
    if [ "$envin" = 1 ]; then
      envdir=$(umask 077 && mktemp -d "$root/.tranche-env.XXXXXX") || die 10 "cannot write in $root"
      (umask 077 && cat > "$envdir/env") || { rm -rf -- "$envdir"; die 10 "cannot write in $root"; }
      set -- "$@" --env-file "$envdir/env"
    fi
    set -f
    old=$IFS
    IFS=$nl
    # shellcheck disable=SC2086 # split on line breaks only, globbing off
    set -- "$@" $runopts "$ref" $command
    IFS=$old
    set +f
    id=$(rt "$@") || { [ -z "$envdir" ] || rm -rf -- "$envdir"; die 21 "$runtime run failed for $ref"; }
    [ -z "$envdir" ] || rm -rf -- "$envdir"
    echo "container=$name ${id%"${id#????????????}"}"
    echo "image=$ref"
    # Prune what `keep` let go: containers of releases no longer on the host, then the images
    # no release on the host names any more. A failure here only leaves them behind.
    containers 2> /dev/null | while IFS=' ' read -r cid cname; do
      v=${cname#"$service"-}
      if [ "$cname" != "$name" ] && [ ! -d "$root/releases/$v" ]; then
        rt rm -f -- "$cid" > /dev/null 2>&1 && echo "pruned=$cname"
      fi
    done
    if [ -f "$root/.tranche-images" ]; then
      while IFS= read -r old_ref; do
        keep=0
        for f in "$root"/releases/*/.tranche-image; do
          if [ -f "$f" ] && has_line "$f" "$old_ref"; then keep=1; fi
        done
        if [ "$keep" = 1 ] || ! rt rmi -- "$old_ref" > /dev/null 2>&1; then
          printf '%s\n' "$old_ref"
        else
          echo "pruned=$old_ref" >&2
        fi
      done < "$root/.tranche-images" > "$root/.tranche-images.new"
      mv -f -- "$root/.tranche-images.new" "$root/.tranche-images"
    fi
    ;;
  stop)
    secs=$1
    n=0
    for cid in $(rt ps -q --filter "label=tranche.service=$service"); do
      rt stop --time "$secs" -- "$cid" > /dev/null || die 22 "$runtime stop $cid failed"
      n=$((n + 1))
    done
    echo "stopped=$n"
    ;;
  live)
    cur=$(resolved "$root/current")
    if [ -n "$cur" ] && [ -f "$cur/.tranche-image" ]; then
      IFS= read -r ref < "$cur/.tranche-image"
      echo "image=$ref"
    fi
    echo "runtime=$runtime"
    ;;
  *) die 2 "unknown image action: $action" ;;
esac
