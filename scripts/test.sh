#!/usr/bin/env bash
# The whole test suite. Tests run real containers and so need root.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads="${HAKO_TEST_THREADS:-4}"
