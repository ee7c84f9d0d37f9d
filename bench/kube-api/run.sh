#!/usr/bin/env bash
# hako's Kubernetes API server under load, on the SQLite and the etcd store side by side,
# with etcd's own put/get figures as the floor. The load is loadgen/ (Rust, tokio):
#   - CLIENTS concurrent clients (one HTTPS connection each) creating, getting, listing
#     (limit 50, label selector) and merge-patching N ConfigMaps on an open-loop schedule
#     of RATE writes/s (2*RATE requests/s; latency counts from each request's scheduled
#     time, so queueing behind a slow server counts; RATE=0: as fast as it answers)
#   - WATCHERS watchers (one connection each) from the starting resourceVersion, each
#     checking it sees all 2N events in increasing resourceVersion order
#   - the API server's peak RSS (VmHWM) and its RSS after the run (10 000 objects stored)
#   - floor: the same requests at the same rate straight into etcd's JSON gateway, and
#     once more as fast as etcd answers (RATE=0)
# Usage: bench/kube-api/run.sh      (N=10000 CLIENTS=8 WATCHERS=100 RATE=500 STORES="sqlite etcd")
#        HAKO=/path/to/hako LOADGEN=/path/to/kube-api-loadgen N=2000 RATE=200 bench/kube-api/run.sh
# Needs: etcd (Debian's etcd-server).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
N=${N:-10000}
CLIENTS=${CLIENTS:-8}
WATCHERS=${WATCHERS:-100}
RATE=${RATE:-500}
STORES=${STORES:-"sqlite etcd"}
if [ -z "${HAKO:-}" ]; then
  echo "building hako (release)..." >&2
  HAKO="$(scripts/build-release.sh)/hako"
fi
if [ -z "${LOADGEN:-}" ]; then
  echo "building the load generator (release)..." >&2
  cargo build --release -q -p kube-api-loadgen
  LOADGEN="${CARGO_TARGET_DIR:-$PWD/target}/release/kube-api-loadgen"
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

kib() { awk -v f="$1" '$1 == f":" {print $2}' "/proc/$2/status"; }

run_store() { # name, extra args...
  local name=$1; shift
  local root="$work/root-$name"
  # The API server alone: no node, scheduler or controllers adding their own load.
  "$HAKO" --root "$root" kube up --addr 127.0.0.1:0 --disable-agent --disable-scheduler \
    --disable-controllers --disable-proxy "$@" >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!; pids+=($pid)
  for _ in $(seq 300); do grep -q listening "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  local result; result=$("$LOADGEN" api "$root/kubeconfig" --n "$N" --clients "$CLIENTS" \
    --watchers "$WATCHERS" --rate "$RATE")
  echo "{\"store\": \"$name\", \"apiserver_peak_rss_kib\": $(kib VmHWM $pid), \"apiserver_rss_after_kib\": $(kib VmRSS $pid), \"load\": $result}"
}

start_etcd
for store in $STORES; do
  case $store in
    sqlite) run_store sqlite ;;
    etcd) run_store etcd --store etcd --etcd-endpoints "$ETCD_URL" ;;
  esac
done
echo "{\"floor\": \"etcd at the same rate\", \"load\": $("$LOADGEN" etcd "$ETCD_URL" --n "$N" --clients "$CLIENTS" --rate "$RATE")}"
echo "{\"floor\": \"etcd as fast as it answers\", \"load\": $("$LOADGEN" etcd "$ETCD_URL" --n "$N" --clients "$CLIENTS" --rate 0)}"
