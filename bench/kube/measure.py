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


def pss_kib(pid):
    """Proportional set size: pages shared by several processes (one binary's code
    pages, libraries) counted as their share, so the sum over processes is real memory."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """(own, reaped children's) CPU seconds of a process: its utime+stime, and the
    cutime+cstime of the children it waited for (the CRI server's runc and CNI plugins)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            f = f.read().rsplit(") ", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK, (int(f[13]) + int(f[14])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def busy_s():
    """CPU seconds the whole machine spent busy (all but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / TICK


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
    ap.add_argument("--settle", type=float, default=8.0,
                    help="seconds after all Ready before the second memory reading")
    a = ap.parse_args()

    config.load_kube_config()
    core = client.CoreV1Api()
    core.create_namespace({"metadata": {"name": "bench"}})
    seen, running, ready = {}, {}, {}
    # Intermediate stages as the API shows them: bound (spec.nodeName), sandbox up
    # (PodReadyToStartContainers, else a pod IP), a container running.
    scheduled, sandbox, started = {}, {}, {}
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
            if pod.spec.node_name:
                scheduled.setdefault(name, now)
            st = pod.status
            if st.pod_ip or any(c.type == "PodReadyToStartContainers" and c.status == "True"
                                for c in st.conditions or []):
                sandbox.setdefault(name, now)
            if any(c.state and c.state.running for c in st.container_statuses or []):
                started.setdefault(name, now)
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
    procs = {"up": a.up_pid}
    for name in ("cri", "kubelet", "scheduler"):
        pid = pidfile(a.root, name)
        if pid:
            procs[name] = pid
    cpu0 = {k: cpu_s(p) for k, p in procs.items()}
    busy0 = busy_s()
    t0 = time.monotonic()
    subprocess.run(["kubectl", "apply", "-f", "-"], input=manifest.encode(), check=True,
                   stdout=subprocess.DEVNULL)
    if a.replicas == 0:
        time.sleep(5)  # REPLICAS=0: the idle control plane's memory
        done.set()
    finished = done.wait(600)
    t1 = time.monotonic()
    busy1 = busy_s()
    cpu1 = {k: cpu_s(p) for k, p in procs.items()}

    ms = lambda s: None if s is None else round(s * 1000, 1)
    start = [running[n] - seen[n] for n in running if n in seen]
    to_ready = [ready[n] - seen[n] for n in ready if n in seen]
    rss = {k: rss_kib(p) for k, p in procs.items()}
    # The heap alone (RssAnon: no pages of the executable), which a debug build's
    # huge binary does not blur.
    anon = {k: rss_kib(p, "RssAnon:") for k, p in procs.items()}
    threads = {k: rss_kib(p, "Threads:") for k, p in procs.items()}
    pss = {k: pss_kib(p) for k, p in procs.items()}
    cpu = {k: [round(cpu1[k][0] - cpu0[k][0], 2), round(cpu1[k][1] - cpu0[k][1], 2)]
           for k in procs}
    # The same processes once the node is quiet again (probes only): what stays.
    time.sleep(a.settle)
    settled = {k: {"rss_kib": rss_kib(p), "pss_kib": pss_kib(p),
                   "rss_anon_kib": rss_kib(p, "RssAnon:")} for k, p in procs.items()}

    def stage(frm, to):
        d = [to[n] - frm[n] for n in to if n in frm]
        return {"p50": ms(pct(d, 50)), "p99": ms(pct(d, 99))}
    monitors, monitors_cpu = 0, 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "hako-monitor":
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        if a.root.encode() in c.read():
                            monitors += rss_kib(pid)
                            monitors_cpu += sum(cpu_s(pid))
        except OSError:
            pass
    print(json.dumps({
        "replicas": a.replicas,
        "all_ready": finished,
        "apply_to_all_ready_s": round(t1 - t0, 2),
        "pods_seen": len(seen),
        "created_to_running_ms": {"p50": ms(pct(start, 50)), "p99": ms(pct(start, 99)),
                                  "max": ms(max(start) if start else None)},
        "created_to_ready_ms": {"p50": ms(pct(to_ready, 50)), "p99": ms(pct(to_ready, 99))},
        # Where the time goes, stage by stage (each from the previous one).
        "stages_ms": {
            "created_to_scheduled": stage(seen, scheduled),
            "scheduled_to_sandbox": stage(scheduled, sandbox),
            "sandbox_to_container_running": stage(sandbox, started),
            "container_running_to_phase_running": stage(started, running),
            "running_to_ready": stage(running, ready),
        },
        "rss_kib": rss,
        "pss_kib": pss,
        "control_plane_rss_mib": round(sum(rss.values()) / 1024, 1),
        # The target counts the API server, controllers, scheduler and kubelet
        # (`up` and the kubelet); the CRI server is the runtime's (containerd's part).
        "target_set_pss_mib": round(sum(v for k, v in pss.items() if k != "cri") / 1024, 1),
        "control_plane_pss_mib": round(sum(pss.values()) / 1024, 1),
        # CPU seconds from the apply to all Ready: [own, reaped children's] per
        # process, and the whole machine's busy seconds per pod.
        "cpu_s": cpu,
        "machine_busy_s": round(busy1 - busy0, 2),
        "machine_busy_s_per_pod": round((busy1 - busy0) / max(a.replicas, 1), 3),
        "rss_anon_kib": anon,
        "threads": threads,
        "settled": settled,
        "settled_target_set_pss_mib": round(
            sum(v["pss_kib"] for k, v in settled.items() if k != "cri") / 1024, 1),
        "monitors_rss_mib": round(monitors / 1024, 1),
        "monitors_cpu_s": round(monitors_cpu, 2),
    }, indent=1))


if __name__ == "__main__":
    main()
