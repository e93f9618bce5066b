#!/usr/bin/env python3
"""Writes the example's staging store: tiny platform images in an OCI layout (examples/post-build/staging),
and points the example's fragments at their digests, as build legs pushing by digest would.

The images are data, not programs: a one-file layer each. Re-run after changing them; the output is
deterministic, so an unchanged run changes no file.
"""
import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "post-build"
LAYOUT = EXAMPLE / "staging" / "acme" / "app"
PUBLIC = "registry.example.com/acme/app"

# (fragment file, dockerfile, os, architecture, variant)
IMAGES = [
    ("linux-amd64.json", "src/app/amd64/Dockerfile", "linux", "amd64", None),
    ("linux-amd64.json", "src/app/debug/Dockerfile", "linux", "amd64", None),
    ("linux-arm64.attempt-2.json", "src/app/arm64v8/Dockerfile", "linux", "arm64", "v8"),
]


def write_blob(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = LAYOUT / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return "sha256:" + digest


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def image(dockerfile: str, os: str, architecture: str, variant):
    layer = f"example layer built from {dockerfile}\n".encode()
    layer_digest = write_blob(layer)
    config = {"architecture": architecture, "os": os, "rootfs": {"type": "layers", "diff_ids": [layer_digest]}, "config": {}}
    if variant:
        config["variant"] = variant
    config_bytes = compact(config)
    config_digest = write_blob(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}],
    }
    manifest_bytes = compact(manifest)
    return write_blob(manifest_bytes), len(manifest_bytes), layer_digest, len(layer)


def main():
    entries = []
    digests = {}
    for fragment, dockerfile, os, architecture, variant in IMAGES:
        digest, size, layer, layer_size = image(dockerfile, os, architecture, variant)
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size})
        digests[dockerfile] = (digest, layer, layer_size)
    (LAYOUT / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    (LAYOUT / "index.json").write_bytes(compact(index))
    for fragment in sorted({image[0] for image in IMAGES}):
        path = EXAMPLE / "fragments" / fragment
        data = json.loads(path.read_text())
        for platform in data["repos"][0]["images"][0]["platforms"]:
            digest, layer, layer_size = digests[platform["dockerfile"]]
            platform["digest"] = f"{PUBLIC}@{digest}"
            if "layers" in platform:
                platform["layers"] = [{"digest": layer, "size": layer_size}]
        path.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
