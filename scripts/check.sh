#!/usr/bin/env bash
# The gates (STYLE.md "Gates"): formatting, lints (Rust, and the workflows, actions and Azure task), tests (Rust,
# then the Node shim and the Azure task). The integration tests need the servers and tools from
# scripts/install-test-deps.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "==> scripts/lint-ci.sh"
scripts/lint-ci.sh
echo "==> cargo test --locked"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"
# The shim and the Azure task as each runner runs them, with the binary cargo test built.
IMAGEPIPE_BIN=target/debug/imagepipe scripts/node-tests.sh 2>&1 | tee -a "$log"
# One closing line over all test binaries and the Node tests, so a reader need not add up per-binary results.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     /^node: [0-9]+ passed/ { passed += $2; failed += $4; ignored += $6 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
