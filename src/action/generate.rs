//! `imagepipe ci generate [--check]`: writes every file made from the declarations, or lists those that differ
//! from what the declarations make now (exit 1), so that a committed file cannot drift.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::declaration::stages;
use super::{azure_files, docs, github_files};
use crate::files;

/// The shim both hosts run; each Azure task is packaged on its own, so the task holds a copy of it and of its
/// pins.
const SHIM: &str = "dist/index.cjs";
/// The release the shim downloads, pinned by version and checksums; the task's copy sits beside its shim.
const PINS: &str = "dist/manifest.json";
const TASK_FOLDER: &str = "azure-task/ImagePipeV1";

/// The files stale against the declarations.
#[derive(Debug, thiserror::Error)]
#[error("{} out of date; run `imagepipe ci generate`: {}", if .0.len() == 1 { "1 generated file is" } else { "generated files are" }, .0.iter().map(|file| format!("`{}`", file.display())).collect::<Vec<_>>().join(", "))]
pub struct Stale(pub Vec<PathBuf>);

/// Every generated file under `root`, with its content.
pub fn generated_files(root: &Path) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    let stages = stages();
    let mut generated = vec![(
        PathBuf::from("action.yml"),
        github_files::umbrella_action(&stages).into_bytes(),
    )];
    for stage in &stages {
        let folder = Path::new("dist").join(stage.name);
        generated.push((
            folder.join("action.yml"),
            github_files::stage_action(stage).into_bytes(),
        ));
        generated.push((
            folder.join("main.cjs"),
            github_files::stage_main(stage).into_bytes(),
        ));
    }
    generated.push((
        Path::new(TASK_FOLDER).join("task.json"),
        azure_files::task_json(&stages, env!("CARGO_PKG_VERSION")).into_bytes(),
    ));
    let shim = std::fs::read(root.join(SHIM))
        .with_context(|| format!("reading the shim `{}`", root.join(SHIM).display()))?;
    generated.push((Path::new(TASK_FOLDER).join("index.cjs"), shim));
    let pins = std::fs::read(root.join(PINS))
        .with_context(|| format!("reading the release pins `{}`", root.join(PINS).display()))?;
    generated.push((Path::new(TASK_FOLDER).join("manifest.json"), pins));
    generated.push((
        PathBuf::from("docs/inputs.md"),
        docs::inputs_reference(&stages).into_bytes(),
    ));
    Ok(generated)
}

/// Writes the generated files that differ; with `check`, writes nothing and fails naming them.
pub fn run(root: &Path, check: bool) -> anyhow::Result<()> {
    let mut stale = Vec::new();
    for (file, content) in generated_files(root)? {
        let path = root.join(&file);
        if std::fs::read(&path).ok().as_deref() == Some(content.as_slice()) {
            continue;
        }
        if !check {
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder)
                    .with_context(|| format!("creating `{}`", folder.display()))?;
            }
            files::write_bytes_atomically(&path, &content, 0o644)?;
            tracing::info!("wrote `{}`", file.display());
        }
        stale.push(file);
    }
    if check && !stale.is_empty() {
        return Err(Stale(stale).into());
    }
    if stale.is_empty() {
        tracing::info!("every generated file is up to date");
    }
    Ok(())
}
