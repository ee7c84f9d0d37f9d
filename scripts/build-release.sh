#!/usr/bin/env bash
# Release build of hako, hako-service and hako-cri (the servers `hako system
# service` and `hako cri serve` exec), hako-runtime and hako-monitor into one directory
# (default: target/dist; prints it).
#
# hako-runtime and hako-monitor are linked statically (glibc included): a
# dynamically linked start-up (ld.so mapping and relocating libc, libgcc_s) is
# ~0.5 ms of every container start, and they are started several times per
# container. crt-static needs an explicit --target so that it stays off the
# build scripts and proc macros; those builds land in target/<triple>/release.
# The hako CLI stays dynamic (it resolves registry names through glibc's NSS).
#
#   scripts/build-release.sh              # -> target/dist
#   scripts/build-release.sh /usr/local/bin
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
dest=${1:-$target_dir/dist}
triple=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release -q -p hako-cli
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release -q -p hako-runtime -p hako-monitor --target "$triple"
mkdir -p "$dest"
for f in "$target_dir/release/hako" "$target_dir/release/hako-service" "$target_dir/release/hako-cri" "$target_dir/$triple/release/hako-runtime" "$target_dir/$triple/release/hako-monitor"; do
  # Copy to a temp name and rename, so a running binary is never overwritten.
  cp "$f" "$dest/.$(basename "$f").tmp"
  mv -f "$dest/.$(basename "$f").tmp" "$dest/$(basename "$f")"
done
echo "$dest"
