//! The independent verifiers our signatures are checked with: skopeo 1.18 under a `sigstoreSigned` policy, and
//! cosign.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use super::files::path;

/// skopeo 1.18 copying `reference` with every platform under a policy that demands, for what is pulled from
/// `pulled_prefix`, signatures by `public_key` that name `signed_repository` (the public name staging stands for).
pub fn skopeo_policy_copy(
    folder: &Path,
    public_key: &Path,
    pulled_prefix: &str,
    signed_repository: &str,
    reference: &str,
) -> Output {
    let policy = json!({
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {pulled_prefix: [{"type": "sigstoreSigned", "keyPath": path(public_key),
                "signedIdentity": {"type": "exactRepository", "dockerRepository": signed_repository}}]},
            "dir": {"": [{"type": "insecureAcceptAnything"}]}
        }
    });
    let policy_file = folder.join("policy.json");
    std::fs::write(&policy_file, policy.to_string()).expect("writes");
    let registries = folder.join("registries.d");
    std::fs::create_dir_all(&registries).expect("creates");
    let host = pulled_prefix.split('/').next().expect("host");
    std::fs::write(
        registries.join("imagepipe.yaml"),
        format!("docker:\n  {host}:\n    use-sigstore-attachments: true\n"),
    )
    .expect("writes");
    let target = folder.join(format!("copy-{}", fastrand::u64(..)));
    Command::new(super::tools::skopeo_1_18())
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--policy",
            &path(&policy_file),
            "--registries.d",
            &path(&registries),
        ])
        .arg(reference)
        .arg(format!("dir:{}", path(&target)))
        .output()
        .expect("skopeo runs")
}

/// `cosign verify --key` of `reference` (`host/repo@digest`, plain HTTP, no transparency log): its exit code.
pub fn cosign_verify(public_key: &Path, reference: &str) -> Option<i32> {
    Command::new(super::tools::cosign())
        .args(["verify", "--key"])
        .arg(public_key)
        .args([
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            reference,
        ])
        .output()
        .expect("cosign runs")
        .status
        .code()
}
