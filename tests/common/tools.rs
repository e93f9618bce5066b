//! The external tools our output is checked with and measured against (DESIGN.md §9).
//!
//! cosign, skopeo 1.18 and oras come from Debian trixie as wrappers in the tools dir; skopeo 1.9 and buildah
//! are the system's; busybox, dockerd and the buildx plugin are extracted into the tools dir. All are installed
//! by `scripts/install-test-deps.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::commands::{require, require_executable};

/// `IMAGEPIPE_TOOLS_DIR`, or `tools/` in the repository.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("IMAGEPIPE_TOOLS_DIR")
        .filter(|directory| !directory.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tools"))
}

/// cosign 2.x.
pub fn cosign() -> PathBuf {
    wrapper("cosign")
}

/// skopeo 1.18, with sigstore support (Debian bookworm's 1.9 has it patched out).
pub fn skopeo_1_18() -> PathBuf {
    wrapper("skopeo-1.18")
}

/// oras 1.2.
pub fn oras() -> PathBuf {
    wrapper("oras")
}

/// The system's skopeo (1.9 on bookworm): copies images and `.sig` attachments, verifies no signature.
pub fn skopeo() -> PathBuf {
    require("skopeo")
}

/// The system's buildah; run it with `--storage-driver vfs` (1.28 ignores `STORAGE_DRIVER`) and
/// `BUILDAH_ISOLATION=chroot`.
pub fn buildah() -> PathBuf {
    require("buildah")
}

/// `program` (a buildah) with private storage below `storage` and chroot isolation: the way it runs on this kind
/// of machine.
pub fn buildah_in(program: &Path, storage: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("run"))
        // bookworm's buildah 1.28 ignores `STORAGE_DRIVER`; only the flag selects vfs.
        .args(["--storage-driver", "vfs"])
        .env("BUILDAH_ISOLATION", "chroot");
    command
}

/// Debian's static busybox for `architecture` (`amd64`, `arm64`): the shell of the test base images.
pub fn busybox(architecture: &str) -> PathBuf {
    require_executable(
        tools_dir()
            .join("busybox")
            .join(architecture)
            .join("busybox"),
    )
}

/// Debian bookworm's dockerd 20.10, which finds its containerd, runc and docker-init next to it.
pub fn dockerd() -> PathBuf {
    wrapper("dockerd")
}

/// Debian bookworm's docker CLI.
pub fn docker() -> PathBuf {
    wrapper("docker")
}

/// The buildx CLI plugin (Debian trixie's 0.13), for a `DOCKER_CONFIG/cli-plugins` folder.
pub fn buildx_plugin() -> PathBuf {
    require_executable(tools_dir().join("cli-plugins").join("docker-buildx"))
}

fn wrapper(name: &str) -> PathBuf {
    require_executable(tools_dir().join("bin").join(name))
}
