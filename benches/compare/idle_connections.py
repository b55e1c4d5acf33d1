#!/usr/bin/env python3
"""Holds N idle keep-alive TLS connections to 127.0.0.1:PORT for run.sh.

Each connection completes a TLS handshake and one request (GET /open, the
response read whole), then sits idle in keep-alive. Prints "holding N" once
all are open, and closes them when standard input reaches end of file.

    python3 idle_connections.py PORT COUNT < control-fifo
"""
import socket
import ssl
import sys


def open_one(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn = context.wrap_socket(raw, server_hostname="localhost")
    conn.sendall(b"GET /open HTTP/1.1\r\nHost: localhost\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a response")
        response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected response: {head[:40]!r}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(4096)
    return conn


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # HTTP/1.1 only: the memory of an idle HTTP/1.1 keep-alive connection.
    context.set_alpn_protocols(["http/1.1"])
    held = [open_one(port, context) for _ in range(count)]
    print(f"holding {len(held)}", flush=True)
    sys.stdin.read()
    for conn in held:
        conn.close()


if __name__ == "__main__":
    main()
