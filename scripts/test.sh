#!/usr/bin/env bash
# The whole test suite. Tests run real containers and so need root.
# Lints first (cheap, and a lint failure fails CI like a test does), then every
# test binary: --no-fail-fast so one failing binary does not hide the others.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads="${HAKO_TEST_THREADS:-4}"
