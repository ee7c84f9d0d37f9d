#!/usr/bin/env bash
# The main job, end to end on local data:
#   install packages, build, make a busybox image, push it to a registry on
#   loopback (hako's own registry), pull it back, and run it with `hako run`.
# Everything lives in a temp dir that is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
BIN=$(./scripts/build-release.sh)
WORK=$(mktemp -d /tmp/hako-quickstart.XXXXXX)
REG_PID=""
KUBE_PID=""
cleanup() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null || true
  [ -n "$KUBE_PID" ] && kill "$KUBE_PID" 2>/dev/null && wait "$KUBE_PID" 2>/dev/null || true
  # Pods outlive the control plane (as upstream's do): remove what is left.
  [ -d "$WORK/kube" ] && "$BIN/hako" --root "$WORK/kube" system reset -f >/dev/null 2>&1 || true
  umount -R "$WORK/store2" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== 1. a busybox root filesystem from Debian's busybox-static"
mkdir -p "$WORK/rootfs"/{bin,proc,sys,dev,etc,tmp,root}
cp /bin/busybox "$WORK/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$WORK/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/rootfs/etc/passwd"
mkdir -p "$WORK/rootfs/www"
echo 'hello from a hako pod' > "$WORK/rootfs/www/index.html"
tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .

echo "== 2. import it as an image"
"$BIN/hako" --root "$WORK/store" import "$WORK/rootfs.tar" localhost/demo/busybox:1
"$BIN/hako" --root "$WORK/store" images

echo "== 3. push it to hako's registry on 127.0.0.1"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/hako" registry serve --addr "127.0.0.1:$PORT" --root "$WORK/registry" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/hako" --root "$WORK/store" push --dest "127.0.0.1:$PORT/demo/busybox:1" localhost/demo/busybox:1
curl -fsS "http://127.0.0.1:$PORT/v2/demo/busybox/tags/list"; echo

echo "== 4. pull it back into a fresh store"
"$BIN/hako" --root "$WORK/store2" pull "127.0.0.1:$PORT/demo/busybox:1"
"$BIN/hako" --root "$WORK/store2" tag "127.0.0.1:$PORT/demo/busybox:1" localhost/demo/busybox:1
"$BIN/hako" --root "$WORK/store2" images

echo "== 5. run it with hako run (overlay rootfs, hako-monitor, hako-runtime)"
"$BIN/hako" --root "$WORK/store2" run --rm --network none localhost/demo/busybox:1 \
  sh -c 'echo hello from a hako container: $(hostname), pid $$, $(id)'
echo "== 6. a single-node Kubernetes (hako kube up) driven by kubectl"
# API server, controllers, scheduler, kubelet over hako's CRI, kube-proxy; the pods
# pull the image pushed above from the loopback registry over plain HTTP.
"$BIN/hako" --root "$WORK/kube" kube up --addr 127.0.0.1:0 >"$WORK/kube.log" 2>&1 &
KUBE_PID=$!
for _ in $(seq 100); do grep -q "API server listening" "$WORK/kube.log" 2>/dev/null && break; sleep 0.1; done
KC="$WORK/kube/kubeconfig"
cat > "$WORK/web.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: httpd
        image: 127.0.0.1:REGPORT/demo/busybox:1
        command: ["httpd", "-f", "-p", "80", "-h", "/www"]
        readinessProbe:
          httpGet: {path: /, port: 80}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
YAML
sed -i "s/REGPORT/$PORT/" "$WORK/web.yaml"
for _ in $(seq 300); do
  kubectl --kubeconfig "$KC" get nodes 2>/dev/null | grep -q ' Ready' && break; sleep 0.2
done
kubectl --kubeconfig "$KC" get nodes
kubectl --kubeconfig "$KC" apply -f "$WORK/web.yaml"
kubectl --kubeconfig "$KC" rollout status deployment/web --timeout=180s
kubectl --kubeconfig "$KC" get deployments,pods,services -o wide
CLUSTER_IP=$(kubectl --kubeconfig "$KC" get service web -o jsonpath='{.spec.clusterIP}')
echo "fetching http://$CLUSTER_IP/ through the Service:"
for _ in $(seq 100); do curl -fsS --max-time 2 "http://$CLUSTER_IP/" && break; sleep 0.2; done
curl -fsS --max-time 2 "http://$CLUSTER_IP/"
kubectl --kubeconfig "$KC" delete -f "$WORK/web.yaml" --wait=true

echo "== 7. man pages and bash completion (man hako-run; new shells complete hako)"
"$BIN/hako" man --dir /usr/local/share/man/man1
mkdir -p /usr/local/share/bash-completion/completions
"$BIN/hako" completion bash > /usr/local/share/bash-completion/completions/hako.tmp
mv /usr/local/share/bash-completion/completions/hako.tmp /usr/local/share/bash-completion/completions/hako
echo "== done"
