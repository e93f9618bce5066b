//! `imagepipe test`: checks that staging holds exactly what image-info records, and runs a user's test command
//! once per platform image.
//!
//! Every platform digest must resolve to an image whose config names the platform image-info records and the
//! manifest declares; every index must list exactly its image's platforms, each described as its config says;
//! every shared tag must point at its index. Simple tags are checked where staging has them: build legs push by
//! digest, so an absent simple tag is skipped, while one pointing elsewhere fails.
//!
//! Staging is read first (concurrently), then judged as a whole, so the report lists every failed check at
//! once; test commands run after, one at a time, each in its own log group. The report on stdout has the failed
//! checks' rows (every check's with `--verbose`); the job summary has them all.
//!
//! This module holds the stage's settings, its run, and the checks it reports; `expected` says what staging
//! must hold, `staging` reads what it does hold, `judge` compares the two, and `command` runs the test
//! command.

mod command;
mod expected;
#[cfg(test)]
mod fixtures;
mod judge;
mod staging;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::ci::{self, CiHost, RunIdentity};
use crate::files;
use crate::inputs;
use crate::model::ledger::Stage;
use crate::stages::result_table::{ResultTable, Rows};
use crate::stages::{Refusal, check_staging_prefix, stage_record, summary};
use crate::store::registry::{ClientSettings, RegistryClient};
use crate::store::{AnyStore, Location, Store};

use self::command::{command_targets, run_command};
use self::expected::{Expected, expectations};
use self::judge::judge;
use self::staging::Probe;

pub struct Settings {
    pub manifest: PathBuf,
    pub variables: BTreeMap<String, String>,
    pub image_info: PathBuf,
    pub expect_sha256: Option<String>,
    pub staging: Location,
    pub staging_prefix: Option<String>,
    /// Run by `sh -c` once per platform image.
    pub command: Option<String>,
    pub client: ClientSettings,
    /// Print every check's row on stdout, not only the failed ones (`--verbose`).
    pub verbose: bool,
}

pub async fn run(
    settings: Settings,
    run: &RunIdentity,
    host: &mut dyn CiHost,
) -> anyhow::Result<()> {
    let Settings {
        manifest,
        variables,
        image_info,
        expect_sha256,
        staging,
        staging_prefix,
        command,
        client,
        verbose,
    } = settings;
    check_staging_prefix(staging_prefix.as_deref())?;
    let mut info = inputs::load_image_info_expecting(&image_info, expect_sha256.as_deref())?;
    info.pipeline.require(Stage::Test)?;
    let manifest = inputs::load_manifest(&manifest, &variables)?;
    let expected = expectations(&manifest, &info, &image_info, staging_prefix.as_deref())?;

    let client = Arc::new(RegistryClient::new(client)?);
    let store = AnyStore::open(&staging, &client);
    let probes: BTreeSet<Probe> = expected.iter().flat_map(Expected::probes).collect();
    tracing::info!(
        "checking {} and {} in {}",
        summary::count(expected.len(), "image"),
        summary::count(probes.len(), "object"),
        store.name()
    );
    let found = staging::read_all(&store, probes).await?;
    let mut checks = judge(&expected, &found);

    if let Some(command) = &command {
        for target in command_targets(&expected, &found, &staging) {
            let verdict = run_command(command, &target, host).await?;
            checks.push(Check {
                kind: CheckKind::Command,
                subject: target.subject,
                verdict,
            });
        }
    }

    let table = report_table(&checks);
    print!("{}", table.markdown(Rows::on_stdout(verbose)));
    host.summary(&format!(
        "### imagepipe test\n\nStaging: `{}`\n\n{}",
        store.name(),
        table.markdown(Rows::All)
    ))
    .context("writing the step summary")?;
    let failed: Vec<&Check> = checks.iter().filter(|check| check.failed()).collect();
    // A failing run's error line is its summary: a refused run reports that once, with nothing logged.
    if !failed.is_empty() {
        let listed: Vec<String> = failed.iter().map(|check| check.to_string()).collect();
        return Err(Refusal {
            message: format!(
                "{} of {} failed in {}: {}",
                failed.len(),
                summary::count(checks.len(), "check"),
                store.name(),
                listed.join("; ")
            ),
            hint: Some(hint(&failed).to_owned()),
        }
        .into());
    }
    info.pipeline.record(stage_record(Stage::Test, run));
    let digest = files::write_atomically(&image_info, &info)?;
    let skipped = checks
        .iter()
        .filter(|check| matches!(check.verdict, Verdict::Skipped(_)))
        .count();
    tracing::info!(
        "ran {} in {}: {} passed, {skipped} skipped, 0 failed; {} HTTP requests",
        summary::count(checks.len(), "check"),
        store.name(),
        checks.len() - skipped,
        client.request_count()
    );
    ci::set_stage_outputs(host, Stage::Test, &image_info, &digest)
        .context("setting the step outputs")?;
    Ok(())
}

/// What to do about failed checks: a staging that differs from image-info is a pipeline problem; a failed test
/// command is the image's.
fn hint(failed: &[&Check]) -> &'static str {
    if failed.iter().all(|check| check.kind == CheckKind::Command) {
        "the output of the test command for each image is in the log group named after it"
    } else {
        "staging must hold exactly what image-info records: re-run the build for platform images, `imagepipe create-manifest` for indexes and shared tags"
    }
}

/// What a check is about, as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CheckKind {
    PlatformImage,
    SimpleTag,
    Index,
    SharedTag,
    Command,
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PlatformImage => "platform image",
            Self::SimpleTag => "simple tag",
            Self::Index => "index",
            Self::SharedTag => "shared tag",
            Self::Command => "test command",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Passed(String),
    Skipped(String),
    Failed(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passed(detail) => write!(f, "✓ passed: {detail}"),
            Self::Skipped(reason) => write!(f, "– skipped: {reason}"),
            Self::Failed(reason) => write!(f, "✗ failed: {reason}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    kind: CheckKind,
    subject: String,
    verdict: Verdict,
}

impl Check {
    fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Failed(_))
    }
}

/// `kind subject: reason`, as the refusal lists failed checks.
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match &self.verdict {
            Verdict::Passed(detail) | Verdict::Skipped(detail) | Verdict::Failed(detail) => detail,
        };
        write!(f, "{} {}: {reason}", self.kind, self.subject)
    }
}

/// The report: one row per check.
fn report_table(checks: &[Check]) -> ResultTable {
    let mut table = ResultTable::new(&["check", "subject", "result"]);
    for check in checks {
        table.push(
            check.failed(),
            &[
                &check.kind.to_string(),
                &check.subject,
                &check.verdict.to_string(),
            ],
        );
    }
    table
}
