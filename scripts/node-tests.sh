#!/usr/bin/env bash
# The Node tests of the shim (tests/node/, `node --test`), as scripts/check.sh runs them after `cargo test`.
#
# - Installs their one npm dependency, azure-pipelines-task-lib (its MockTestRunner runs the Azure task as Azure's
#   own task tests do), into $IMAGEPIPE_TOOLS_DIR/node (default: <repo>/tools/node, git-ignored), pinned. When that
#   version is in place, npm is not asked at all. npm takes its registry from the machine's own configuration.
# - Builds nothing: the tests that run the real binary take IMAGEPIPE_BIN, else target/debug/imagepipe, which
#   `cargo build` and `cargo test` leave there.
# - Prints the test runner's report and one closing line with the counts; exits non-zero when a test failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root=$(pwd)
tools_dir=${IMAGEPIPE_TOOLS_DIR:-$repo_root/tools}
node_dir=$tools_dir/node
task_lib=azure-pipelines-task-lib
task_lib_version=5.281.0

if ! command -v node >/dev/null || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    echo "node-tests: Node.js 20 or later is needed on PATH (found: $(node --version 2>/dev/null || echo none))" >&2
    exit 1
fi

installed=$(NODE_DIR=$node_dir node -p \
    "try { require(require('path').join(process.env.NODE_DIR, 'node_modules', '$task_lib', 'package.json')).version } catch { '' }")
if [[ $installed != "$task_lib_version" ]]; then
    echo "==> npm install $task_lib@$task_lib_version into $node_dir" >&2
    mkdir -p "$node_dir"
    npm install --prefix "$node_dir" --save-exact --no-audit --no-fund --loglevel=error "$task_lib@$task_lib_version" >&2
fi

binary=${IMAGEPIPE_BIN:-$repo_root/target/debug/imagepipe}
if [[ ! -x $binary ]]; then
    echo "node-tests: no imagepipe binary at \`$binary\`: run \`cargo build\` first, or set IMAGEPIPE_BIN" >&2
    exit 1
fi

export IMAGEPIPE_BIN
IMAGEPIPE_BIN=$(realpath "$binary")
export IMAGEPIPE_TOOLS_DIR=$tools_dir
export NODE_PATH=$node_dir/node_modules${NODE_PATH:+:$NODE_PATH}

tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
echo "==> node --test tests/node/"
status=0
# A human report on standard output and TAP in a file for the counts. Every test sets its own time limit; the
# runner's limit is a backstop for one that does not.
node --test --test-timeout=600000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    tests/node/ || status=$?
awk '/^# pass / { passed = $3 } /^# fail / { failed = $3 } /^# cancelled / { failed += $3 } /^# skipped / { skipped = $3 }
     END { printf "node: %d passed, %d failed, %d skipped\n", passed, failed, skipped }' "$tap"
exit "$status"
