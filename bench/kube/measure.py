#!/usr/bin/python3
"""Apply a Deployment and time its pods (bench/kube/run.sh starts the cluster).

A watch on the namespace records, on the local clock, when each pod is first seen
(created), first Running and first Ready; the Deployment is applied after the watch
is open. Prints one JSON object."""

import argparse
import json
import os
import subprocess
import threading
import time

from kubernetes import client, config, watch


def rss_kib(pid, field="VmRSS:"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pidfile(root, name):
    try:
        with open(os.path.join(root, "kube", f"{name}.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--root", required=True)
    ap.add_argument("--up-pid", type=int, required=True)
    a = ap.parse_args()

    config.load_kube_config()
    core = client.CoreV1Api()
    core.create_namespace({"metadata": {"name": "bench"}})
    seen, running, ready = {}, {}, {}
    done = threading.Event()
    opened = threading.Event()

    def watcher():
        w = watch.Watch()
        opened.set()
        for ev in w.stream(core.list_namespaced_pod, "bench", timeout_seconds=600):
            now = time.monotonic()
            pod = ev["object"]
            name = pod.metadata.name
            seen.setdefault(name, now)
            if pod.status.phase == "Running":
                running.setdefault(name, now)
            for c in pod.status.conditions or []:
                if c.type == "Ready" and c.status == "True":
                    ready.setdefault(name, now)
            if len(ready) >= a.replicas:
                done.set()
                w.stop()

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    opened.wait()
    time.sleep(0.5)  # the watch request is on the wire
    manifest = f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: bench}}
spec:
  replicas: {a.replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {a.image}
        imagePullPolicy: IfNotPresent
        command: [httpd, -f, -p, "8080", -h, /www]
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
"""
    t0 = time.monotonic()
    subprocess.run(["kubectl", "apply", "-f", "-"], input=manifest.encode(), check=True,
                   stdout=subprocess.DEVNULL)
    if a.replicas == 0:
        time.sleep(5)  # REPLICAS=0: the idle control plane's memory
        done.set()
    finished = done.wait(600)
    t1 = time.monotonic()

    start = [running[n] - seen[n] for n in running if n in seen]
    to_ready = [ready[n] - seen[n] for n in ready if n in seen]
    procs = {"up": a.up_pid}
    for name in ("cri", "kubelet", "scheduler"):
        pid = pidfile(a.root, name)
        if pid:
            procs[name] = pid
    rss = {k: rss_kib(p) for k, p in procs.items()}
    # The heap alone (RssAnon: no pages of the executable), which a debug build's
    # huge binary does not blur.
    anon = {k: rss_kib(p, "RssAnon:") for k, p in procs.items()}
    threads = {k: rss_kib(p, "Threads:") for k, p in procs.items()}
    monitors = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "hako-monitor":
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        if a.root.encode() in c.read():
                            monitors += rss_kib(pid)
        except OSError:
            pass
    ms = lambda s: None if s is None else round(s * 1000, 1)
    print(json.dumps({
        "replicas": a.replicas,
        "all_ready": finished,
        "apply_to_all_ready_s": round(t1 - t0, 2),
        "pods_seen": len(seen),
        "created_to_running_ms": {"p50": ms(pct(start, 50)), "p99": ms(pct(start, 99)),
                                  "max": ms(max(start) if start else None)},
        "created_to_ready_ms": {"p50": ms(pct(to_ready, 50)), "p99": ms(pct(to_ready, 99))},
        "rss_kib": rss,
        "control_plane_rss_mib": round(sum(rss.values()) / 1024, 1),
        "rss_anon_kib": anon,
        "threads": threads,
        "monitors_rss_mib": round(monitors / 1024, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
