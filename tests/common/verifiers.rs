//! The independent verifiers our signatures are checked with: skopeo 1.18 under a `sigstoreSigned` policy, and
//! cosign.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use super::files::path;

/// Which repository a signature must name for skopeo's policy to accept it.
pub enum SignedIdentity<'a> {
    /// This one: the public name that staging stands for.
    Repository(&'a str),
    /// The repository pulled from, as it is (skopeo's `matchRepository`; cosign-style signatures name a
    /// repository without tag or digest, which the default `matchRepoDigestOrExact` never accepts).
    PulledRepository,
}

/// skopeo 1.18 copying `reference` with every platform under a policy that demands, for what is pulled from
/// `pulled_prefix`, signatures by `public_key` that name `identity`.
pub fn skopeo_policy_copy(
    folder: &Path,
    public_key: &Path,
    pulled_prefix: &str,
    identity: SignedIdentity<'_>,
    reference: &str,
) -> Output {
    let identity = match identity {
        SignedIdentity::Repository(repository) => {
            json!({"type": "exactRepository", "dockerRepository": repository})
        }
        SignedIdentity::PulledRepository => json!({"type": "matchRepository"}),
    };
    let policy = json!({
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {pulled_prefix: [{"type": "sigstoreSigned", "keyPath": path(public_key),
                "signedIdentity": identity}]},
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
