#!/usr/bin/env bash
# The Docker Engine API: `docker run --rm IMG true`, `docker run -d IMG true` +
# `docker wait` + `docker rm`, `docker ps`, `docker images` and
# `docker image inspect` through
# `hako system service` vs through `podman system service` (Debian podman
# 4.3), the same docker CLI for both, interleaved (each round runs all the
# cases in rotating order); medians, p90, min and the hako/podman ratios; then
# the idle resident memory of both services.
#
#   bench/dockerapi/run.sh                    # 30 rounds
#   ROUNDS=100 bench/dockerapi/run.sh
#   CASES="run-rm ps" bench/dockerapi/run.sh  # a subset (run-rm, run, ps, images, inspect)
#   BIN=/path/to/release/dir bench/dockerapi/run.sh   # skip the cargo build
#
# Needs root, busybox-static, podman, crun, python3 and the docker CLI
# (/usr/local/bin/docker). podman needs default_ulimits within this host's
# limits (scripts/install-deps.sh writes them, see bench/run). Like bench/run,
# the script runs itself in a private mount namespace without the cgroup2
# mount when the host has the hybrid layout crun 1.8 refuses.
set -euo pipefail

ROUNDS=${ROUNDS:-30}
DOCKER=${DOCKER:-/usr/local/bin/docker}
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

work=$(mktemp -d /run/hako-bench-dockerapi.XXXXXX)
HAKO=("$BIN/hako" --root "$work/hako")
PODMAN=(podman --root "$work/podman/root" --runroot "$work/podman/run" --storage-driver overlay)
hako_sock="$work/hako.sock"
podman_sock="$work/podman.sock"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
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

"${HAKO[@]}" system service --time 0 --socket "$hako_sock" 2>"$work/hako-service.log" &
pids+=($!); hako_pid=$!
"${PODMAN[@]}" system service --time 0 "unix://$podman_sock" 2>"$work/podman-service.log" &
pids+=($!); podman_pid=$!
for s in "$hako_sock" "$podman_sock"; do
  for _ in $(seq 100); do [ -S "$s" ] && break; sleep 0.1; done
  [ -S "$s" ] || { echo "run.sh: no service on $s" >&2; exit 1; }
done
# Warm both (first-run setup: default network, storage) before timing.
# run -d + wait + rm (the warm-up needs no attach).
for s in "$hako_sock" "$podman_sock"; do
  id=$(DOCKER_HOST="unix://$s" "$DOCKER" run -d localhost/bench/busybox:1 true)
  DOCKER_HOST="unix://$s" "$DOCKER" wait "$id" >/dev/null
  DOCKER_HOST="unix://$s" "$DOCKER" rm "$id" >/dev/null
done

echo "rounds: $ROUNDS   cases: ${CASES:-run-rm run ps images inspect}   client: $("$DOCKER" --version)"
echo "hako:   $BIN/hako ($("$BIN/hako" --version)) system service"
echo "podman: $(podman --version) system service"
echo "cgroup layout: $layout"

"$PYTHON" - "$ROUNDS" "$DOCKER" "$hako_sock" "$podman_sock" "$hako_pid" "$podman_pid" <<'EOF'
import os, sys, time
rounds, docker, hsock, psock = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
hpid, ppid = int(sys.argv[5]), int(sys.argv[6])
img = "localhost/bench/busybox:1"
devnull = os.open(os.devnull, os.O_RDWR)

def spawn(argv, sock, capture=False):
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
    if capture:
        r, w = os.pipe()
        acts = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, w, 1)]
    else:
        acts = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)]
    pid = os.posix_spawn(argv[0], argv, env, file_actions=acts)
    out = b""
    if capture:
        os.close(w)
        while True:
            b = os.read(r, 4096)
            if not b:
                break
            out += b
        os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode().strip()

def run_wait_rm(sock):
    # docker run -d, wait, rm: the lifecycle without an attach.
    code, cid = spawn([docker, "run", "-d", img, "true"], sock, capture=True)
    if code != 0:
        return code
    for argv in ([docker, "wait", cid], [docker, "rm", cid]):
        code, _ = spawn(argv, sock)
        if code != 0:
            return code
    return 0

def one(argv):
    return lambda sock: spawn(argv, sock)[0]

steps = {
    "run": run_wait_rm,
    "run-rm": one([docker, "run", "--rm", img, "true"]),
    "ps": one([docker, "ps"]),
    "images": one([docker, "images"]),
    "inspect": one([docker, "image", "inspect", img]),
}
whats = os.environ.get("CASES", "run-rm run ps images inspect").split()
cases = [(f"{who} {w}", steps[w], sock) for w in whats for who, sock in (("hako", hsock), ("podman", psock))]
times = {n: [] for n, _, _ in cases}
for r in range(rounds):
    k = r % len(cases)
    for name, step, sock in cases[k:] + cases[:k]:
        t0 = time.perf_counter_ns()
        code = step(sock)
        times[name].append((time.perf_counter_ns() - t0) / 1e6)
        if code != 0:
            sys.exit(f"{name}: exited {code}")

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]

print(f"\n{'case':<20} {'median ms':>10} {'p90 ms':>8} {'min ms':>8}")
for name, _, _ in cases:
    t = times[name]
    print(f"{name:<20} {pct(t, 50):>10.1f} {pct(t, 90):>8.1f} {min(t):>8.1f}")
for what in whats:
    target = "0.3" if what.startswith("run") else "-"
    h, p = pct(times[f"hako {what}"], 50), pct(times[f"podman {what}"], 50)
    print(f"hako/podman ({what}): {h / p:.2f}   (target <= {target})")

def rss_kib(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
    return 0

time.sleep(2)  # idle: no request in flight
h, p = rss_kib(hpid), rss_kib(ppid)
print(f"\nidle RSS: hako system service {h} KiB, podman system service {p} KiB, "
      f"hako/podman {h / max(p, 1):.2f}   (target <= 0.5)")
EOF
