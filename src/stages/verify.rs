//! `imagepipe verify`: every digest in image-info has a valid signature by the key, whose payload names that
//! digest and its public repository. Checks staging when given, else the public registries the digests name.
//! Prints the failing digests' rows on stdout (every digest's with `--verbose`); the job summary has them all.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::ci::{self, CiHost, RunIdentity};
use crate::files;
use crate::inputs;
use crate::model::ledger::Stage;
use crate::model::reference::DigestReference;
use crate::sign::keys::{KeySource, PublicKey};
use crate::sign::verifier::{Verdict, verify};
use crate::stages::result_table::{ResultTable, Rows};
use crate::stages::{Refusal, check_staging_prefix, stage_record, summary};
use crate::store::registry::{ClientSettings, RegistryClient};
use crate::store::{AnyStore, Location, staging_repository};

const CONCURRENT_CHECKS: usize = 16;

pub struct Settings {
    pub image_info: PathBuf,
    pub expect_sha256: Option<String>,
    pub key: KeySource,
    /// Staging and its prefix; `None` checks the public registry each digest names.
    pub staging: Option<(Location, Option<String>)>,
    pub client: ClientSettings,
    /// Print every digest's row on stdout, not only those failing (`--verbose`).
    pub verbose: bool,
}

/// One digest's result, for the report.
struct Checked {
    reference: String,
    verdict: Verdict,
}

pub async fn run(
    settings: Settings,
    run: &RunIdentity,
    host: &mut dyn CiHost,
) -> anyhow::Result<()> {
    let Settings {
        image_info,
        expect_sha256,
        key,
        staging,
        client,
        verbose,
    } = settings;
    check_staging_prefix(staging.as_ref().and_then(|(_, prefix)| prefix.as_deref()))?;
    let mut info = inputs::load_image_info_expecting(&image_info, expect_sha256.as_deref())?;
    info.pipeline.require(Stage::Verify)?;
    let key = PublicKey::load(&key)?;
    let client = Arc::new(RegistryClient::new(client)?);
    let staging_store = staging
        .as_ref()
        .map(|(location, _)| AnyStore::open(location, &client));
    let prefix = staging.as_ref().and_then(|(_, prefix)| prefix.clone());

    let entries = info.digest_entries();
    let checked: Vec<Checked> = stream::iter(entries)
        .map(|entry| {
            let (key, client, staging_store, prefix) = (&key, &client, &staging_store, &prefix);
            async move {
                let reference: DigestReference = entry
                    .reference
                    .parse()
                    .with_context(|| format!("reading `{}`", entry.reference))?;
                let (store, repository) = match staging_store {
                    Some(store) => (
                        store.clone(),
                        staging_repository(prefix.as_deref(), reference.repository()),
                    ),
                    None => {
                        let registry = reference.registry().unwrap_or("docker.io").to_owned();
                        (
                            AnyStore::open(&Location::Registry(registry), client),
                            reference.repository().to_owned(),
                        )
                    }
                };
                let verdict = verify(
                    &store,
                    &repository,
                    reference.name(),
                    &reference.digest,
                    key,
                )
                .await
                .with_context(|| format!("checking the signatures of `{}`", entry.reference))?;
                Ok::<_, anyhow::Error>(Checked {
                    reference: entry.reference,
                    verdict,
                })
            }
        })
        .buffered(CONCURRENT_CHECKS)
        .try_collect()
        .await?;

    let table = report_table(&checked);
    print!("{}", table.markdown(Rows::on_stdout(verbose)));
    host.summary(&format!(
        "### imagepipe verify\n\n{}",
        table.markdown(Rows::All)
    ))
    .context("writing the step summary")?;
    let failed: Vec<&Checked> = checked
        .iter()
        .filter(|checked| !checked.verdict.is_valid())
        .collect();
    // A failing run's error line is its summary: a refused run reports that once, with nothing logged.
    if !failed.is_empty() {
        let listed: Vec<String> = failed
            .iter()
            .map(|checked| format!("`{}`: {}", checked.reference, checked.verdict))
            .collect();
        return Err(Refusal {
            message: format!(
                "{} of {} lack a valid signature by key {}: {}",
                failed.len(),
                summary::count(checked.len(), "digest"),
                short(&key.key_id()),
                listed.join("; ")
            ),
            hint: Some("run `imagepipe sign` with the matching private key".to_owned()),
        }
        .into());
    }
    info.pipeline.record(stage_record(Stage::Verify, run));
    let digest = files::write_atomically(&image_info, &info)?;
    tracing::info!(
        "verified {} against key {}: {} signed, 0 failing; {} HTTP requests",
        summary::count(checked.len(), "digest"),
        short(&key.key_id()),
        checked.len(),
        client.request_count()
    );
    ci::set_stage_outputs(host, Stage::Verify, &image_info, &digest)
        .context("setting the step outputs")?;
    Ok(())
}

fn short(key_id: &str) -> &str {
    key_id.get(..12).unwrap_or(key_id)
}

/// One row per digest with its result.
fn report_table(checked: &[Checked]) -> ResultTable {
    let mut table = ResultTable::new(&["digest", "signature"]);
    for checked in checked {
        let valid = checked.verdict.is_valid();
        let mark = if valid { "✓" } else { "✗" };
        table.push(
            !valid,
            &[
                &format!("`{}`", checked.reference),
                &format!("{mark} {}", checked.verdict),
            ],
        );
    }
    table
}
