#!/usr/bin/env bash
# Container start latency: `run` + `delete` of /bin/true in a busybox bundle,
# hako-runtime vs crun vs runc, interleaved (each round runs every runtime once,
# in rotating order), with per-runtime median, p90, ratios and peak RSS.
#
#   bench/runtime-start/run.sh            # 50 rounds
#   ROUNDS=200 bench/runtime-start/run.sh
#   HAKO=/path/to/hako-runtime bench/runtime-start/run.sh   # skip the build
#
# Needs root, busybox-static, crun, runc, python3. See README.md for what it
# does to the host's cgroup layout (nothing, or a v1 hugetlb mount it undoes).
set -euo pipefail

ROUNDS=${ROUNDS:-50}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [ "$(id -u)" != 0 ]; then
  echo "run.sh: must run as root (containers need namespaces and cgroups)" >&2
  exit 1
fi

if [ -z "${HAKO:-}" ]; then
  echo "building hako-runtime (release, as shipped: scripts/build-release.sh)..." >&2
  HAKO="$("$repo/scripts/build-release.sh")/hako-runtime"
fi
CRUN=${CRUN:-$(command -v crun)}
RUNC=${RUNC:-$(command -v runc)}
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}

# State roots on tmpfs (as /run is in production), bundle beside them.
work=$(mktemp -d /run/hako-bench.XXXXXX)
mounted_hugetlb=""
cleanup() {
  for rt in "$HAKO" "$CRUN" "$RUNC"; do
    name=$(basename "$rt")
    for d in "$work/state-$name"/*/; do
      [ -d "$d" ] && "$rt" --root "$work/state-$name" delete --force "$(basename "$d")" 2>/dev/null || true
    done
  done
  rm -rf "$work"
  if [ -n "$mounted_hugetlb" ]; then
    umount "$mounted_hugetlb" && rmdir "$mounted_hugetlb" || echo "run.sh: could not undo the hugetlb mount at $mounted_hugetlb" >&2
  fi
}
trap cleanup EXIT

bundle="$work/bundle"
mkdir -p "$bundle/rootfs"/{bin,proc,sys,dev,etc,tmp}
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$bundle/rootfs/bin/$applet"
done
# The same config.json for all three: runc's default spec, running /bin/true.
(cd "$bundle" && "$RUNC" spec)
"$PYTHON" - "$bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(p, "w"), indent=2)
EOF

# crun 1.8 refuses the hybrid layout while any controller sits on the cgroup2
# hierarchy. If hugetlb is free, bind it to a v1 hierarchy (undone at exit);
# if cgroup2 uses it, run every runtime in a private mount namespace without
# the unified mount, so all three see the same pure-v1 layout and the host is
# left untouched.
layout="host (as mounted)"
probe() { "$CRUN" --root "$work/probe" run --bundle "$bundle" "probe-$$" >/dev/null 2>&1; }
if ! probe; then
  unified=/sys/fs/cgroup/unified
  if [ -f "$unified/cgroup.controllers" ] && ! grep -qw hugetlb "$unified/cgroup.controllers" \
     && ! grep -qw hugetlb /proc/self/mountinfo; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb none /sys/fs/cgroup/hugetlb
    mounted_hugetlb=/sys/fs/cgroup/hugetlb
    layout="hybrid + v1 hugetlb mounted by run.sh"
  elif [ -z "${HAKO_BENCH_NS:-}" ] && mountpoint -q "$unified"; then
    # Re-run this script in a private mount namespace; this shell only cleans up.
    rm -rf "$work"
    trap - EXIT
    HAKO_BENCH_NS=1 HAKO="$HAKO" exec unshare --mount --propagation private "$0" "$@"
  fi
fi
if [ -n "${HAKO_BENCH_NS:-}" ]; then
  umount -l /sys/fs/cgroup/unified
  layout="cgroup v1 only (unified hierarchy hidden in a private mount namespace)"
fi
probe || { echo "run.sh: crun cannot run a container here:" >&2; "$CRUN" --root "$work/probe" run --bundle "$bundle" "probe2-$$" >&2 || true; exit 1; }

echo "rounds: $ROUNDS   cgroup layout: $layout"
echo "hako-runtime: $HAKO ($("$HAKO" --version))"
echo "crun:         $CRUN ($("$CRUN" --version | head -1))"
echo "runc:         $RUNC ($("$RUNC" --version | head -1))"

# One python process drives every timed sample (posix_spawn + waitpid). Peak
# RSS is taken in a separate pass under GNU time, whose own footprint is tiny (a
# child of python would report python's RSS, which it carries until exec).
"$PYTHON" - "$ROUNDS" "$bundle" "$work" "hako=$HAKO" "crun=$CRUN" "runc=$RUNC" <<'EOF'
import os, subprocess, sys, time

rounds, bundle, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
runtimes = [a.split("=", 1) for a in sys.argv[4:]]
devnull = os.open(os.devnull, os.O_RDWR)

def spawn(argv):
    """Runs argv to completion; returns its exit status."""
    acts = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)]
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=acts)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)

def state_root(path):
    return f"{work}/state-{os.path.basename(path)}"

times = {n: [] for n, _ in runtimes}
for r in range(rounds):
    k = r % len(runtimes)
    for name, path in runtimes[k:] + runtimes[:k]:
        cid = f"bench-{name}-{r}"
        t0 = time.perf_counter_ns()
        code = spawn([path, "--root", state_root(path), "run", "--bundle", bundle, cid])
        spawn([path, "--root", state_root(path), "delete", "--force", cid])
        times[name].append((time.perf_counter_ns() - t0) / 1e6)
        if code != 0:
            sys.exit(f"{name} run {cid} exited {code}")

rss = {}
for name, path in runtimes:
    peaks = []
    for i in range(5):
        cid = f"rss-{name}-{i}"
        out = subprocess.run(["/usr/bin/time", "-f", "%M", path, "--root", state_root(path),
                              "run", "--bundle", bundle, cid], capture_output=True, text=True)
        spawn([path, "--root", state_root(path), "delete", "--force", cid])
        peaks.append(int(out.stderr.strip().splitlines()[-1]))
    rss[name] = max(peaks)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]

print(f"\n{'runtime':<8} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'peak RSS KiB':>13}")
for name, _ in runtimes:
    t = times[name]
    print(f"{name:<8} {pct(t, 50):>10.1f} {pct(t, 90):>8.1f} {min(t):>8.1f} {rss[name]:>13}")
med = {n: pct(times[n], 50) for n, _ in runtimes}
print(f"\nhako/crun median ratio: {med['hako'] / med['crun']:.2f}   (target <= 0.80)")
print(f"hako/runc median ratio: {med['hako'] / med['runc']:.2f}")
EOF
