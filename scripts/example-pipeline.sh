#!/usr/bin/env bash
# The whole release on the example, with OCI layout folders as staging and public registry: no server, no
# daemon. `imagepipe run` builds examples/hello (two images, the app FROM the base, three platforms) with the
# native builder, then runs post-build, create-manifest, sign (a key generated into WORK), verify, test and
# publish.
#
# IMAGEPIPE names the binary to run (default: build the release binary); WORK the folder to run in
# (default: target/example, emptied first). Nothing outside WORK is written.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z ${IMAGEPIPE:-} ]]; then
    cargo build --release --quiet
    IMAGEPIPE=target/release/imagepipe
fi
work=${WORK:-target/example}
rm -rf "$work"
"$IMAGEPIPE" run --manifest examples/hello/manifest.json --work "$work" --builder native
