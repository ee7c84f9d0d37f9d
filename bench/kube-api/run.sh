#!/usr/bin/env bash
# hako's Kubernetes API server under load, on the SQLite and the etcd store side by side,
# with etcd's own put rate as the floor:
#   - CLIENTS concurrent clients (load.py, one keep-alive HTTPS connection each) creating,
#     getting, listing (limit 50, label selector) and merge-patching N ConfigMaps
#   - WATCHERS watchers from the starting resourceVersion, each checking it sees all 2N
#     events in increasing resourceVersion order
#   - throughput, p50/p99 per operation, API server peak RSS (VmHWM) after the run
#   - floor: the same clients putting N keys straight into etcd's JSON gateway
# The issue's figures are N=10000 CLIENTS=8 WATCHERS=100; the Python client is itself a
# bottleneck on a small machine (GIL): compare the stores, not absolute numbers.
# Usage: bench/kube-api/run.sh                 (N=10000 CLIENTS=8 WATCHERS=100 STORES="sqlite etcd")
#        HAKO=/path/to/hako N=2000 WATCHERS=20 bench/kube-api/run.sh
# Needs: python3, etcd (Debian's etcd-server).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
N=${N:-10000}
CLIENTS=${CLIENTS:-8}
WATCHERS=${WATCHERS:-100}
STORES=${STORES:-"sqlite etcd"}
if [ -z "${HAKO:-}" ]; then
  echo "building hako (release)..." >&2
  HAKO="$(scripts/build-release.sh)/hako"
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_etcd() {
  local c p; c=$(free_port); p=$(free_port)
  etcd --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$c" \
    --advertise-client-urls "http://127.0.0.1:$c" --listen-peer-urls "http://127.0.0.1:$p" \
    >"$work/etcd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$c/health" >/dev/null && break; sleep 0.1; done
  ETCD_URL="http://127.0.0.1:$c"
}

run_store() { # name, extra args...
  local name=$1; shift
  local root="$work/root-$name"
  "$HAKO" --root "$root" kube up --addr 127.0.0.1:0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!; pids+=($pid)
  for _ in $(seq 100); do grep -q listening "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  local result; result=$(python3 "$here/load.py" "$root/kubeconfig" "$N" "$CLIENTS" "$WATCHERS")
  local rss; rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  echo "{\"store\": \"$name\", \"apiserver_peak_rss_kib\": $rss, \"load\": $result}"
}

start_etcd
for store in $STORES; do
  case $store in
    sqlite) run_store sqlite ;;
    etcd) run_store etcd --store etcd --etcd-endpoints "$ETCD_URL" ;;
  esac
done
echo "{\"floor\": $(python3 "$here/load.py" - "$N" "$CLIENTS" 0 "$ETCD_URL")}"
