"""The machine's ceiling for bench/registry/run.sh's parallel pulls: PORT FILE.

Not a registry: a thread per connection that answers any request with FILE, sent with
one sendfile(2) call, and closes. No parsing, no storage lookups, no user-space copies:
the time it takes is the kernel's TCP work on loopback, which every server pays. On a
two-core machine shared with the clients that work is most of a pull's cost, so the
ratio of docker-registry's time to this one's bounds any server's ratio.
"""
import os
import socket
import sys
import threading

port, path = int(sys.argv[1]), sys.argv[2]
size = os.path.getsize(path)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(128)


def serve(conn):
    with conn:
        head = b""
        while b"\r\n\r\n" not in head:
            got = conn.recv(4096)
            if not got:
                return
            head += got
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
        with open(path, "rb") as f:
            sent = 0
            while sent < size:
                sent += os.sendfile(conn.fileno(), f.fileno(), sent, size - sent)


while True:
    c, _ = listener.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
