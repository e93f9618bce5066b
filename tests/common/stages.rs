//! The stages a test runs to set a scene before the one it checks: a key, post-build, then create-manifest.

use std::path::{Path, PathBuf};

use super::Imagepipe;

/// Runs post-build of the fragments in `fragments` against `manifest` into `output`, which it returns.
pub fn post_build(manifest: &Path, fragments: &Path, output: &Path) -> PathBuf {
    Imagepipe::new()
        .arg("post-build")
        .arg("--manifest")
        .arg(manifest)
        .arg("--fragments")
        .arg(fragments)
        .arg("--output")
        .arg(output)
        .run()
        .succeeded();
    output.to_owned()
}

/// create-manifest of `image_info` against `manifest` with `staging` as staging, not yet run, so that a test
/// can add flags and environment.
pub fn create_manifest(manifest: &Path, image_info: &Path, staging: &str) -> Imagepipe {
    Imagepipe::new()
        .arg("create-manifest")
        .arg("--manifest")
        .arg(manifest)
        .arg("--image-info")
        .arg(image_info)
        .args(["--staging-registry", staging])
}

/// Writes a cosign key pair with `imagepipe generate-key` at `prefix`, encrypted with `password`; returns the
/// private key's path (the public key is beside it, `.pub`).
pub fn generate_key(prefix: &Path, password: &str) -> PathBuf {
    Imagepipe::new()
        .args(["generate-key", "--output-prefix"])
        .arg(prefix)
        .env("COSIGN_PASSWORD", password)
        .run()
        .succeeded();
    prefix.with_extension("key")
}
