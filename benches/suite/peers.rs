//! The peers, run the way a release script runs them: one process per step, in a shell loop over the images.
//! What each loop does per image (P platforms, T shared tags):
//! - `buildah manifest`: `create`, `add` of each platform by digest, `push` of the list under each shared tag
//!   (1 + P + T processes);
//! - `cosign sign`: one process per digest (platforms and index: P + 1), or one process given every reference;
//! - `skopeo copy --all --preserve-digests` (1.18, `use-sigstore-attachments: true` for both registries, so
//!   the `.sig` objects of the index and of every platform travel with it): the index under each shared tag,
//!   then each platform under its own tag (T + P processes);
//! - `oras cp -r` (1.2): the index under all shared tags in one process (`-r` looks for referrers, and finds
//!   none: the registry has no referrers API and cosign's `.sig` tags are not OCI referrers), `oras tag` for
//!   each platform's tag, and `oras cp` of each `.sig` tag (1 + P + (P + 1) processes).

use std::path::{Path, PathBuf};
use std::process::Command;

use imagepipe::model::reference::Digest;
use imagepipe::store::signature_tag;

use crate::common;
use crate::measure::{Usage, run_timed};
use crate::workload::{PREFIX, WorkloadImage};

pub const PASSWORD: &str = "bench password";

pub struct Peers {
    pub folder: PathBuf,
    /// The staging and public registries as the peers reach them: through the proxies.
    pub staging: String,
    pub public: String,
    /// cosign's private key (encrypted with [`PASSWORD`]).
    pub key: PathBuf,
}

impl Peers {
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env("DOCKER_CONFIG", self.folder.join("docker-config"))
            .env("HOME", &self.folder)
            .env("COSIGN_PASSWORD", PASSWORD);
        command
    }

    /// `buildah manifest create`, `add` × P, `push` × T per image: lists of the platforms imagepipe's
    /// create-manifest indexes, pushed under `buildah-<tag>` beside imagepipe's tags.
    pub fn buildah_manifest(
        &self,
        images: &[WorkloadImage],
        shared_tags: &[String],
        run: usize,
    ) -> Vec<Usage> {
        let storage = self.folder.join("buildah");
        let buildah = common::tools::buildah();
        let mut usages = Vec::new();
        let mut step = |arguments: &[String]| {
            let mut command = common::tools::buildah_in(&buildah, &storage);
            command.args(arguments).env("HOME", &self.folder);
            usages.push(run_timed(&command).1);
        };
        for (number, image) in images.iter().enumerate() {
            let list = format!("bench-list-{run}-{number}");
            step(&["manifest".into(), "create".into(), list.clone()]);
            for platform in &image.platforms {
                step(&[
                    "manifest".into(),
                    "add".into(),
                    "--tls-verify=false".into(),
                    list.clone(),
                    format!(
                        "docker://{}/{PREFIX}/{}@{}",
                        self.staging,
                        image.repository,
                        platform.manifest.digest()
                    ),
                ]);
            }
            for tag in shared_tags {
                step(&[
                    "manifest".into(),
                    "push".into(),
                    "--tls-verify=false".into(),
                    list.clone(),
                    format!(
                        "docker://{}/{PREFIX}/{}:buildah-{tag}",
                        self.staging, image.repository
                    ),
                ]);
            }
        }
        usages
    }

    /// `cosign sign` of each reference, one process each when `one_each`, else one process for all.
    pub fn cosign_sign(&self, references: &[String], one_each: bool) -> Vec<Usage> {
        let cosign = common::tools::cosign();
        let sign = |references: &[String]| {
            let mut command = self.command(&cosign);
            command
                .args(["sign", "--key"])
                .arg(&self.key)
                .args(["--tlog-upload=false", "--allow-http-registry", "--yes"])
                .args(references);
            run_timed(&command).1
        };
        if one_each {
            references.chunks(1).map(sign).collect()
        } else {
            vec![sign(references)]
        }
    }

    /// The registries.d folder that has skopeo copy `.sig` attachments from and to both registries.
    fn sigstore_attachments(&self) -> PathBuf {
        let folder = self.folder.join("registries.d");
        std::fs::create_dir_all(&folder).expect("creates registries.d");
        let hosts: String = [&self.staging, &self.public]
            .iter()
            .map(|host| format!("  {host}:\n    use-sigstore-attachments: true\n"))
            .collect();
        std::fs::write(folder.join("bench.yaml"), format!("docker:\n{hosts}"))
            .expect("writes registries.d");
        folder
    }

    /// The skopeo loop: each image's index under each shared tag, each platform under its tag, to
    /// `skopeo/<repository>`.
    pub fn skopeo_copy(
        &self,
        images: &[WorkloadImage],
        indexes: &[Digest],
        shared_tags: &[String],
    ) -> Vec<Usage> {
        let registries = self.sigstore_attachments();
        let skopeo = common::tools::skopeo_1_18();
        let mut usages = Vec::new();
        let mut copy = |all: bool, from: String, to: String| {
            let mut command = self.command(&skopeo);
            command
                .arg("--insecure-policy")
                .arg("--registries.d")
                .arg(&registries)
                .arg("copy");
            if all {
                command.arg("--all");
            }
            command
                .args([
                    "--preserve-digests",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                ])
                .args([from, to]);
            usages.push(run_timed(&command).1);
        };
        for (image, index) in images.iter().zip(indexes) {
            let source = format!("docker://{}/{PREFIX}/{}", self.staging, image.repository);
            let target = format!("docker://{}/skopeo/{}", self.public, image.repository);
            for tag in shared_tags {
                copy(true, format!("{source}@{index}"), format!("{target}:{tag}"));
            }
            for platform in &image.platforms {
                copy(
                    false,
                    format!("{source}@{}", platform.manifest.digest()),
                    format!("{target}:{}", platform.tag),
                );
            }
        }
        usages
    }

    /// The oras loop: `oras cp -r` of each index under all shared tags, `oras tag` of each platform, and
    /// `oras cp` of each `.sig` tag, to `oras/<repository>`.
    pub fn oras_copy(
        &self,
        images: &[WorkloadImage],
        indexes: &[Digest],
        shared_tags: &[String],
    ) -> Vec<Usage> {
        let oras = common::tools::oras();
        let mut usages = Vec::new();
        let mut run = |arguments: Vec<String>| {
            let mut command = self.command(&oras);
            command.args(arguments);
            usages.push(run_timed(&command).1);
        };
        let plain = ["--from-plain-http".to_owned(), "--to-plain-http".to_owned()];
        for (image, index) in images.iter().zip(indexes) {
            let source = format!("{}/{PREFIX}/{}", self.staging, image.repository);
            let target = format!("{}/oras/{}", self.public, image.repository);
            let mut copy = vec!["cp".to_owned(), "-r".to_owned()];
            copy.extend(plain.clone());
            copy.extend([
                format!("{source}@{index}"),
                format!("{target}:{}", shared_tags.join(",")),
            ]);
            run(copy);
            for platform in &image.platforms {
                run(vec![
                    "tag".to_owned(),
                    "--plain-http".to_owned(),
                    format!("{target}@{}", platform.manifest.digest()),
                    platform.tag.clone(),
                ]);
            }
            for digest in image.digests(index) {
                let tag = signature_tag(&digest);
                let mut copy = vec!["cp".to_owned()];
                copy.extend(plain.clone());
                copy.extend([format!("{source}:{tag}"), format!("{target}:{tag}")]);
                run(copy);
            }
        }
        usages
    }
}
