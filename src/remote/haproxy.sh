# shellcheck shell=sh
# One command to HAProxy's runtime API on this host: socat, else Python, else OpenBSD nc,
# whichever the load balancer host has. The answer on stdout.
# Arguments: SOCKET COMMAND
set -u
sock=$1 cmd=$2
if command -v socat >/dev/null 2>&1; then
  printf '%s\n' "$cmd" | socat - "UNIX-CONNECT:$sock"
elif command -v python3 >/dev/null 2>&1; then
  # shellcheck disable=SC2016 # Python, not shell
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b"\n"); sys.stdout.write(s.makefile().read())' "$sock" "$cmd"
else
  printf '%s\n' "$cmd" | nc -U -N "$sock"
fi
