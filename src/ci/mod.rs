//! CI hosts: how a stage's outputs, errors, log groups and summary reach GitHub Actions, Azure Pipelines or a
//! terminal. Hosts carry what stages hand them and make no decisions.

mod azure;
mod github;
mod local;

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

pub use azure::AzurePipelines;
pub use github::GitHubActions;
pub use local::Local;

use crate::model::ledger::Stage;
use crate::model::reference::Digest;

/// The protocol of the CI system the binary runs under.
pub trait CiHost {
    /// Sets a step output that later steps or jobs read.
    fn set_output(&mut self, name: &str, value: &str) -> io::Result<()>;
    /// Reports an error, attached to `file` where one is known.
    fn error(&mut self, message: &str, file: Option<&Path>);
    /// Reports a warning, attached to `file` where one is known.
    fn warning(&mut self, message: &str, file: Option<&Path>);
    /// Starts a collapsible section of the log.
    fn begin_group(&mut self, title: &str);
    fn end_group(&mut self);
    /// Asks the host to hide `secret` wherever it would appear in the log.
    fn mask(&mut self, secret: &str);
    /// Does what [`CiHost::mask`] does, from anywhere and at any time: for secrets found while a stage runs,
    /// such as registry credentials read from Docker's config when a registry is first reached.
    fn masker(&self) -> Masker;
    /// Adds markdown to the step or job summary.
    fn summary(&mut self, markdown: &str) -> io::Result<()>;
}

/// Hides a secret from the log; see [`CiHost::masker`].
pub type Masker = Arc<dyn Fn(&str) + Send + Sync>;

/// Where a host writes its commands (the step's standard output), shared with the maskers it hands out.
#[derive(Clone)]
pub(crate) struct CommandWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl CommandWriter {
    pub(crate) fn new(writer: Box<dyn Write + Send>) -> Self {
        Self(Arc::new(Mutex::new(writer)))
    }

    /// Writes one command line and flushes it, so that the runner reads it before anything written after.
    pub(crate) fn line(&self, line: &str) {
        let mut writer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A lost command must not fail the stage that is reporting.
        let _ = writeln!(writer, "{line}");
        let _ = writer.flush();
    }
}

/// The lines of a secret that a host is asked to hide, each on its own: runners match a log line by line, so a
/// multi-line secret (a PEM key) registered whole would never match.
pub(crate) fn secret_lines(secret: &str) -> impl Iterator<Item = &str> {
    secret.lines().filter(|line| !line.trim().is_empty())
}

/// A kebab-case name as Azure Pipelines names a task's inputs and output variables: letters and digits only,
/// camelCase (`image-info-sha256` is `imageInfoSha256`).
pub fn camel_case(name: &str) -> String {
    let mut camel = String::new();
    let mut upper = false;
    for character in name.chars() {
        if !character.is_ascii_alphanumeric() {
            upper = true;
        } else if upper {
            camel.push(character.to_ascii_uppercase());
            upper = false;
        } else {
            camel.push(character);
        }
    }
    camel
}

/// The CI systems the binary knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    GitHubActions,
    AzurePipelines,
    Local,
}

/// Which CI system the environment says this is: `GITHUB_ACTIONS=true`, `TF_BUILD=True`, else none.
pub fn detect_kind() -> HostKind {
    let is = |name: &str, value: &str| {
        std::env::var_os(name).is_some_and(|set| set.eq_ignore_ascii_case(value))
    };
    if is("GITHUB_ACTIONS", "true") {
        HostKind::GitHubActions
    } else if is("TF_BUILD", "true") {
        HostKind::AzurePipelines
    } else {
        HostKind::Local
    }
}

/// Picks the host from the environment (see [`detect_kind`]).
pub fn detect() -> Box<dyn CiHost> {
    let variable = |name: &str| std::env::var_os(name);
    let kind = detect_kind();
    if kind == HostKind::GitHubActions {
        Box::new(GitHubActions::new(
            variable("GITHUB_OUTPUT").map(Into::into),
            variable("GITHUB_STEP_SUMMARY").map(Into::into),
            Box::new(io::stdout()),
        ))
    } else if kind == HostKind::AzurePipelines {
        let summary_folder = variable("AGENT_TEMPDIRECTORY")
            .map(Into::into)
            .unwrap_or_else(std::env::temp_dir);
        Box::new(AzurePipelines::new(summary_folder, Box::new(io::stdout())))
    } else {
        Box::new(Local)
    }
}

/// The source being built, as the CI host names it: the repository's web address and the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRevision {
    /// `https://github.com/OWNER/REPO`.
    pub repository_url: String,
    pub revision: String,
}

impl SourceRevision {
    /// From GitHub Actions' `GITHUB_SERVER_URL`, `GITHUB_REPOSITORY` and `GITHUB_SHA`, or Azure Pipelines'
    /// `BUILD_REPOSITORY_URI` and `BUILD_SOURCEVERSION`; `None` outside CI.
    pub fn from_environment() -> Option<Self> {
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        match (variable("GITHUB_SERVER_URL"), variable("GITHUB_REPOSITORY")) {
            (Some(server), Some(repository)) => Some(Self {
                repository_url: format!("{}/{repository}", server.trim_end_matches('/')),
                revision: variable("GITHUB_SHA")?,
            }),
            _ => Some(Self {
                repository_url: variable("BUILD_REPOSITORY_URI")?
                    .trim_end_matches('/')
                    .trim_end_matches(".git")
                    .to_owned(),
                revision: variable("BUILD_SOURCEVERSION")?,
            }),
        }
    }

    /// Where `path` can be read at this revision, as ImageBuilder records `commitUrl`.
    pub fn file_url(&self, path: &str) -> String {
        format!(
            "{}/blob/{}/{}",
            self.repository_url,
            self.revision,
            path.trim_start_matches("./")
        )
    }
}

/// Which CI run this is, as the host names it: recorded in the ledger and used for the `$(UniqueId)` built-in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunIdentity {
    pub run_id: Option<String>,
    pub attempt: Option<u32>,
}

impl RunIdentity {
    pub fn from_environment() -> Self {
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let (run, attempt) = if variable("GITHUB_ACTIONS").is_some() {
            ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT")
        } else {
            ("BUILD_BUILDID", "SYSTEM_JOBATTEMPT")
        };
        Self {
            run_id: variable(run),
            attempt: variable(attempt).and_then(|attempt| attempt.parse().ok()),
        }
    }
}

/// The outputs every stage that writes image-info sets: where it is, its SHA-256 (so the next stage can refuse
/// a file changed on the way) and which stage wrote it.
pub fn set_stage_outputs(
    host: &mut dyn CiHost,
    stage: Stage,
    image_info: &Path,
    digest: &Digest,
) -> io::Result<()> {
    host.set_output("image-info", &image_info.display().to_string())?;
    host.set_output("image-info-sha256", digest.hex())?;
    host.set_output("stage", stage.name())
}

/// A writer that keeps what hosts print, for tests of the protocols.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl Captured {
    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_named_at_its_revision_as_image_builder_records_it() {
        let source = SourceRevision {
            repository_url: "https://github.com/dotnet/dotnet-docker".to_owned(),
            revision: "f003630f".to_owned(),
        };
        assert_eq!(
            source.file_url("./src/aspnet/6.0/bullseye-slim/amd64/Dockerfile"),
            "https://github.com/dotnet/dotnet-docker/blob/f003630f/src/aspnet/6.0/bullseye-slim/amd64/Dockerfile"
        );
    }
}
