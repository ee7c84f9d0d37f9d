#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the benchmarks use.
set -euo pipefail
PKGS=(
  build-essential pkg-config libseccomp-dev
  busybox-static runc crun podman skopeo buildah docker-registry
  containerd protobuf-compiler containernetworking-plugins iptables iproute2 uidmap jq hyperfine curl strace zstd openssl
  python3 time linux-perf tini procps git bzip2 xz-utils qemu-user-static
  bash-completion zsh fish man-db
  etcd-server python3-kubernetes python3-docker docker-compose
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# podman in this sandbox: no CAP_SYS_RESOURCE and a 20000 open-files hard limit.
# As root podman asks for nofile and nproc of 1048576 and lowers its own nproc
# limit before starting conmon, so no runtime (runc included) can set them; these
# values are within what the runtime inherits.
mkdir -p /etc/containers/containers.conf.d
cat > /etc/containers/containers.conf.d/50-hako-sandbox.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
CONF

# Foreign-platform builds (hako build --platform linux/arm64 with RUN): the
# kernel runs arm64 programs through qemu-user-static once binfmt_misc has its
# handler (systemd-binfmt does it at boot; a container without systemd does not),
# and the build tests need an arm64 busybox (Debian's busybox-static:arm64).
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
    { echo "install-deps: cannot mount binfmt_misc (foreign-platform RUN steps need it)" >&2; exit 1; }
fi
if [ -e /proc/sys/fs/binfmt_misc/register ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register ||
    { echo "install-deps: cannot register qemu-aarch64 with binfmt_misc" >&2; exit 1; }
fi
ARM64_BUSYBOX=/usr/local/share/hako/test/busybox-arm64
if [ ! -x "$ARM64_BUSYBOX" ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -q
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q busybox-static:arm64 && dpkg-deb -x busybox-static_*_arm64.deb x)
  mkdir -p "$(dirname "$ARM64_BUSYBOX")"
  install -m 0755 "$tmp/x/bin/busybox" "$ARM64_BUSYBOX"
  rm -rf "$tmp"
fi
# The emulation must work end to end: the build tests run arm64 steps through it.
"$ARM64_BUSYBOX" true ||
  { echo "install-deps: $ARM64_BUSYBOX does not run: arm64 emulation (qemu-user-static + binfmt_misc) is broken" >&2; exit 1; }
