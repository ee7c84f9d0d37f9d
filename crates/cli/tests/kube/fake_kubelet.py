"""A stand-in for a kubelet's HTTPS server, for tests of the API server's
proxying of pods/log, exec, attach and portforward (the real kubelet is a
separate crate). Modes:

  fake_kubelet.py serve CERT KEY TOKENFILE    print the port, then serve
  fake_kubelet.py upgrade HOST PORT CAFILE TOKENFILE PATH
                                              a raw SPDY upgrade through the
                                              API server, then echo traffic

The server answers only requests carrying the bearer token in TOKENFILE.
/containerLogs/... answers with the request line it got; an exec upgraded to
a websocket sends the command on the stdout channel and a Success status on
the error channel (the v4/v5 channel protocols); any other upgrade (SPDY)
answers 101, sends the path it got and echoes what it reads."""

import base64
import hashlib
import json
import socket
import ssl
import sys
import threading


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return lines[0], headers, rest


def ws_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        return bytes([0x80 | opcode, n]) + payload
    return bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big") + payload


def handle(conn, token):
    try:
        line, headers, _ = read_head(conn)
        method, target, _ = line.split(" ", 2)
        if headers.get("authorization", [""])[0] != "Bearer " + token:
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        upgrade = headers.get("upgrade", [""])[0].lower()
        if target.startswith("/containerLogs/"):
            body = ("%s %s\nhello from the kubelet\n" % (method, target)).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        elif upgrade == "websocket":
            key = headers["sec-websocket-key"][0]
            accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            offered = [p.strip() for v in headers.get("sec-websocket-protocol", []) for p in v.split(",")]
            proto = "v5.channel.k8s.io" if "v5.channel.k8s.io" in offered else "v4.channel.k8s.io"
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n" % (accept, proto)).encode())
            out = ("%s %s\n" % (method, target)).encode()
            conn.sendall(ws_frame(2, b"\x01" + out))
            status = json.dumps({"metadata": {}, "status": "Success"}).encode()
            conn.sendall(ws_frame(2, b"\x03" + status))
            conn.sendall(ws_frame(8, b"\x03\xe8"))
            conn.settimeout(5)
            try:
                conn.recv(4096)
            except OSError:
                pass
        elif upgrade:
            versions = headers.get("x-stream-protocol-version", [""])
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n"
                          "X-Stream-Protocol-Version: %s\r\n\r\n" % (headers["upgrade"][0], versions[0])).encode())
            conn.sendall(("%s %s\n" % (method, target)).encode())
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                conn.sendall(b"echo: " + data)
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    except Exception as e:  # a test stand-in: report, never hang
        sys.stderr.write("fake kubelet: %r\n" % (e,))
    finally:
        conn.close()


def serve(cert, key, token_file):
    token = open(token_file).read().strip()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    print(sock.getsockname()[1], flush=True)
    while True:
        raw, _ = sock.accept()
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            sys.stderr.write("fake kubelet: TLS: %r\n" % (e,))
            raw.close()
            continue
        threading.Thread(target=handle, args=(conn, token), daemon=True).start()


def upgrade(host, port, ca, token_file, path):
    token = open(token_file).read().strip()
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    conn = ctx.wrap_socket(socket.create_connection((host, int(port))), server_hostname=host)
    conn.sendall(("POST %s HTTP/1.1\r\nHost: %s:%s\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\n"
                  "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n"
                  % (path, host, port, token)).encode())
    line, headers, rest = read_head(conn)
    print(line)
    for k in ("upgrade", "x-stream-protocol-version"):
        print("%s: %s" % (k, headers.get(k, [""])[0]))
    got = rest
    while b"\n" not in got:
        got += conn.recv(4096)
    print(got.decode().strip())
    conn.sendall(b"ping\n")
    echo = b""
    while not echo.endswith(b"\n"):
        echo += conn.recv(4096)
    print(echo.decode().strip())
    conn.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(*sys.argv[2:5])
    else:
        upgrade(*sys.argv[2:7])
