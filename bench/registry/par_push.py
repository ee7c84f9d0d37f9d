"""Parallel blob pushes for bench/registry/run.sh: PORT REPO_PREFIX DIR N.

Pushes DIR/1 .. DIR/N, each over its own keep-alive connection from one process
(POST for an upload location, then a monolithic PUT with the digest), all at once,
and prints the wall time in milliseconds. Digests are computed before the clock
starts, as a client that pushes a layer already knows it.
"""
import hashlib
import http.client
import sys
import threading
import time

port, prefix, folder, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
blobs = []
for k in range(1, n + 1):
    data = open(f"{folder}/{k}", "rb").read()
    blobs.append((data, "sha256:" + hashlib.sha256(data).hexdigest()))
errors = []


def push(k):
    data, digest = blobs[k]
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", f"/v2/{prefix}-{k}/blobs/uploads/")
        r = c.getresponse()
        r.read()
        loc = r.getheader("Location") or ""
        if loc.startswith("http"):
            loc = "/" + loc.split("/", 3)[3]
        loc += ("&" if "?" in loc else "?") + "digest=" + digest
        c.request("PUT", loc, body=data, headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        r.read()
        if r.status != 201:
            errors.append(f"blob {k}: PUT answered {r.status}")
    except Exception as e:  # report and fail the run
        errors.append(f"blob {k}: {e}")


threads = [threading.Thread(target=push, args=(k,)) for k in range(n)]
t0 = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
ms = (time.perf_counter() - t0) * 1000
if errors:
    sys.exit("par_push: " + "; ".join(errors))
print(round(ms))
