#!/usr/bin/env bash
# The CRI pod lifecycle (issue 15's benchmark): PODS times RunPodSandbox +
# CreateContainer + StartContainer (busybox) + StopContainer + StopPodSandbox +
# RemovePodSandbox, driven by crictl, against `hako cri serve` and against
# Debian's containerd 1.6 (its CRI plugin, runc), in one run, alternating pod
# by pod; then each server's resident memory at idle.
#
#   CRICTL=/path/to/crictl bench/cri/run.sh       # 20 pods
#   PODS=50 CRICTL=... bench/cri/run.sh
#   BIN=/path/to/target/release CRICTL=... bench/cri/run.sh   # skip the cargo build
#
# Needs root, busybox-static, containerd, runc, the CNI plugins in /usr/lib/cni,
# python3, and crictl from cri-tools (not packaged by Debian: build it from
# kubernetes-sigs/cri-tools outside this repository and point CRICTL at it).
# Both servers get temp roots under /run, their own CNI bridge (the same
# configuration but for the names and subnets), and the same busybox image
# from a `hako registry serve` on 127.0.0.1. Everything is removed at exit.
set -euo pipefail

PODS=${PODS:-20}
CRICTL=${CRICTL:?set CRICTL to a crictl binary (cri-tools)}
here=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${BIN:-}" ]; then
    (cd "$here" && cargo build -q -p hako-cli -p hako-monitor -p hako-runtime --bins)
    BIN=${CARGO_TARGET_DIR:-$here/target}/debug
