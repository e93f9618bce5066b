//! `imagepipe run`: the whole release on one machine: build every leg, then post-build, create-manifest, sign,
//! verify, test and publish, each the stage itself with the settings it would get from its own command. By
//! default staging and the public side are OCI layouts under the work folder, so no server is needed; with
//! `--staging` and `--public` the same run goes to registries.
//!
//! Without `--key`, a key pair is generated into the work folder with a random password that only this process
//! holds: a local run signs and verifies for real, and no password is written anywhere.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use crate::build::BuilderChoice;
use crate::ci::{CiHost, RunIdentity};
use crate::inputs;
use crate::model::legs::Filters;
use crate::sign::keys::KeySource;
use crate::stages::{
    build, create_manifest, generate_key, post_build, publish, sign, summary, test, verify,
};
use crate::store::Location;
use crate::store::registry::ClientSettings;

pub struct Settings {
    pub manifest: PathBuf,
    pub variables: BTreeMap<String, String>,
    /// Where fragments, image-info files, keys and the default layouts go.
    pub work: PathBuf,
    /// Staging; `oci:WORK/staging` when absent.
    pub staging: Option<Location>,
    /// Where publish copies to; `oci:WORK/public` when absent.
    pub public: Option<Location>,
    /// The signing key and its password; generated into WORK when absent.
    pub key: Option<(KeySource, Vec<u8>)>,
    pub builder: BuilderChoice,
    pub client: ClientSettings,
}

pub async fn run(
    settings: Settings,
    run: &RunIdentity,
    host: &mut dyn CiHost,
) -> anyhow::Result<()> {
    let Settings {
        manifest,
        variables,
        work,
        staging,
        public,
        key,
        builder,
        client,
    } = settings;
    // The manifest is checked before anything is written.
    inputs::load_manifest(&manifest, &variables)?;
    std::fs::create_dir_all(&work)
        .with_context(|| format!("making the work folder `{}`", work.display()))?;
    let staging = staging.unwrap_or_else(|| Location::Layout(work.join("staging")));
    let public = public.unwrap_or_else(|| Location::Layout(work.join("public")));
    let fragments = work.join("fragments");
    let image_info = work.join("image-info.json");
    let final_info = work.join("final-image-info.json");

    step("build");
    build::run(
        build::Settings {
            manifest: manifest.clone(),
            variables: variables.clone(),
            leg: None,
            filters: Filters::default(),
            builder,
            build_args: BTreeMap::new(),
            staging: staging.clone(),
            staging_prefix: None,
            fragments: fragments.clone(),
            client: client.clone(),
        },
        run,
        host,
    )
    .await?;
    step("post-build");
    post_build::run(
        post_build::Settings {
            manifest: manifest.clone(),
            variables: variables.clone(),
            fragments,
            output: image_info.clone(),
        },
        run,
        host,
    )?;
    step("create-manifest");
    create_manifest::run(
        create_manifest::Settings {
            manifest: manifest.clone(),
            variables: variables.clone(),
            image_info: image_info.clone(),
            output: None,
            expect_sha256: None,
            published_image_info: None,
            staging: staging.clone(),
            staging_prefix: None,
            media_type: create_manifest::IndexMediaType::Oci,
            client: client.clone(),
        },
        run,
        host,
    )
    .await?;
    let (key, password, public_key) = match key {
        Some((key, password)) => {
            let public_key = match &key {
                KeySource::File(file) => file.with_extension("pub"),
                KeySource::Environment(_) => work.join("cosign.pub"),
            };
            (key, password, public_key)
        }
        None => {
            step("generate-key");
            let password = random_password();
            let prefix = work.join("cosign");
            generate_key::run(generate_key::Settings {
                prefix: prefix.clone(),
                force: true,
                password: password.clone(),
            })?;
            (
                KeySource::File(prefix.with_extension("key")),
                password,
                prefix.with_extension("pub"),
            )
        }
    };
    step("sign");
    sign::run(
        sign::Settings {
            image_info: image_info.clone(),
            output: None,
            expect_sha256: None,
            manifest: Some((manifest.clone(), variables.clone())),
            key,
            password,
            staging: staging.clone(),
            staging_prefix: None,
            mode: sign::SignatureMode::Tag,
            client: client.clone(),
        },
        run,
        host,
    )
    .await?;
    step("verify");
    verify::run(
        verify::Settings {
            image_info: image_info.clone(),
            expect_sha256: None,
            key: KeySource::File(public_key),
            staging: Some((staging.clone(), None)),
            client: client.clone(),
            verbose: false,
        },
        run,
        host,
    )
    .await?;
    step("test");
    test::run(
        test::Settings {
            manifest: manifest.clone(),
            variables: variables.clone(),
            image_info: image_info.clone(),
            expect_sha256: None,
            staging: staging.clone(),
            staging_prefix: None,
            command: None,
            client: client.clone(),
            verbose: false,
        },
        run,
        host,
    )
    .await?;
    step("publish");
    publish::run(
        publish::Settings {
            image_info,
            expect_sha256: None,
            output: final_info.clone(),
            published_image_info: None,
            manifest: None,
            staging,
            staging_prefix: None,
            registry_override: Some(public.clone()),
            dry_run: false,
            require_verify: true,
            allow_unsigned: false,
            jobs: 8,
            client,
        },
        run,
        host,
    )
    .await?;

    let published = inputs::load_image_info(&final_info)?;
    eprintln!("\n{}", published_table(&published, &public));
    tracing::info!(
        "published to {public}; final image-info: `{}`",
        final_info.display()
    );
    Ok(())
}

/// A stage's heading in the log.
fn step(stage: &str) {
    tracing::info!("==> {stage}");
}

/// The release at a glance: every published tag, the digest it names, and whether that digest is signed.
fn published_table(info: &crate::model::image_info::ImageInfo, public: &Location) -> String {
    let mut table = format!("Published to {public}:\n");
    for repo in &info.repos {
        for image in &repo.images {
            let mut rows: Vec<(&[String], &str, usize)> = image
                .platforms
                .iter()
                .map(|platform| {
                    (
                        platform.simple_tags.as_slice(),
                        platform.digest.as_str(),
                        platform.signatures.len(),
                    )
                })
                .collect();
            if let Some(index) = &image.manifest {
                rows.insert(
                    0,
                    (
                        index.shared_tags.as_slice(),
                        index.digest.as_str(),
                        index.signatures.len(),
                    ),
                );
            }
            for (tags, digest, signatures) in rows {
                let digest = digest.rsplit_once('@').map_or(digest, |(_, digest)| digest);
                let signed = if signatures > 0 { "signed" } else { "UNSIGNED" };
                let _ = writeln!(
                    table,
                    "  {:<24} {:<40} {} {signed}",
                    repo.repo,
                    tags.join(", "),
                    &digest[..19.min(digest.len())]
                );
            }
        }
    }
    let counts = info.counts();
    let _ = write!(
        table,
        "{}, {}, {}",
        summary::count(counts.images, "image"),
        summary::count(counts.platforms, "platform"),
        summary::count(counts.indexes, "index")
    );
    table
}

/// A password for a key that lives as long as this run: 32 bytes from the operating system, hex.
fn random_password() -> Vec<u8> {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>()
        .into_bytes()
}
