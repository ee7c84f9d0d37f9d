#!/usr/bin/env bash
# `hako run --rm IMG true` vs `podman run --rm IMG true` (Debian podman), with
# --network none and with each engine's default bridge network, interleaved
# (each round runs all four, rotating the order); then 50 detached `sleep`
# containers per engine: total start time and memory per container (the
# supervisor process: hako-monitor vs conmon).
#
#   bench/run/run.sh              # 30 rounds
#   ROUNDS=100 DETACHED=50 bench/run/run.sh
#   BIN=/path/to/release/dir bench/run/run.sh   # skip the cargo build
#
# Needs root, busybox-static, podman, crun, python3. Debian's crun 1.8 (podman's
# default runtime) refuses this host's hybrid cgroup layout, so the script runs
# itself in a private mount namespace without the cgroup2 mount (both engines
# then see the same pure v1 layout; the host is untouched).
set -euo pipefail

ROUNDS=${ROUNDS:-30}
DETACHED=${DETACHED:-50}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}

if [ "$(id -u)" != 0 ]; then
  echo "run.sh: must run as root" >&2
  exit 1
fi
if [ -z "${BIN:-}" ]; then
  echo "building hako (release)..." >&2
  BIN="$("$repo/scripts/build-release.sh")"
fi
if [ -z "${HAKO_BENCH_NS:-}" ] && mountpoint -q /sys/fs/cgroup/unified; then
  HAKO_BENCH_NS=1 BIN="$BIN" exec unshare --mount --propagation private "$0" "$@"
fi
layout="host (as mounted)"
if [ -n "${HAKO_BENCH_NS:-}" ]; then
  umount -l /sys/fs/cgroup/unified
  layout="cgroup v1 only (unified hierarchy hidden in a private mount namespace)"
fi

work=$(mktemp -d /run/hako-bench-run.XXXXXX)
HAKO=("$BIN/hako" --root "$work/hako")
PODMAN=(podman --root "$work/podman/root" --runroot "$work/podman/run" --storage-driver overlay)
cleanup() {
  "${HAKO[@]}" ps -aq --no-trunc 2>/dev/null | xargs -r "${HAKO[@]}" rm -f >/dev/null 2>&1 || true
  "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1 || true
  br=$("${HAKO[@]}" network inspect bridge 2>/dev/null | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["Options"]["com.docker.network.bridge.name"])' 2>/dev/null || true)
  [ -n "$br" ] && ip link delete dev "$br" 2>/dev/null || true
  umount -R "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,proc,sys,dev,etc,tmp}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
tar -C "$rootfs" -cf "$work/busybox.tar" .
"${HAKO[@]}" import "$work/busybox.tar" localhost/bench/busybox:1 >/dev/null
"${PODMAN[@]}" import -q "$work/busybox.tar" localhost/bench/busybox:1 >/dev/null
# Warm both (first-run setup: default network, storage) before timing.
"${HAKO[@]}" run --rm localhost/bench/busybox:1 true
"${PODMAN[@]}" run --rm localhost/bench/busybox:1 true

echo "rounds: $ROUNDS   detached: $DETACHED   cgroup layout: $layout"
echo "hako:   $BIN/hako ($("$BIN/hako" --version)), runtime hako-runtime"
echo "podman: $(podman --version), runtime $("${PODMAN[@]}" info --format '{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Version}}' | head -1 | cut -c1-40), network backend $("${PODMAN[@]}" info --format '{{.Host.NetworkBackend}}')"

"$PYTHON" - "$ROUNDS" "$DETACHED" "$work" <<EOF
import os, subprocess, sys, time
rounds, detached, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
hako = "$BIN/hako --root $work/hako".split()
podman = "podman --root $work/podman/root --runroot $work/podman/run --storage-driver overlay".split()
img = "localhost/bench/busybox:1"
devnull = os.open(os.devnull, os.O_RDWR)

def spawn(argv):
    acts = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)]
    exe = argv[0] if "/" in argv[0] else subprocess.run(["sh", "-c", f"command -v {argv[0]}"],
                                                        capture_output=True, text=True).stdout.strip()
    pid = os.posix_spawn(exe, argv, os.environ, file_actions=acts)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)

cases = [
    ("hako none", hako + ["run", "--rm", "--network", "none", img, "true"]),
    ("podman none", podman + ["run", "--rm", "--network", "none", img, "true"]),
    ("hako bridge", hako + ["run", "--rm", img, "true"]),
    ("podman bridge", podman + ["run", "--rm", img, "true"]),
]
times = {n: [] for n, _ in cases}
for r in range(rounds):
    k = r % len(cases)
    for name, argv in cases[k:] + cases[:k]:
        t0 = time.perf_counter_ns()
        code = spawn(argv)
        times[name].append((time.perf_counter_ns() - t0) / 1e6)
        if code != 0:
            sys.exit(f"{name}: exited {code}")

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]

print(f"\n{'run --rm true':<14} {'median ms':>10} {'p90 ms':>8} {'min ms':>8}")
for name, _ in cases:
    t = times[name]
    print(f"{name:<14} {pct(t, 50):>10.1f} {pct(t, 90):>8.1f} {min(t):>8.1f}")
for mode in ("none", "bridge"):
    h, p = pct(times[f"hako {mode}"], 50), pct(times[f"podman {mode}"], 50)
    print(f"hako/podman ({mode}): {h / p:.2f}   (target <= 0.25)")

def rss_kib(pid):
    try:
        for l in open(f"/proc/{pid}/status"):
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    except OSError:
        pass
    return 0

def procs(name):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if open(f"/proc/{p}/comm").read().strip() == name:
                    out.append(int(p))
            except OSError:
                pass
    return out

print(f"\n{detached} detached sleep containers (--network none), sequential starts")
for name, base, sup in (("hako", hako, "hako-monitor"), ("podman", podman, "conmon")):
    before = set(procs(sup))
    t0 = time.perf_counter_ns()
    for i in range(detached):
        code = spawn(base + ["run", "-d", "--network", "none", "--name", f"d{i}", img, "sleep", "1000"])
        if code != 0:
            sys.exit(f"{name} run -d exited {code}")
    total = (time.perf_counter_ns() - t0) / 1e6
    mine = [p for p in procs(sup) if p not in before]
    rss = sum(rss_kib(p) for p in mine)
    print(f"{name:<7} total {total:8.0f} ms   {total / detached:6.1f} ms/container   "
          f"{sup}: {len(mine)} processes, {rss / max(len(mine), 1):6.0f} KiB RSS each")
    times[name + " detached"] = total
    spawn(base + ["rm", "-f"] + [f"d{i}" for i in range(detached)])
h, p = times["hako detached"], times["podman detached"]
print(f"hako/podman ({detached} detached starts): {h / p:.2f}")
EOF
