//! `imagepipe publish-image-info`: commits the final image-info into a GitHub repository, where later runs
//! (the `matrix` stage's `--image-info`) read what is published.
//!
//! Without a manifest the file is committed byte for byte as written. With one, it is merged into the committed
//! file as publish merges (see [`crate::model::published`]): its images replace theirs, and what the manifest
//! no longer declares is dropped, so a partial release never erases the record of what it did not rebuild.
//! Content already there unchanged makes no commit. A commit that races another one (409, or 422 for a stale
//! `sha`) is worked out again on top of the new state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::ci::{CiHost, RunIdentity};
use crate::files;
use crate::github::{FileUpdate, GitHubClient, GitHubError, Repository, Token};
use crate::inputs;
use crate::model::image_info::ImageInfo;
use crate::model::manifest::Manifest;
use crate::model::published::merge_into_published;
use crate::stages::InvalidFlag;
use crate::store::registry::RetryPolicy;

pub struct Settings {
    pub image_info: PathBuf,
    /// With the manifest and its variables, the file is merged into the committed one.
    pub manifest: Option<(PathBuf, BTreeMap<String, String>)>,
    /// `OWNER/NAME`.
    pub repository: String,
    /// The file's path in the repository.
    pub path: String,
    /// The repository's default branch when absent.
    pub branch: Option<String>,
    /// Never logged; masked in CI logs by the caller.
    pub token: String,
    /// `https://api.github.com`, or a GitHub Enterprise Server's `https://HOST/api/v3`.
    pub api_url: String,
}

/// Reading and writing again after a lost race: a few quick attempts, since the other writer is done.
const CONFLICT_RETRY: RetryPolicy = RetryPolicy {
    attempts: 5,
    base_delay: Duration::from_millis(250),
    max_delay: Duration::from_secs(2),
};

pub async fn run(settings: Settings, host: &mut dyn CiHost) -> anyhow::Result<()> {
    let Settings {
        image_info,
        manifest,
        repository,
        path,
        branch,
        token,
        api_url,
    } = settings;
    let repository: Repository = repository.parse().map_err(flag_error("--repo"))?;
    let path = path.trim().trim_matches('/').to_owned();
    if path.is_empty() {
        return Err(
            InvalidFlag("--path: the file's path in the repository is empty".to_owned()).into(),
        );
    }
    let info = inputs::load_image_info(&image_info)?;
    let content = std::fs::read(&image_info)
        .with_context(|| format!("reading `{}`", image_info.display()))?;
    let manifest = match &manifest {
        Some((file, variables)) => {
            let manifest = inputs::load_manifest(file, variables)?;
            inputs::require_manifest_registry(&info, &image_info, &manifest)?;
            Some(manifest)
        }
        None => None,
    };
    let new_content = NewContent {
        info: &info,
        file: &image_info,
        as_written: &content,
        manifest: manifest.as_ref(),
        committed: PathBuf::from(format!("{repository}:{path}")),
    };
    let client = GitHubClient::new(&api_url, &Token::new(token), RetryPolicy::default())
        .map_err(flag_error("--api-url"))?;

    let branch = match branch {
        Some(branch) => branch,
        None => client
            .default_branch(&repository)
            .await
            .with_context(|| format!("finding the default branch of `{repository}`"))?,
    };
    let message = commit_message(&path, &RunIdentity::from_environment());
    let commit = commit(&client, &repository, &path, &branch, &message, &new_content)
        .await
        .with_context(|| format!("committing `{path}` to `{repository}` (branch `{branch}`)"))?;

    let changed = if commit.is_some() { "true" } else { "false" };
    host.set_output("commit", commit.as_deref().unwrap_or_default())
        .and_then(|()| host.set_output("changed", changed))
        .context("setting the step outputs `commit` and `changed`")?;
    match commit {
        Some(sha) => {
            tracing::info!("committed `{path}` to `{repository}` (branch `{branch}`): {sha}")
        }
        None => tracing::info!("`{path}` in `{repository}` (branch `{branch}`) is unchanged"),
    }
    Ok(())
}

/// What to commit, given what is committed now.
struct NewContent<'a> {
    info: &'a ImageInfo,
    file: &'a Path,
    as_written: &'a [u8],
    manifest: Option<&'a Manifest>,
    /// `OWNER/NAME:PATH`, how messages name the committed file.
    committed: PathBuf,
}

impl NewContent<'_> {
    /// The file as written, or merged into the committed one.
    fn over(&self, committed: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
        let (Some(manifest), Some(committed)) = (self.manifest, committed) else {
            return Ok(self.as_written.to_vec());
        };
        let published = inputs::parse_image_info(committed, &self.committed)?;
        inputs::require_manifest_registry(&published, &self.committed, manifest)?;
        let merged =
            merge_into_published(manifest, &published, &self.committed, self.info, self.file)?;
        tracing::info!("merged into the committed file: {merged}");
        Ok(files::to_bytes(&merged.info))
    }
}

/// Writes the new content unless it is there already: the new commit's SHA, or `None` when unchanged.
async fn commit(
    client: &GitHubClient,
    repository: &Repository,
    path: &str,
    branch: &str,
    message: &str,
    new_content: &NewContent<'_>,
) -> anyhow::Result<Option<String>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = client.file(repository, path, branch).await?;
        let content = new_content.over(current.as_ref().map(|file| file.content.as_slice()))?;
        if current.as_ref().is_some_and(|file| file.content == content) {
            return Ok(None);
        }
        let update = FileUpdate {
            message,
            content: &content,
            sha: current.as_ref().map(|file| file.sha.as_str()),
            branch,
        };
        match client.put_file(repository, path, update).await {
            Ok(commit) => return Ok(Some(commit.sha)),
            Err(error) if error.is_conflict() && attempt < CONFLICT_RETRY.attempts => {
                let delay = CONFLICT_RETRY.delay(attempt, None);
                tracing::info!(
                    "`{path}` changed while committing ({error}); reading it again (attempt {} of {}) in {:.1} s",
                    attempt + 1,
                    CONFLICT_RETRY.attempts,
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
            }
            Err(error) if error.is_conflict() => {
                return Err(anyhow::Error::new(error).context(format!(
                    "still conflicting with concurrent commits after {attempt} attempts"
                )));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// `Update {path} from imagepipe`, naming the CI run when there is one.
fn commit_message(path: &str, run: &RunIdentity) -> String {
    match &run.run_id {
        Some(run_id) => format!("Update {path} from imagepipe (run {run_id})"),
        None => format!("Update {path} from imagepipe"),
    }
}

/// A user's mistake in a flag is invalid input (exit code 2); anything else passes through.
fn flag_error(flag: &'static str) -> impl Fn(GitHubError) -> anyhow::Error {
    move |error| {
        if error.is_invalid_input() {
            InvalidFlag(format!("{flag}: {error}")).into()
        } else {
            error.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_messages_name_the_run_when_known() {
        let none = RunIdentity::default();
        assert_eq!(
            commit_message("info/image-info.json", &none),
            "Update info/image-info.json from imagepipe"
        );
        let run = RunIdentity {
            run_id: Some("1234".to_owned()),
            attempt: Some(2),
        };
        assert_eq!(
            commit_message("image-info.json", &run),
            "Update image-info.json from imagepipe (run 1234)"
        );
    }
}
