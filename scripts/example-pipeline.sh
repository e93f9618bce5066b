#!/usr/bin/env bash
# The whole pipeline after the build, on the example, with OCI layout folders as staging and public
# registry: no server needed. post-build → create-manifest → sign → verify → test → publish.
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
example=examples/post-build
rm -rf "$work"
mkdir -p "$work"
# Staging as the build legs left it: the platform images pushed by digest.
cp -r "$example/staging" "$work/staging"
staging="oci:$work/staging"
export COSIGN_PASSWORD=${COSIGN_PASSWORD:-example-only}

step() { printf '\n==> imagepipe %s\n' "$1" >&2; }
step post-build
"$IMAGEPIPE" post-build --manifest "$example/manifest.json" --fragments "$example/fragments" \
    --output "$work/image-info.json"
step create-manifest
"$IMAGEPIPE" create-manifest --manifest "$example/manifest.json" --image-info "$work/image-info.json" \
    --staging-registry "$staging"
step generate-key
"$IMAGEPIPE" generate-key --output-prefix "$work/cosign"
step sign
"$IMAGEPIPE" sign --image-info "$work/image-info.json" --key "$work/cosign.key" --staging-registry "$staging" \
    --manifest "$example/manifest.json"
step verify
"$IMAGEPIPE" verify --image-info "$work/image-info.json" --key "$work/cosign.pub" --staging-registry "$staging"
step test
"$IMAGEPIPE" test --manifest "$example/manifest.json" --image-info "$work/image-info.json" \
    --staging-registry "$staging"
step publish
"$IMAGEPIPE" publish --image-info "$work/image-info.json" --staging-registry "$staging" \
    --registry-override "oci:$work/public" --output "$work/final-image-info.json"
printf '\nPublished to oci:%s; final image-info: %s\n' "$work/public" "$work/final-image-info.json" >&2
