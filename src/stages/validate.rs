//! `imagepipe validate`: loads the files the way every stage does and reports every problem at once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::inputs::{self, InputError};
use crate::stages::summary::count;

pub struct Settings {
    pub manifest: Option<PathBuf>,
    pub image_info: Option<PathBuf>,
    pub variables: BTreeMap<String, String>,
}

pub fn run(settings: Settings) -> anyhow::Result<()> {
    let Settings {
        manifest,
        image_info,
        variables,
    } = settings;
    let mut problems: Vec<InputError> = Vec::new();
    if let Some(file) = &manifest {
        match inputs::load_manifest(file, &variables) {
            Ok(loaded) => {
                let images = loaded.repos.iter().flat_map(|repo| &repo.images);
                let platforms = images.clone().map(|image| image.platforms.len()).sum();
                tracing::info!(
                    "`{}` is valid: {}, {}, {}",
                    file.display(),
                    count(loaded.repos.len(), "repo"),
                    count(images.count(), "image"),
                    count(platforms, "platform")
                );
            }
            Err(error) => problems.push(error),
        }
    }
    if let Some(file) = &image_info {
        match inputs::load_image_info(file) {
            Ok(loaded) => {
                let counts = loaded.counts();
                tracing::info!(
                    "`{}` is valid: {}, {}, {}, {}",
                    file.display(),
                    count(counts.repos, "repo"),
                    count(counts.images, "image"),
                    count(counts.platforms, "platform"),
                    count(counts.indexes, "manifest list")
                );
            }
            Err(error) => problems.push(error),
        }
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems.remove(0).into()),
        _ => {
            // A file that could not be read at all says more than the other's issues.
            if let Some(unreadable) = problems
                .iter()
                .position(|problem| problem.issues().is_empty())
            {
                return Err(problems.remove(unreadable).into());
            }
            // Both files are wrong: one error listing the issues of both.
            let issues = problems
                .iter()
                .flat_map(|problem| problem.issues().to_vec())
                .collect();
            let both = [manifest, image_info].into_iter().flatten();
            let names: Vec<String> = both.map(|file| file.display().to_string()).collect();
            Err(InputError::Invalid {
                file: PathBuf::from(names.join("` and `")),
                issues,
            }
            .into())
        }
    }
}
