#!/usr/bin/env bash
# Nested WORKDIRs (issue 13 point 7): a Dockerfile of N `WORKDIR d` lines on the busybox
# base, built cold (a fresh store holding only the base image) by hako and by buildah,
# for N in $SIZES. Each WORKDIR that creates a directory is a layer in both.
# hako:    hako --root R build -q --no-cache -t nested CONTEXT
# buildah: buildah --root R --runroot RR --storage-driver overlay bud --layers --isolation chroot
# Usage: bench/build/workdir.sh   (SIZES="50 100 200", RUNS=3; HAKO=path skips the release build)
# Needs: buildah, busybox-static (/bin/busybox), tar, python3; run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES=${SIZES:-"50 100 200"}
RUNS=${RUNS:-3}
BUILDAH_DRIVER=${BUILDAH_DRIVER:-overlay}
if [ -z "${HAKO:-}" ]; then
  echo "building hako (release)..." >&2
  HAKO="$(scripts/build-release.sh)/hako"
fi
for t in buildah tar python3 /bin/busybox; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/hako-bench-workdir.XXXXXX)
cleanup() {
  for m in $(awk -v w="$WORK" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }

mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc" "$WORK/rootfs/tmp"
cp /bin/busybox "$WORK/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$WORK/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$WORK/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$WORK/rootfs/etc/group"
tar -C "$WORK/rootfs" --numeric-owner -cf "$WORK/busybox.tar" .
SEED="$WORK/seed"
"$HAKO" --root "$SEED" import "$WORK/busybox.tar" busybox >/dev/null
"$HAKO" --root "$SEED" save -o "$WORK/busybox-docker.tar" busybox

declare -A T
for n in $SIZES; do
  ctx="$WORK/ctx-$n"; mkdir -p "$ctx"
  { echo "FROM busybox"; for _ in $(seq "$n"); do echo "WORKDIR d"; done; } > "$ctx/Dockerfile"
  for i in $(seq "$RUNS"); do
    r="$WORK/h"; rm -rf "$r"; cp -a "$SEED" "$r"
    s=$(now_ms); "$HAKO" --root "$r" build -q --no-cache -t nested "$ctx" >/dev/null
    T["hako $n"]+="$(( $(now_ms) - s )) "; rm -rf "$r"
    r="$WORK/b"; B=(buildah --root "$r/root" --runroot "$r/run" --storage-driver "$BUILDAH_DRIVER")
    "${B[@]}" pull -q "docker-archive:$WORK/busybox-docker.tar" >/dev/null
    s=$(now_ms); "${B[@]}" bud -q --layers --isolation chroot --pull-never -t nested "$ctx" >/dev/null
    T["buildah $n"]+="$(( $(now_ms) - s )) "
    "${B[@]}" rmi -a -f >/dev/null 2>&1 || true; rm -rf "$r"
  done
done

args=()
for n in $SIZES; do args+=("$n" "${T[hako $n]}" "${T[buildah $n]}"); done
python3 - "$RUNS" "${args[@]}" <<'PY'
import statistics, sys
runs, rest = sys.argv[1], sys.argv[2:]
print(f"nested WORKDIRs, cold builds, median of {runs} runs")
print(f"{'N':>5}{'hako':>10}{'buildah':>10}{'hako/buildah':>14}")
for i in range(0, len(rest), 3):
    h = statistics.median(map(int, rest[i + 1].split()))
    b = statistics.median(map(int, rest[i + 2].split()))
    print(f"{rest[i]:>5}{h:>8.0f}ms{b:>8.0f}ms{h / b:>13.2f}x")
PY
