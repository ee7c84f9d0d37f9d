#!/usr/bin/env bash
# Pulling a ~200 MB image (4 layers: incompressible and compressible data, gzip and
# zstd) from a loopback docker-registry (Debian's distribution 2.8) into a fresh root:
#   hako pull            (fresh --root each run: download, verify, unpack into snapshots)
#   podman pull          (fresh --root/--runroot each run, overlay storage driver as bench/run)
#   skopeo copy          (to a fresh OCI layout directory: download + verify, no unpacking)
#   floor                (reading the same blob bytes and hashing them: openssl sha256, in parallel)
# Runs are interleaved (the order rotates each round); medians and ratios at the end.
# Only the pull is timed: removing the previous destination (setup/teardown) happens
# before the clock starts.
# Usage: bench/pull/run.sh            (RUNS=5 by default)
#        BIN=/path/to/release/dir (or HAKO=/path/to/hako) bench/pull/run.sh   # skip the build
# Needs: root (overlay), docker-registry, podman, skopeo, curl, python3, zstd. Rebuilds
# the release binaries (scripts/build-release.sh) first, so the figure is of this tree.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-5}
DOCKER_REGISTRY=${DOCKER_REGISTRY:-/usr/bin/docker-registry}

if [ -z "${HAKO:-}" ]; then
  if [ -z "${BIN:-}" ]; then
    echo "building hako (release)..." >&2
    BIN="$(scripts/build-release.sh)"
  fi
  HAKO=$BIN/hako
fi
for t in skopeo podman curl python3 zstd sha256sum "$DOCKER_REGISTRY"; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/hako-bench-pull.XXXXXX)
REG_PID=
PODMAN=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --storage-driver overlay)
# Empty podman's store: its images through podman, then the overlay driver's own mount
# of its home (containers/storage makes it a private bind mount), then the files.
# (Not `system reset`: it would also remove the host's podman networks.)
reset_podman() {
  [ -d "$WORK/podman" ] || return 0
  "${PODMAN[@]}" rmi -a -f >/dev/null 2>&1 || true
  findmnt -rn -o TARGET | grep "^$WORK/podman" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$WORK/podman"
}
cleanup() {
  [ -n "$REG_PID" ] && { kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; }
  reset_podman
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
now_ms() { date +%s%3N; }

# --- the image, as an OCI layout ---
# SHRINK=N divides every layer's size by N (a quick check that the script works; the
# figures are only comparable at SHRINK=1).
python3 - "$WORK/layout" "${SHRINK:-1}" <<'PY'
import gzip, hashlib, io, json, os, subprocess, sys, tarfile
out, shrink = sys.argv[1], int(sys.argv[2])
blobs = os.path.join(out, "blobs", "sha256"); os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d), "wb").write(data)
    return "sha256:" + d, len(data)
words = [b"container", b"image", b"layer", b"registry", b"hako", b"box", b"digest", b"manifest"]
def compressible(n, seed):
    # Text-like: words chosen pseudo-randomly, so it compresses well but not absurdly.
    import random
    r = random.Random(seed); parts = []; size = 0
    while size < n:
        w = words[r.randrange(len(words))] + (b"\n" if r.random() < 0.1 else b" ")
        parts.append(w); size += len(w)
    return b"".join(parts)[:n]
