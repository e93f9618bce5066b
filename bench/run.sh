#!/usr/bin/env bash
# Builds imagepipe in release and runs the benchmark suite (benches/suite), which writes bench/RESULTS.md.
#
#   bench/run.sh                       # defaults: 100 images x 3 platforms x 2 layers, 3 runs, 40 ms and loopback
#   bench/run.sh --images 20 --runs 3  # any setting as --name VALUE, or as env BENCH_NAME (see benches/suite/settings.rs)
#
# Settings: images, platforms, layers, layer-bytes, shared-tags, runs, delays-ms (one-way, comma-separated:
# "20,0" is 40 ms round trip, then loopback), peer-sample, cosign-all-sample, large-mib, real-manifest (0/1),
# only (create-manifest,sign,publish: which peers run; "none": imagepipe alone, a quick look), output.
# Needs the registry and the peers from scripts/install-test-deps.sh; IMAGEPIPE_TOOLS_DIR names its tools dir
# when it is not ./tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools="${IMAGEPIPE_TOOLS_DIR:-$PWD/tools}"
for tool in cosign oras skopeo-1.18; do
    if [ ! -x "$tools/bin/$tool" ]; then
        echo "bench/run.sh: \`$tools/bin/$tool\` is missing: run scripts/install-test-deps.sh (as root), or set IMAGEPIPE_TOOLS_DIR" >&2
        exit 2
    fi
done
for program in docker-registry buildah /usr/bin/time; do
    if ! command -v "$program" >/dev/null; then
        echo "bench/run.sh: \`$program\` is missing: run scripts/install-test-deps.sh (as root)" >&2
        exit 2
    fi
done
export IMAGEPIPE_TOOLS_DIR="$tools"

cargo build --release --locked --bin imagepipe
cargo bench --locked --bench suite -- "$@"
