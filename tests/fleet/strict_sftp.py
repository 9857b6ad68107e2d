#!/usr/bin/python3
"""A strict SFTP server for the tests: OpenSSH's sftp-server behind a proxy that takes no packet
larger than the 34000 bytes every SFTP server must accept, and that does not announce
`limits@openssh.com` (so a client cannot learn the limit beforehand).

    Subsystem sftp /usr/bin/python3 strict_sftp.py LOG [SFTP_SERVER]

On a larger packet it writes `rejected a packet of N bytes` to LOG and exits, as a strict server
closing the session would; every write it forwards is counted in LOG (`write N bytes`).
"""
import struct
import subprocess
import sys
import threading

LIMIT = 34000
log = open(sys.argv[1], "a", buffering=1)
server = subprocess.Popen([sys.argv[2] if len(sys.argv) > 2 else "/usr/lib/openssh/sftp-server"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def packets(stream, limit=None):
    """(length, body) per packet; body None for a packet over `limit` (left unread)."""
    while True:
        head = stream.read(4)
        if len(head) < 4:
            return
        (n,) = struct.unpack(">I", head)
        body = stream.read(n) if limit is None or n <= limit else None
        yield n, body


def without_limits(body):
    """An SSH_FXP_VERSION body without the limits@openssh.com extension."""
    out, pos = body[:5], 5
    while pos < len(body):
        (kn,) = struct.unpack(">I", body[pos:pos + 4])
        key = body[pos + 4:pos + 4 + kn]
        pos += 4 + kn
        (vn,) = struct.unpack(">I", body[pos:pos + 4])
        value = body[pos:pos + 4 + vn]
        pos += 4 + vn
        if key != b"limits@openssh.com":
            out += struct.pack(">I", kn) + key + value
    return out


def to_client():
    for n, body in packets(server.stdout):
        if body[0] == 2:  # SSH_FXP_VERSION
            body = without_limits(body)
        sys.stdout.buffer.write(struct.pack(">I", len(body)) + body)
        sys.stdout.buffer.flush()


forward = threading.Thread(target=to_client)
forward.start()
stdin = sys.stdin.buffer
for n, body in packets(stdin, LIMIT):
    if body is None:
        log.write(f"rejected a packet of {n} bytes\n")
        server.kill()
        sys.exit(1)
    if body[0] == 6:  # SSH_FXP_WRITE: id, handle, offset, data
        (hn,) = struct.unpack(">I", body[5:9])
        (dn,) = struct.unpack(">I", body[9 + hn + 8:9 + hn + 12])
        log.write(f"write {dn} bytes\n")
    server.stdin.write(struct.pack(">I", n) + body)
    server.stdin.flush()
server.stdin.close()
forward.join()
server.wait()
