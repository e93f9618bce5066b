#!/usr/bin/env bash
# The gates (STYLE.md "Gates"): formatting, lints, tests. The integration tests need the servers and tools
# from scripts/install-test-deps.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test --locked"
cargo test --locked
