//! `imagepipe post-build`: merges the build legs' fragments into one image-info and records the stage.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;

use crate::ci::{CiHost, RunIdentity};
use crate::files;
use crate::inputs;
use crate::model::ledger::Stage;
use crate::model::merge;
use crate::stages::{finish_with_outputs, stage_record, summary};

pub struct Settings {
    pub manifest: PathBuf,
    pub variables: BTreeMap<String, String>,
    pub fragments: PathBuf,
    pub output: PathBuf,
}

pub fn run(settings: Settings, run: &RunIdentity, host: &mut dyn CiHost) -> anyhow::Result<()> {
    let Settings {
        manifest,
        variables,
        fragments,
        output,
    } = settings;
    let manifest = inputs::load_manifest(&manifest, &variables)?;
    let files = inputs::list_fragments(&fragments)?;
    let selection = merge::select_latest_attempts(&files);
    for superseded in &selection.superseded {
        tracing::info!(
            "skipping `{}`: a later attempt of the same leg exists",
            superseded.display()
        );
    }
    let loaded = inputs::load_fragments(&selection.kept)?;
    for fragment in &loaded {
        inputs::require_manifest_registry(&fragment.info, &fragment.file, &manifest)?;
    }
    let mut info = merge::merge_fragments(&manifest, &loaded)
        .with_context(|| format!("merging the fragments in `{}`", fragments.display()))?;
    info.pipeline.record(stage_record(Stage::PostBuild, run));
    let digest = files::write_atomically(&output, &info)?;

    let counts = info.counts();
    tracing::info!(
        "merged {} ({} superseded) into `{}`: {}, {}, {}",
        summary::count(selection.kept.len(), "fragment"),
        selection.superseded.len(),
        output.display(),
        summary::count(counts.repos, "repo"),
        summary::count(counts.images, "image"),
        summary::count(counts.platforms, "platform"),
    );
    finish_with_outputs(host, Stage::PostBuild, &output, &digest, &info)
}
