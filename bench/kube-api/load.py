"""Load for bench/kube-api/run.sh: KUBECONFIG N CLIENTS WATCHERS [ETCD_URL].

CLIENTS threads create, get, list (limit 50) and merge-patch N ConfigMaps in
namespace default over keep-alive HTTPS connections with the kubeconfig's
token; WATCHERS threads watch configmaps from the starting resourceVersion and
check that they see every event, in increasing resourceVersion order. Prints
one JSON line: throughput, p50/p99 per operation, watcher results. With
ETCD_URL, instead puts N keys straight into etcd's JSON gateway with the same
concurrency (the floor any etcd-backed API server sits on).
"""
import base64
import http.client
import json
import ssl
import sys
import tempfile
import threading
import time


def kubeconfig(path):
    text = open(path).read()
    server = text.split("server: https://")[1].split()[0]
    ca = base64.b64decode(text.split("certificate-authority-data: ")[1].split()[0])
    token = text.split("token: ")[1].split()[0]
    host, port = server.rsplit(":", 1)
    ctx = ssl.create_default_context()
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(ca)
    ctx.load_verify_locations(f.name)
    return host, int(port), token, ctx


def pct(xs, p):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p))] * 1000, 2) if xs else None


def etcd_floor(url, n, clients):
    host, port = url.replace("http://", "").split(":")
    lat = []
    lock = threading.Lock()

    def run(c):
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine = []
        for i in range(c, n, clients):
            body = json.dumps({"key": base64.b64encode(f"/floor/{i}".encode()).decode(),
                               "value": base64.b64encode(b'{"data":{"k":"v"}}').decode()})
            t = time.perf_counter()
            conn.request("POST", "/v3/kv/put", body)
            conn.getresponse().read()
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    start = time.perf_counter()
    ts = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    wall = time.perf_counter() - start
    print(json.dumps({"etcd_puts_per_s": round(n / wall), "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)}))


def main():
    if len(sys.argv) > 5:
        etcd_floor(sys.argv[5], int(sys.argv[2]), int(sys.argv[3]))
        return
    host, port, token, ctx = kubeconfig(sys.argv[1])
    n, clients, watchers = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    base = "/api/v1/namespaces/default/configmaps"

    def conn():
        return http.client.HTTPSConnection(host, port, context=ctx, timeout=120)

    c = conn()
    c.request("GET", base + "?limit=1", headers=hdr)
    start_rv = json.loads(c.getresponse().read())["metadata"]["resourceVersion"]
    expected = 2 * n  # each object: ADDED, then MODIFIED by the patch
    seen = [0] * watchers
    in_order = [True] * watchers
    ready = threading.Barrier(watchers + 1)

    def watch(w):
        wc = conn()
        wc.request("GET", f"{base}?watch=1&resourceVersion={start_rv}&timeoutSeconds=600", headers=hdr)
        r = wc.getresponse()
        ready.wait()
        last = 0
        while seen[w] < expected:
            line = r.readline()
            if not line:
                break
            ev = json.loads(line)
            rv = int(ev["object"]["metadata"]["resourceVersion"])
            if rv <= last:
                in_order[w] = False
            last = rv
            seen[w] += 1
        wc.close()

    wts = [threading.Thread(target=watch, args=(w,)) for w in range(watchers)]
    [t.start() for t in wts]
    ready.wait()
    lat = {"create": [], "get": [], "list": [], "patch": []}
    lock = threading.Lock()
    errors = []

    def client(cid):
        cc = conn()
        mine = {k: [] for k in lat}

        def call(op, method, path, body=None, ctype="application/json"):
            h = dict(hdr, **{"Content-Type": ctype})
            t = time.perf_counter()
            cc.request(method, path, body=body, headers=h)
            r = cc.getresponse()
            data = r.read()
            mine[op].append(time.perf_counter() - t)
            if r.status >= 300:
                errors.append((op, r.status, data[:200]))

        for i in range(cid, n, clients):
            name = f"bench-{i}"
            call("create", "POST", base, json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": name, "labels": {"bench": "kube-api"}}, "data": {"k": "v"}}))
            call("get", "GET", f"{base}/{name}")
            call("list", "GET", f"{base}?limit=50&labelSelector=bench%3Dkube-api")
            call("patch", "PATCH", f"{base}/{name}", json.dumps({"data": {"k": "w"}}),
                 "application/merge-patch+json")
        with lock:
            for k in lat:
                lat[k].extend(mine[k])

    start = time.perf_counter()
    cts = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    [t.start() for t in cts]
    [t.join() for t in cts]
    wall = time.perf_counter() - start
    [t.join() for t in wts]
    writes = len(lat["create"]) + len(lat["patch"])
    print(json.dumps({
        "objects": n, "clients": clients, "watchers": watchers,
        "requests_per_s": round(4 * n / wall), "writes_per_s": round(writes / wall),
        "p50_ms": {k: pct(v, 0.5) for k, v in lat.items()},
        "p99_ms": {k: pct(v, 0.99) for k, v in lat.items()},
        "errors": len(errors), "first_error": str(errors[0]) if errors else None,
        "watchers_saw_all": sum(1 for s in seen if s == expected),
        "watchers_in_order": sum(in_order),
    }))


main()
