#!/usr/bin/env bash
# Services on a one-node `hako kube up` (real kubelet, CRI, kube-proxy, cluster DNS):
#   1. requests/s from a client pod through a ClusterIP Service to 3 httpd pods, against
#      the same requests straight to one pod's IP, in the same run (alternating rounds
#      of DURATION seconds, PARALLEL busybox wget loops each); the ratio is the cost of
#      the Service path (target: <= 1.10)
#   2. service programming latency: a Service created (kubectl create returned) -> the
#      first successful request to its cluster IP from the host, for SERVICES services
#      created one after the other (p50/p99), then again for SERVICES more once BIG
#      Services exist (how kube-proxy's cost grows with the rule set)
# Images come from a `hako registry serve` on 127.0.0.1 (busybox-static as the image).
# Usage: bench/kube-svc/run.sh           (SERVICES=100 BIG=1000 DURATION=20 PARALLEL=4)
#        HAKO=target/debug/hako SERVICES=20 BIG=100 DURATION=5 bench/kube-svc/run.sh
# Needs: root, kubectl, python3, curl, busybox-static.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
SERVICES=${SERVICES:-100}
BIG=${BIG:-1000}
DURATION=${DURATION:-20}
PARALLEL=${PARALLEL:-4}
ROUNDS=${ROUNDS:-2}
if [ -z "${HAKO:-}" ]; then
  echo "building hako (release)..." >&2
  HAKO="$(scripts/build-release.sh)/hako"
fi
HAKO=$(realpath "$HAKO")
work=$(mktemp -d)
root="$work/root"
pids=()
cleanup() {
  kubectl --kubeconfig "$root/kubeconfig" delete deploy,svc,pods --all --wait=true --timeout=60s >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  "$HAKO" --root "$root" kube down >/dev/null 2>&1 || true
  "$HAKO" --root "$root" system reset -f >/dev/null 2>&1 || true
  "$HAKO" --root "$work/reg" system reset -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
k() { kubectl --kubeconfig "$root/kubeconfig" --cache-dir "$work/kcache" "$@"; }

# busybox as an image, pushed to a loopback registry.
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"$HAKO" --root "$work/reg" registry serve --addr 127.0.0.1:0 >"$work/reg.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q . "$work/reg.out" 2>/dev/null && break; sleep 0.1; done
reg=$(awk '{print $NF}' "$work/reg.out" | head -1)
img="$reg/bench/busybox:1"
"$HAKO" --root "$root" import "$work/busybox.tar" "$img" >/dev/null
"$HAKO" --root "$root" push "$img" >/dev/null
"$HAKO" --root "$root" rmi "$img" >/dev/null

# A service range of its own (its DNS address too), no ingress on the host's 80/443.
"$HAKO" --root "$root" kube up --addr 127.0.0.1:0 --service-cluster-ip-range 10.197.0.0/16 \
  --disable-ingress >"$work/up.out" 2>"$work/up.err" &
pids+=($!)
for _ in $(seq 300); do grep -q listening "$work/up.out" 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 600); do k get nodes 2>/dev/null | grep -q ' Ready' && break; sleep 0.2; done

k apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: $img
        command: ["sh", "-c", "mkdir /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: sh, image: $img, command: ["sleep", "1000000"]}]
YAML
k rollout status deploy/web --timeout=300s >/dev/null
k wait --for=condition=Ready pod/client --timeout=300s >/dev/null
svc_ip=$(k get svc web -o jsonpath='{.spec.clusterIP}')
pod_ip=$(k get pods -l app=web -o jsonpath='{.items[0].status.podIP}')

# PARALLEL loops of busybox wget for DURATION seconds inside the client pod: requests done.
rate() { # url
  k exec client -- sh -c "
    for j in \$(seq $PARALLEL); do
      ( n=0; end=\$((\$(date +%s) + $DURATION)); while [ \$(date +%s) -lt \$end ]; do
          wget -qO- $1 >/dev/null && n=\$((n+1)); done; echo \$n ) &
    done; wait" | awk -v d="$DURATION" '{s+=$1} END {printf "%.1f", s/d}'
}
svc_rates=(); pod_rates=()
for _ in $(seq "$ROUNDS"); do
  svc_rates+=("$(rate "http://$svc_ip/")")
  pod_rates+=("$(rate "http://$pod_ip:8080/")")
done

# Service programming latency, from the host: create, then poll the cluster IP.
latencies() { # count, name prefix
  python3 - "$1" "$2" "$root/kubeconfig" "$work/kcache" <<'PY'
import json, subprocess, sys, time, urllib.request
n, prefix, kc, cache = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
out = []
for i in range(n):
    name = f"{prefix}-{i}"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}
    t0 = time.monotonic()
    ip = subprocess.run(["kubectl", "--kubeconfig", kc, "--cache-dir", cache, "create", "-f", "-",
                         "-o", "jsonpath={.spec.clusterIP}"], input=json.dumps(svc).encode(),
                        capture_output=True, check=True).stdout.decode()
    t1 = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(f"http://{ip}/", timeout=1).read()
            break
        except Exception:
            if time.monotonic() - t1 > 60:
                sys.exit(f"service {name} ({ip}) never answered")
            time.sleep(0.005)
    out.append(time.monotonic() - t1)
out.sort()
pct = lambda p: out[min(len(out) - 1, int(p * len(out)))] * 1000
print(json.dumps({"services": n, "p50_ms": round(pct(0.50), 1), "p99_ms": round(pct(0.99), 1),
                  "max_ms": round(out[-1] * 1000, 1)}))
PY
}
small=$(latencies "$SERVICES" lat)
# Fill up to BIG Services (in one apply; the SERVICES measured next end at BIG), then
# measure again.
python3 - "$BIG" "$SERVICES" <<'PY' | k apply -f - >/dev/null
import json, sys
big, have = int(sys.argv[1]), 2 * int(sys.argv[2]) + 2
items = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"fill-{i}"},
          "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}
         for i in range(max(0, big - have))]
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
large=$(latencies "$SERVICES" big)
# This control plane's endpoint chains (kube-proxy's tag: the hash of the root).
tag=$(printf %s "$(realpath "$root")" | sha256sum | cut -c1-6)
rules=$(iptables-save -t nat | grep -c "^-A HK$tag-E.*-j DNAT" || true)
join() { local IFS=,; echo "$*"; }
cost=$(python3 -c "import sys; s=[float(x) for x in sys.argv[1].split(',')]; p=[float(x) for x in sys.argv[2].split(',')]; print(round(sum(p)/sum(s), 3) if sum(s) else 'null')" "$(join "${svc_rates[@]}")" "$(join "${pod_rates[@]}")")
echo "{\"through_service_rps\": [$(join "${svc_rates[@]}")], \"straight_to_pod_rps\": [$(join "${pod_rates[@]}")], \"service_cost\": $cost, \"parallel\": $PARALLEL, \"duration_s\": $DURATION}"
echo "{\"programming_latency\": $small, \"with_services\": $((SERVICES + 2))}"
echo "{\"programming_latency\": $large, \"with_services\": $BIG, \"dnat_rules\": $rules}"
