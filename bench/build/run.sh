#!/usr/bin/env bash
# Building the same Dockerfile with hako and with Debian's buildah (1.28), from the same
# busybox base image (Debian's busybox-static, imported into each tool at setup):
#   cold     a fresh store each run (the base image imported untimed): every step runs
#   cached   the same build again in the store of the cold run: every step is a cache hit
# hako:    hako --root R build -q -t bench CONTEXT
# buildah: buildah --root R --runroot RR --storage-driver overlay bud --layers --isolation chroot
#          (BUILDAH_DRIVER=vfs for the vfs driver)
# Runs are interleaved; medians and ratios at the end.
# Usage: bench/build/run.sh        (RUNS=5 by default; HAKO=path skips the release build)
# Needs: buildah, busybox-static (/bin/busybox), tar, python3; run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-5}
BUILDAH_DRIVER=${BUILDAH_DRIVER:-overlay}
# Always rebuilt as shipped (scripts/build-release.sh), so the figure is of this tree.
if [ -z "${HAKO:-}" ]; then
  echo "building hako (release)..." >&2
  HAKO="$(scripts/build-release.sh)/hako"
fi
for t in buildah tar python3 /bin/busybox; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/hako-bench-build.XXXXXX)
cleanup() {
  for m in $(awk -v w="$WORK" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  chmod -R u+w "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }

# --- the base image: busybox with one link per applet ---
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc" "$WORK/rootfs/tmp" "$WORK/rootfs/root"
cp /bin/busybox "$WORK/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$WORK/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' > "$WORK/rootfs/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\n' > "$WORK/rootfs/etc/group"
tar -C "$WORK/rootfs" --numeric-owner -cf "$WORK/busybox.tar" .
SEED="$WORK/seed"
"$HAKO" --root "$SEED" import "$WORK/busybox.tar" busybox >/dev/null
"$HAKO" --root "$SEED" save -o "$WORK/busybox-docker.tar" busybox

# --- the context: 2000 small files, a few MB of data, a multi-stage Dockerfile ---
CTX="$WORK/ctx"
python3 - "$CTX" <<'PY'
import os, random, sys
ctx = sys.argv[1]
r = random.Random(7)
for d in range(20):
    os.makedirs(f"{ctx}/src/pkg{d}", exist_ok=True)
    for f in range(100):
        with open(f"{ctx}/src/pkg{d}/file{f}.txt", "w") as fh:
            fh.write("".join(r.choice("abcdefgh \n") for _ in range(r.randrange(200, 2000))))
os.makedirs(f"{ctx}/assets", exist_ok=True)
with open(f"{ctx}/assets/blob.bin", "wb") as fh:
    fh.write(os.urandom(8 << 20))
with open(f"{ctx}/Dockerfile", "w") as fh:
    fh.write("""FROM busybox AS build
WORKDIR /build
COPY src ./src
RUN find src -type f | sort > manifest && cat src/pkg1/* | wc -c > size && tar -cf src.tar src
RUN mkdir -p /out && cp manifest size src.tar /out/
FROM busybox
ENV APP_HOME=/app
WORKDIR /app
COPY --from=build /out/ ./
COPY assets/ ./assets/
RUN echo 'app:x:1001:1001::/app:/bin/sh' >> /etc/passwd && echo 'app:x:1001:' >> /etc/group && chown -R app:app /app
RUN sha256sum assets/blob.bin > assets.sum && ls -la > listing
USER app
CMD ["cat", "/app/listing"]
""")
PY

declare -A T
record() { T["$1"]+="$2 "; }

hako_cold() {
  local r="$WORK/h-$1"
  rm -rf "$r"; cp -a "$SEED" "$r"
  local s; s=$(now_ms)
  "$HAKO" --root "$r" build -q -t bench "$CTX" >/dev/null
  record hako-cold $(( $(now_ms) - s ))
  s=$(now_ms)
  "$HAKO" --root "$r" build -q -t bench "$CTX" >/dev/null
  record hako-cached $(( $(now_ms) - s ))
}

buildah_cold() {
  local r="$WORK/b-$1"
  local B=(buildah --root "$r/root" --runroot "$r/run" --storage-driver "$BUILDAH_DRIVER")
  "${B[@]}" pull -q "docker-archive:$WORK/busybox-docker.tar" >/dev/null
  local s; s=$(now_ms)
  "${B[@]}" bud -q --layers --isolation chroot --pull-never -t bench "$CTX" >/dev/null
  record buildah-cold $(( $(now_ms) - s ))
  s=$(now_ms)
  "${B[@]}" bud -q --layers --isolation chroot --pull-never -t bench "$CTX" >/dev/null
  record buildah-cached $(( $(now_ms) - s ))
  "${B[@]}" rm -a >/dev/null 2>&1 || true
}

# One untimed warm-up of each, then interleaved rounds.
hako_cold warm; buildah_cold warm; unset 'T[hako-cold]' 'T[hako-cached]' 'T[buildah-cold]' 'T[buildah-cached]'
for i in $(seq "$RUNS"); do
  if (( i % 2 )); then hako_cold "$i"; buildah_cold "$i"; else buildah_cold "$i"; hako_cold "$i"; fi
done

python3 - "$RUNS" "${T[hako-cold]}" "${T[hako-cached]}" "${T[buildah-cold]}" "${T[buildah-cached]}" <<'PY'
import statistics, sys
runs = sys.argv[1]
names = ["hako cold", "hako cached", "buildah cold", "buildah cached"]
vals = [list(map(int, a.split())) for a in sys.argv[2:6]]
print(f"hako build vs buildah bud --layers, {runs} interleaved runs")
print(f"{'':16}{'median':>8}{'min':>8}{'max':>8}   runs (ms)")
med = {}
for n, v in zip(names, vals):
    med[n] = statistics.median(v)
    print(f"{n:16}{med[n]:>7.0f}ms{min(v):>6}ms{max(v):>6}ms   {' '.join(map(str, v))}")
print(f"hako/buildah cold:   {med['hako cold']/med['buildah cold']:.2f}x   (target <= 0.5x)")
print(f"hako/buildah cached: {med['hako cached']/med['buildah cached']:.2f}x   (target <= 0.1x)")
PY
