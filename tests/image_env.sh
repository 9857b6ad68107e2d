#!/usr/bin/env bash
# tests/image_env.sh — a local container registry and demo images for tests/images.rs. Needs
# root, podman (with runc) and Debian's docker-registry (scripts/setup.sh installs them).
#
#   image_env.sh registry-up DIR ADDR:PORT [USER PASS]
#                                            docker-registry on ADDR:PORT (plain HTTP), storage
#                                            in DIR/registry (with USER: htpasswd auth); prints
#                                            its pid
#   image_env.sh registry-down DIR
#   image_env.sh build-push DIR ADDR:PORT VERSION [USER:PASS]
#                                            an image of a BusyBox web server answering VERSION
#                                            on /health and /, pushed as ADDR:PORT/demo:VERSION;
#                                            prints its digest (sha256:...)
set -euo pipefail

die() { echo "image_env: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: see the header"
cmd=$1 dir=$2
mkdir -p "$dir"

case $cmd in
  registry-up)
    addr=${3:?ADDR:PORT} user=${4:-} pass=${5:-}
    mkdir -p "$dir/registry"
    auth=
    if [ -n "$user" ]; then
      # htpasswd with a bcrypt hash (perl's crypt is libxcrypt's, which knows $2b$).
      # A fixed salt (a test's registry): its 22nd character must be one bcrypt accepts.
      salt=abcdefghijklmnopqrstuu
      USER_=$user PASS_=$pass SALT_=$salt perl -e 'print "$ENV{USER_}:", crypt($ENV{PASS_}, "\$2b\$05\$$ENV{SALT_}"), "\n"' \
        > "$dir/htpasswd"
      auth="auth:
  htpasswd:
    realm: tranche-test
    path: $dir/htpasswd"
    fi
    cat > "$dir/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/registry
  delete:
    enabled: true
$auth
http:
  addr: $addr
EOF
    # Its own session, every inherited descriptor closed (it must not hold the fleet lock).
    setsid docker-registry serve "$dir/registry.yml" > "$dir/registry.log" 2>&1 < /dev/null &
    echo $! > "$dir/registry.pid"
    for _ in $(seq 100); do
      # With auth, an answer (401) is enough: the registry is up.
      if curl -sS -o /dev/null "http://$addr/v2/" 2> /dev/null; then
        cat "$dir/registry.pid"
        exit 0
      fi
      sleep 0.1
    done
    die "docker-registry did not answer on $addr: $(tail -5 "$dir/registry.log")"
    ;;
  registry-down)
    if [ -f "$dir/registry.pid" ]; then
      kill "$(cat "$dir/registry.pid")" 2> /dev/null || true
      rm -f "$dir/registry.pid"
    fi
    ;;
  build-push)
    addr=${3:?ADDR:PORT} version=${4:?VERSION} creds=${5:-}
    root=$dir/rootfs-$version
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/www" "$root/lib64" "$root/lib/x86_64-linux-gnu"
    # BusyBox is dynamically linked here: its loader and libraries go into the image too.
    bb=$(command -v busybox) || die "busybox is not installed"
    cp "$bb" "$root/bin/busybox"
    for lib in $(ldd "$bb" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
    ln -s busybox "$root/bin/sh"
    printf '%s\n' "$version" > "$root/www/health"
    printf 'demo %s\n' "$version" > "$root/www/index.html"
    # PID 1 ignores SIGTERM by default: the server is a child, stopped on TERM.
    cat > "$root/serve" <<'EOF'
#!/bin/sh
/bin/busybox httpd -f -p "$1:8080" -h /www &
pid=$!
trap 'kill $pid; exit 0' TERM INT
wait $pid
EOF
    chmod 755 "$root/serve"
    tar -C "$root" -cf "$dir/rootfs-$version.tar" .
    podman import -q --change 'CMD ["/bin/sh"]' "$dir/rootfs-$version.tar" "localhost/tranche-demo:$version" > /dev/null
    podman push -q --tls-verify=false ${creds:+--creds "$creds"} --digestfile "$dir/digest-$version" \
      "localhost/tranche-demo:$version" "$addr/demo:$version" > /dev/null
    cat "$dir/digest-$version"
    ;;
  *) die "unknown command $cmd" ;;
esac
