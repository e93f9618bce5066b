//! One module per stage. Each takes its own settings struct, loads and checks its inputs, checks the ledger on
//! entry, and writes its outputs atomically.

pub mod build;
pub mod create_manifest;
pub mod fragment;
pub mod generate_key;
pub mod matrix;
pub mod post_build;
pub mod publish;
pub mod publish_image_info;
pub mod record;
pub mod result_table;
pub mod run;
pub mod schema;
pub mod sign;
pub mod summary;
pub mod test;
pub mod validate;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::Context;

use crate::ci::RunIdentity;
use crate::model::ledger::{Stage, StageRecord};
use crate::model::reference::{REPOSITORY_RULE, is_valid_repository};
use crate::store::{AnyStore, Store, tag_sets};

/// The name of the built-in variable that makes tags unique per run.
const UNIQUE_ID: &str = "UniqueId";

/// Variable overrides for a manifest: the `--var` values, plus `$(UniqueId)` unless given. It must be the same
/// for every stage of one run, so it comes from the CI run id; outside CI, from the current time.
pub fn manifest_variables(
    given: Vec<(String, String)>,
    run: &RunIdentity,
) -> BTreeMap<String, String> {
    let mut variables: BTreeMap<String, String> = given.into_iter().collect();
    if !variables.contains_key(UNIQUE_ID) {
        let unique = run.run_id.clone().unwrap_or_else(|| {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            now.chars().filter(char::is_ascii_digit).collect()
        });
        variables.insert(UNIQUE_ID.to_owned(), unique);
    }
    variables
}

/// The ledger entry a stage appends when it completes.
pub fn stage_record(stage: Stage, run: &RunIdentity) -> StageRecord {
    StageRecord {
        stage,
        completed: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        tool: concat!("imagepipe ", env!("CARGO_PKG_VERSION")).to_owned(),
        run_id: run.run_id.clone(),
        attempt: run.attempt,
    }
}

/// What a stage that wrote image-info ends with: the step outputs (where the file is, its SHA-256, the stage) and
/// the table of its images in the step summary.
pub fn finish_with_outputs(
    host: &mut dyn crate::ci::CiHost,
    stage: Stage,
    output: &std::path::Path,
    digest: &crate::model::reference::Digest,
    info: &crate::model::image_info::ImageInfo,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    crate::ci::set_stage_outputs(host, stage, output, digest)
        .context("setting the step outputs")?;
    host.summary(&summary::image_table(
        &format!("imagepipe {}", stage.name()),
        info,
    ))
    .context("writing the step summary")?;
    Ok(())
}

/// Sets a step output that lists things, as a JSON array of strings.
pub fn set_list_output(
    host: &mut dyn crate::ci::CiHost,
    name: &str,
    items: &[String],
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let json = serde_json::to_string(items).context("encoding a list output")?;
    host.set_output(name, &json)
        .with_context(|| format!("setting the step output `{name}`"))
}

/// A stage refusing to run because a precondition is not met (exit code 3): what is missing, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub message: String,
    pub hint: Option<String>,
}

/// A flag whose value is wrong in a way clap cannot see (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidFlag(pub String);

/// The tags of each staging repository, where the `.sig` tags show which digests have signatures; a listing
/// that fails stops the stage, naming the repository.
pub async fn signature_listings(
    store: &AnyStore,
    repositories: BTreeSet<String>,
    at_once: usize,
) -> anyhow::Result<HashMap<String, HashSet<String>>> {
    tag_sets(store, repositories, at_once)
        .await
        .into_iter()
        .map(|(repository, tags)| {
            let tags = tags.with_context(|| {
                format!("listing the signatures in `{}/{repository}`", store.name())
            })?;
            Ok((repository, tags))
        })
        .collect()
}

/// Checks `--staging-prefix`, which heads every repository path in staging and so goes into URL paths like the
/// repository names image-info gives: it must be repository path components itself. Slashes at either end are
/// tolerated, as [`crate::store::staging_repository`] drops them.
pub fn check_staging_prefix(prefix: Option<&str>) -> Result<(), InvalidFlag> {
    match prefix.map(|prefix| prefix.trim_matches('/')) {
        Some(path) if !path.is_empty() && !is_valid_repository(path) => Err(InvalidFlag(format!(
            "`--staging-prefix` is `{path}`: expected {REPOSITORY_RULE}, such as `staging/<run-id>`"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_prefixes_are_repository_paths() {
        for good in [
            None,
            Some(""),
            Some("staging/123"),
            Some("staging/123/"),
            Some("/staging/123"),
        ] {
            assert!(check_staging_prefix(good).is_ok(), "{good:?}");
        }
        for bad in [
            "../../v2/x",
            "staging/1?x=y",
            "Staging/1",
            "staging//1",
            "a/../b",
        ] {
            assert!(check_staging_prefix(Some(bad)).is_err(), "{bad}");
        }
    }
}
