#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the benchmarks use.
set -euo pipefail
PKGS=(
  build-essential pkg-config libseccomp-dev
  busybox-static runc crun podman skopeo buildah docker-registry
  containernetworking-plugins iptables iproute2 uidmap jq hyperfine curl strace zstd openssl
  python3 time linux-perf tini procps git
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