MB = 1 << 20
spec = [  # (name, bytes, kind, compression)
    ("random-a", 64 * MB, "random", "gzip"),
    ("random-b", 48 * MB, "random", "zstd"),
    ("text-a", 48 * MB, "text", "gzip"),
    ("text-b", 40 * MB, "text", "zstd"),
]
descs, diff_ids = [], []
for i, (name, size, kind, comp) in enumerate(spec):
    size //= shrink
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        d = tarfile.TarInfo(name); d.type = tarfile.DIRTYPE; d.mode = 0o755; d.mtime = 1700000000
        t.addfile(d)
        per = min(4 * MB, size)
        for j in range(size // per):
            payload = os.urandom(per) if kind == "random" else compressible(per, i * 1000 + j)
            info = tarfile.TarInfo(f"{name}/file{j:03}"); info.size = per; info.mtime = 1700000000
            t.addfile(info, io.BytesIO(payload))
    raw = buf.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    if comp == "gzip":
        blob = gzip.compress(raw, compresslevel=6); mt = "application/vnd.oci.image.layer.v1.tar+gzip"
    else:
        blob = subprocess.run(["zstd", "-q", "-c", "-3"], input=raw, stdout=subprocess.PIPE, check=True).stdout
        mt = "application/vnd.oci.image.layer.v1.tar+zstd"
    dg, n = put(blob)
    descs.append({"mediaType": mt, "digest": dg, "size": n})
    print(f"layer {name}: {size // MB} MB {kind}, {comp} blob {n / MB:.1f} MB", file=sys.stderr)
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
cfg = json.dumps({"architecture": arch, "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cd, cn = put(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                  "layers": descs}).encode()
md, mn = put(man)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md, "size": mn, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]},
          open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
open(os.path.join(out, "layers.txt"), "w").write("\n".join(d["digest"][7:] for d in descs) + "\n")
PY

# --- the registry ---
PORT=$(free_port)
cat >"$WORK/dr.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/dr-root
http:
  addr: 127.0.0.1:$PORT
YML
"$DOCKER_REGISTRY" serve "$WORK/dr.yml" >"$WORK/dr.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
IMAGE="127.0.0.1:$PORT/bench/pull:v1"
skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$WORK/layout:v1" "docker://$IMAGE"
BLOBS=()
while read -r hex; do
  BLOBS+=("$WORK/dr-root/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data")
done <"$WORK/layout/layers.txt"

# --- the contenders: each starts from nothing ---
# prep_X removes what the previous run left (untimed); run_X is the timed pull.
prep_hako() { rm -rf "$WORK/hako"; }
run_hako() {
  "$HAKO" --root "$WORK/hako" --log-level error pull -q "$IMAGE" >/dev/null
}
prep_podman() { reset_podman; }
run_podman() {
  "${PODMAN[@]}" pull -q --tls-verify=false "$IMAGE" >/dev/null
}
prep_skopeo() { rm -rf "$WORK/oci"; }
run_skopeo() {
  skopeo copy -q --src-tls-verify=false "docker://$IMAGE" "oci:$WORK/oci:v1" >/dev/null
}
prep_floor() { :; }
# openssl's sha256 uses the CPU's SHA extensions, as hako's does; coreutils' may not.
if command -v openssl >/dev/null; then HASH=(openssl dgst -sha256); else HASH=(sha256sum); fi
run_floor() {
  local pids=()
  for b in "${BLOBS[@]}"; do "${HASH[@]}" "$b" >/dev/null & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
}

# Warm-up (page cache, binaries), untimed.
for t in hako podman skopeo floor; do "prep_$t"; "run_$t"; done
echo "hako: $HAKO ($("$HAKO" --version)); podman $(podman --version | awk '{print $3}') on $("${PODMAN[@]}" info --format '{{.Store.GraphDriverName}}'); $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

RES="$WORK/results"; : >"$RES"
TOOLS=(hako podman skopeo floor)
for i in $(seq "$RUNS"); do
  for k in 0 1 2 3; do
    t=${TOOLS[$(( (i + k) % 4 ))]}
    "prep_$t"
    sync
    start=$(now_ms)
    "run_$t"
    echo "$t $(( $(now_ms) - start ))" >>"$RES"
  done
done

python3 - "$RES" "$RUNS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for t, ms in rows:
    by.setdefault(t, []).append(int(ms))
med = {t: statistics.median(v) for t, v in by.items()}
print(f"pull of a ~200 MB image (4 layers) from loopback docker-registry, {sys.argv[2]} interleaved runs")
print(f"{'':8} {'median':>9} {'min':>8} {'max':>8}   runs (ms)")
for t in ["hako", "podman", "skopeo", "floor"]:
    v = by[t]
    print(f"{t:8} {med[t]:>7.0f}ms {min(v):>6}ms {max(v):>6}ms   {' '.join(map(str, v))}")
print(f"podman / hako: {med['podman'] / med['hako']:.2f}x   (target >= 2x)")
print(f"skopeo / hako: {med['skopeo'] / med['hako']:.2f}x")
print(f"hako / floor:  {med['hako'] / med['floor']:.2f}x")
PY
