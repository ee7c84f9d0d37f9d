"""Parallel blob pulls for bench/registry/run.sh: PORT PATH N.

GETs PATH over N connections at once from one process (a thread each, as a client
pulling layers in parallel) and prints the wall time in milliseconds. The body bytes
are discarded inside the kernel (recv with MSG_TRUNC), so the client costs only the TCP
receive work: on a two-core machine a client that copies every byte (curl) takes half
the CPU and hides the servers' differences, where on a network it would run elsewhere.
The run checks each response's status and that exactly Content-Length bytes arrived;
run.sh checks the content itself with a separate, untimed pull.
"""
import socket
import sys
import threading
import time

port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
errors = []


def pull(k):
    try:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            got = s.recv_into(view)
            if got == 0:
                raise RuntimeError("connection closed before the headers ended")
            head += bytes(view[:got])
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1] != "200":
            raise RuntimeError(f"answered {lines[0]}")
        lengths = [int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:")]
        if not lengths:
            raise RuntimeError("no Content-Length")
        left = lengths[0] - len(rest)
        while left > 0:
            got = s.recv_into(view, min(left, len(buf)), socket.MSG_TRUNC)
            if got == 0:
                raise RuntimeError(f"connection closed with {left} body bytes to go")
            left -= got
        s.close()
    except Exception as e:  # report and fail the run
        errors.append(f"pull {k}: {e}")


threads = [threading.Thread(target=pull, args=(k,)) for k in range(n)]
t0 = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - t0
if errors:
    sys.exit("; ".join(errors))
print(round(elapsed * 1000))
