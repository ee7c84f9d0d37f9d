#!/usr/bin/env bash
# hako's registry against Debian's docker-registry (distribution 2.8), both on loopback
# with filesystem storage, driven by the same clients in the same run, interleaved:
#   - skopeo push and pull of a ~100 MB multi-layer OCI image (medians of RUNS runs)
#   - 16 parallel pulls of a 100 MB blob (par_pull.py: one process, 16 connections, the
#     bytes discarded in the kernel) with each server's CPU time over them, and the same
#     pulls by 16 curl processes (which copy every byte: end to end on a shared machine)
#   - 16 parallel pushes of 8 MB blobs (par_push.py: one process, 16 connections, digests
#     computed beforehand)
#   - the same parallel pulls from ceiling.py, a bare sendfile loop: the kernel's share,
#     which bounds what any server can reach on this machine
#   - manifest GETs per second (curl, 16 in flight)
#   - peak RSS of each server (VmHWM) over the whole run
# docker-registry runs with Debian's stock settings (/etc/docker/registry/config.yml:
# `cache: blobdescriptor: inmemory`, delete enabled, its headers and storage health check)
# less its htpasswd auth, on its own port and root; both servers log errors only.
# One untimed warm-up round of everything comes first.
# Usage: bench/registry/run.sh            (RUNS=5 SIZE_MB=100 by default)
#        BIN=/path/to/release/dir (or HAKO=/path/to/hako) bench/registry/run.sh   # skip the build
# Needs: skopeo, docker-registry, curl, python3. Rebuilds the release binaries
# (scripts/build-release.sh) first, so the figures are of this tree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

RUNS=${RUNS:-5}
SIZE_MB=${SIZE_MB:-100}
LAYERS=${LAYERS:-4}
PAR=${PAR:-16}
MANIFEST_GETS=${MANIFEST_GETS:-2000}
DOCKER_REGISTRY=${DOCKER_REGISTRY:-/usr/bin/docker-registry}
STOCK_CONFIG=/etc/docker/registry/config.yml

if [ -z "${HAKO:-}" ]; then
  if [ -z "${BIN:-}" ]; then
    echo "building hako (release)..." >&2
    BIN="$(scripts/build-release.sh)"
  fi
  HAKO=$BIN/hako
fi
for t in skopeo curl python3 "$DOCKER_REGISTRY"; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/hako-bench-registry.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now_ms() { date +%s%3N; }
# User + system CPU time of a process so far, in ms.
server_cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"; }

# --- the test image: LAYERS gzipped tar layers of random bytes, SIZE_MB in total ---
# A fresh image per run: skopeo remembers which blobs a registry already has (its blob
# info cache) and would mount them instead of uploading, so reused layers time nothing.
make_image() {
python3 - "$1" "$SIZE_MB" "$LAYERS" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out, size_mb, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)
descs, diff_ids = [], []
per = size_mb * 1024 * 1024 // layers
for i in range(layers):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        payload = os.urandom(per)
        info = tarfile.TarInfo(f"layer{i}.bin"); info.size = len(payload); info.mtime = 0
        t.addfile(info, io.BytesIO(payload))
    raw = buf.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    # Already compressed, so skopeo copies the layers as they are instead of gzipping them
    # on the way (which would time the client's compressor, not the registry).
    d, n = put(gzip.compress(raw, compresslevel=1))
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cd, cn = put(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                  "layers": descs}).encode()
md, mn = put(man)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md, "size": mn, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]},
          open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
}

# --- the servers ---
HAKO_PORT=$(free_port)
"$HAKO" --root "$WORK/hako-root" --log-level error registry serve --addr "127.0.0.1:$HAKO_PORT" \
  >"$WORK/hako.log" 2>&1 &
HAKO_PID=$!; PIDS+=("$HAKO_PID")

DR_PORT=$(free_port)
# Debian's stock configuration, as the package installs it (checked, so a changed
# package is noticed rather than benchmarked with settings nobody runs).
if [ -f "$STOCK_CONFIG" ] && ! grep -A1 '^  cache:' "$STOCK_CONFIG" | grep -q 'blobdescriptor: inmemory'; then
  echo "warning: $STOCK_CONFIG no longer has cache: blobdescriptor: inmemory" >&2
fi
cat >"$WORK/dr.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $WORK/dr-root
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$DR_PORT
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
YML
"$DOCKER_REGISTRY" serve "$WORK/dr.yml" >"$WORK/dr.log" 2>&1 &
DR_PID=$!; PIDS+=("$DR_PID")