fi
hako=$BIN/hako
T=$(mktemp -d /run/hako-bench-cri.XXXXXX)
pids=()
cleanup() {
    set +e
    for s in "$T/hako.sock" "$T/ctd.sock"; do
        [ -S "$s" ] || continue
        for p in $("$CRICTL" -r "unix://$s" pods -q 2>/dev/null); do
            "$CRICTL" -r "unix://$s" stopp "$p" >/dev/null 2>&1
            "$CRICTL" -r "unix://$s" rmp "$p" >/dev/null 2>&1
        done
    done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    ip link delete hbench0 2>/dev/null; ip link delete cbench0 2>/dev/null
    grep " $T" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

# The image: Debian's busybox-static, pushed to a loopback registry.
mkdir -p "$T/rootfs/bin" "$T/rootfs/etc" "$T/rootfs/tmp"
cp /bin/busybox "$T/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$T/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$T/rootfs/etc/passwd"
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$hako" --root "$T/reg" registry serve --addr 127.0.0.1:0 > "$T/reg.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$T/reg.out" && break; sleep 0.1; done
reg=$(awk '{print $NF; exit}' "$T/reg.out")
img=$reg/bench/busybox:1
pause=$reg/bench/pause:1
"$hako" --root "$T/pusher" import "$T/busybox.tar" "$img" >/dev/null
"$hako" --root "$T/pusher" push -q "$img" >/dev/null
# containerd needs a pause image: the same busybox sleeping.
mkdir -p "$T/pausectx"
printf 'FROM %s\nCMD ["sleep", "2147483647"]\n' "$img" > "$T/pausectx/Dockerfile"
"$hako" --root "$T/pusher" build -q -t "$pause" "$T/pausectx" >/dev/null
"$hako" --root "$T/pusher" push -q "$pause" >/dev/null

conflist() { # NAME BRIDGE SUBNET
    cat <<J
{"cniVersion": "1.0.0", "name": "$1", "plugins": [
  {"type": "bridge", "bridge": "$2", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$3"}]], "dataDir": "$T/ipam-$1"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
J
}
mkdir -p "$T/hako-net.d" "$T/ctd-net.d"
conflist hbench hbench0 10.233.0.0/24 > "$T/hako-net.d/10-bench.conflist"
conflist cbench cbench0 10.234.0.0/24 > "$T/ctd-net.d/10-bench.conflist"

printf 'cni_conf_dir = "%s"\n' "$T/hako-net.d" > "$T/hako.toml"
"$hako" --root "$T/hako" cri serve --socket "$T/hako.sock" --config "$T/hako.toml" 2>"$T/hako.log" &
hako_pid=$!
pids+=($hako_pid)

cat > "$T/ctd.toml" <<C
version = 2
root = "$T/ctd/root"
state = "$T/ctd/state"
[grpc]
  address = "$T/ctd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$T/ctd-net.d"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$reg"]
    endpoint = ["http://$reg"]
C
containerd --config "$T/ctd.toml" 2>"$T/ctd.log" &
ctd_pid=$!
pids+=($ctd_pid)
for s in hako ctd; do
    for _ in $(seq 200); do [ -S "$T/$s.sock" ] && break; sleep 0.1; done
    "$CRICTL" -r "unix://$T/$s.sock" -i "unix://$T/$s.sock" pull "$img" >/dev/null
done
"$CRICTL" -r "unix://$T/ctd.sock" -i "unix://$T/ctd.sock" pull "$pause" >/dev/null

# One pod's lifecycle on socket $1 (pod number $2); prints milliseconds.
pod() {
    local c=("$CRICTL" -r "unix://$1" -i "unix://$1" -t 60s)
    local name=bench-$2-$RANDOM
    printf '{"metadata":{"name":"%s","namespace":"bench","uid":"%s","attempt":0},"log_directory":"%s/logs/%s","linux":{}}' \
        "$name" "$name" "$T" "$name" > "$T/pod.json"
    # As kubelet sends it: a PID namespace of the container's own (unset
    # is the proto's zero value, POD, to both servers), and a process that
    # ends on SIGTERM, so that StopContainer
    # measures the runtimes and not the stop timeout.
    printf '{"metadata":{"name":"c"},"image":{"image":"%s"},"command":["sh","-c","trap \\"exit 0\\" TERM; sleep 1000 & wait"],"log_path":"c.log","linux":{"security_context":{"namespace_options":{"pid":1}}}}' \
        "$img" > "$T/ctr.json"
    local t0 t1 p ctr steps=() s
    t0=$(date +%s%N)
    s=$t0
    step() { local n; n=$(date +%s%N); steps+=("$1=$(( (n - s) / 1000000 ))"); s=$n; }
    p=$("${c[@]}" runp "$T/pod.json"); step runp
    ctr=$("${c[@]}" create "$p" "$T/ctr.json" "$T/pod.json"); step create
    "${c[@]}" start "$ctr" >/dev/null; step start
    "${c[@]}" stop -t 2 "$ctr" >/dev/null; step stop
    "${c[@]}" stopp "$p" >/dev/null; step stopp
    "${c[@]}" rmp "$p" >/dev/null; step rmp
    t1=$(date +%s%N)
    # STEPS=1: each step's milliseconds on stderr.
    [ -z "${STEPS:-}" ] || echo "$(basename "$1" .sock): ${steps[*]}" >&2
    echo $(( (t1 - t0) / 1000000 ))
}

# Warm both once, then alternate.
pod "$T/hako.sock" 0 >/dev/null
pod "$T/ctd.sock" 0 >/dev/null
: > "$T/hako.ms"; : > "$T/ctd.ms"
for i in $(seq "$PODS"); do
    if [ $((i % 2)) = 0 ]; then
        pod "$T/hako.sock" "$i" >> "$T/hako.ms"; pod "$T/ctd.sock" "$i" >> "$T/ctd.ms"
    else
        pod "$T/ctd.sock" "$i" >> "$T/ctd.ms"; pod "$T/hako.sock" "$i" >> "$T/hako.ms"
    fi
done
sleep 2
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# containerd's CRI is in its own process; hako's is `hako cri serve` (the
# monitors are per container, none are left at idle).
python3 - "$T/hako.ms" "$T/ctd.ms" "$(rss $hako_pid)" "$(rss $ctd_pid)" "$PODS" "$BIN" <<'P'
import statistics, sys
h = [int(x) for x in open(sys.argv[1])]
c = [int(x) for x in open(sys.argv[2])]
hr, cr, n, b = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
print(f"{n} pods each (RunPodSandbox+Create+Start+Stop+StopPodSandbox+RemovePodSandbox via crictl), hako binaries from {b}")
print(f"{'':24}{'hako':>10}{'containerd':>12}{'ratio':>8}")
for name, f in (("median ms per pod", statistics.median), ("mean ms per pod", statistics.mean), ("min ms per pod", min)):
    print(f"{name:24}{f(h):>10.1f}{f(c):>12.1f}{f(h)/f(c):>8.2f}")
print(f"{'idle RSS KiB':24}{hr:>10}{cr:>12}{hr/cr:>8.2f}")
P