for port in "$HAKO_PORT" "$DR_PORT"; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$port/v2/" >/dev/null || { echo "server on $port did not start" >&2; cat "$WORK"/*.log >&2; exit 1; }
done

declare -A PORT=([hako]=$HAKO_PORT [dr]=$DR_PORT)
declare -A PID=([hako]=$HAKO_PID [dr]=$DR_PID)
RES="$WORK/results"; : >"$RES"
# metric server value; round 0 is the warm-up and is not recorded.
record() { [ "$i" -eq 0 ] || echo "$1 $2 $3" >>"$RES"; }

# 8 MB blobs for the parallel pushes, distinct per run and per server.
mkblob() { head -c $((8 * 1024 * 1024)) /dev/urandom >"$1"; }

# One BIG_MB blob in each registry for the parallel pulls (the issue's "100 MB blob").
BIG_MB=${BIG_MB:-100}
head -c $((BIG_MB * 1024 * 1024)) /dev/urandom >"$WORK/big"
BIG="sha256:$(sha256sum "$WORK/big" | cut -d' ' -f1)"

push_blob() { # port repo file
  local loc d
  d="sha256:$(sha256sum "$3" | cut -d' ' -f1)"
  loc=$(curl -sf -X POST -D - -o /dev/null "http://127.0.0.1:$1/v2/$2/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case "$loc" in http*) ;; *) loc="http://127.0.0.1:$1$loc" ;; esac
  case "$loc" in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$3" -o /dev/null "$loc"
}

echo "image: $LAYERS layers, $SIZE_MB MB; 1 warm-up + $RUNS interleaved runs" >&2
echo "hako: $HAKO ($("$HAKO" --version)); $("$DOCKER_REGISTRY" --version 2>&1 | head -1); $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for s in hako dr; do
  push_blob "${PORT[$s]}" bench/big "$WORK/big"
  # The timed pulls only count bytes; check once, untimed, that they are the right ones.
  got="sha256:$(curl -sf "http://127.0.0.1:${PORT[$s]}/v2/bench/big/blobs/$BIG" | sha256sum | cut -d' ' -f1)"
  [ "$got" = "$BIG" ] || { echo "$s served the wrong bytes for $BIG: $got" >&2; exit 1; }
done
# The machine's ceiling for the parallel pulls (ceiling.py says what it is).
CEIL_PORT=$(free_port)
python3 "$here/ceiling.py" "$CEIL_PORT" "$WORK/big" &
PIDS+=($!)
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$CEIL_PORT/" && break; sleep 0.1; done

for i in $(seq 0 "$RUNS"); do
  # Alternate who goes first so neither server always runs on a warmer page cache.
  IMG="$WORK/image$i"
  make_image "$IMG"
  if [ $((i % 2)) -eq 1 ]; then order="hako dr"; else order="dr hako"; fi
  for s in $order; do
    p=${PORT[$s]}
    t0=$(now_ms)
    skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$IMG:v1" "docker://127.0.0.1:$p/bench/push$i:v1" >/dev/null
    t1=$(now_ms); record push "$s" $((t1 - t0))

    rm -rf "$WORK/pull"
    t0=$(now_ms)
    skopeo --insecure-policy copy -q --src-tls-verify=false "docker://127.0.0.1:$p/bench/push$i:v1" "dir:$WORK/pull" >/dev/null
    t1=$(now_ms); record pull "$s" $((t1 - t0))

    # 16 parallel pulls of the big blob from one process whose client discards the bytes
    # in the kernel (par_pull.py says why), with the server's CPU time over them; then
    # the same with 16 curl processes that copy every byte, as an end-to-end figure.
    cpu0=$(server_cpu_ms "${PID[$s]}")
    ms=$(python3 "$here/par_pull.py" "$p" "/v2/bench/big/blobs/$BIG" "$PAR") ||
      { echo "parallel pull failed on $s" >&2; exit 1; }
    record par_pull "$s" "$ms"
    record par_pull_cpu "$s" $(( $(server_cpu_ms "${PID[$s]}") - cpu0 ))

    t0=$(now_ms)
    jobs_=()
    for _ in $(seq "$PAR"); do
      curl -sf -o /dev/null "http://127.0.0.1:$p/v2/bench/big/blobs/$BIG" &
      jobs_+=($!)
    done
    wait_ok=0
    for j in "${jobs_[@]}"; do wait "$j" || wait_ok=1; done
    [ $wait_ok -eq 0 ] || { echo "parallel curl pull failed on $s" >&2; exit 1; }
    t1=$(now_ms); record par_pull_curl "$s" $((t1 - t0))

    mkdir -p "$WORK/blobs"
    for k in $(seq "$PAR"); do mkblob "$WORK/blobs/$k"; done
    # One client process with PAR connections, as docker or podman pushes layers,
    # the digests known beforehand: the timing is the servers', not sha256sum's or
    # 3 * PAR process start-ups'. Prints its own wall time in ms.
    ms=$(python3 "$here/par_push.py" "$p" "bench/par$i" "$WORK/blobs" "$PAR") ||
      { echo "parallel push failed on $s" >&2; exit 1; }
    record par_push "$s" "$ms"

    urls="$WORK/urls"
    : >"$urls"
    for _ in $(seq "$MANIFEST_GETS"); do echo "url = \"http://127.0.0.1:$p/v2/bench/push$i/manifests/v1\"" >>"$urls"; echo 'output = "/dev/null"' >>"$urls"; done
    t0=$(now_ms)
    curl -sf --no-progress-meter -Z --parallel-max 16 -H 'Accept: application/vnd.oci.image.manifest.v1+json' -K "$urls"
    t1=$(now_ms); record manifest_gets "$s" $((t1 - t0))
  done
  ms=$(python3 "$here/par_pull.py" "$CEIL_PORT" / "$PAR") || { echo "parallel pull from the ceiling server failed" >&2; exit 1; }
  record par_pull ceiling "$ms"
  rm -rf "$IMG"
  if [ "$i" -eq 0 ]; then echo "warm-up done" >&2; else echo "run $i done" >&2; fi
done

for s in hako dr; do
  record peak_rss_kb "$s" "$(awk '/VmHWM/ {print $2}' "/proc/${PID[$s]}/status")"
done

python3 - "$RES" "$SIZE_MB" "$PAR" "$MANIFEST_GETS" "$BIG_MB" <<'PY'
import statistics, sys
res, size_mb, par, gets, big_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
data = {}
for line in open(res):
    m, s, v = line.split()
    data.setdefault(m, {}).setdefault(s, []).append(int(v))
print(f"{'metric':<34}{'hako':>14}{'docker-registry':>18}{'docker-registry/hako':>22}")
def row(name, h, d, unit):
    ratio = f"{d / h:>20.2f}x" if h else f"{'n/a':>21}"   # tiny test runs can measure 0 ms
    print(f"{name:<34}{h:>12.1f} {unit:<2}{d:>15.1f} {unit:<2}{ratio}")
for m, label in [("push", "skopeo push (ms, median)"), ("pull", "skopeo pull (ms, median)"),
                 ("par_pull", f"{par} parallel {big_mb}MB blob pulls (ms)"),
                 ("par_pull_cpu", "  server CPU over them (ms)"),
                 ("par_pull_curl", f"  the same with {par} curls (ms)"),
                 ("par_push", f"{par} parallel 8MB pushes (ms)")]:
    row(label, statistics.median(data[m]["hako"]), statistics.median(data[m]["dr"]), "ms")
h = gets / statistics.median(data["manifest_gets"]["hako"]) * 1000
d = gets / statistics.median(data["manifest_gets"]["dr"]) * 1000
print(f"{'manifest GETs per second':<34}{h:>12.0f}   {d:>15.0f}   {h / d:>20.2f}x (hako/docker-registry)")
hr, dr = data["peak_rss_kb"]["hako"][0] / 1024, data["peak_rss_kb"]["dr"][0] / 1024
print(f"{'peak RSS (MiB)':<34}{hr:>12.1f}   {dr:>15.1f}   {dr / hr:>20.2f}x")
c = statistics.median(data["par_pull"]["ceiling"])
h, d = statistics.median(data["par_pull"]["hako"]), statistics.median(data["par_pull"]["dr"])
print(f"parallel pulls from a bare sendfile loop (ceiling.py): {c:.0f} ms, so no server can be more than "
      f"{d / c:.2f}x faster than docker-registry here; hako takes {h / c:.2f}x the ceiling's time")
for m in ["push", "pull"]:
    print(f"raw {m} ms: hako={data[m]['hako']} docker-registry={data[m]['dr']}")
PY
