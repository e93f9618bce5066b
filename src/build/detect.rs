//! Which builder `--builder auto` means on this machine: buildx where a Docker engine answers, else buildah where
//! it is installed, else the native builder, which needs neither.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::buildx::{DOCKER_VARIABLE, docker_program};
use super::tool::find_program;

/// How long `docker info` may take to answer before the engine counts as absent.
pub const DOCKER_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The builder asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuilderChoice {
    #[default]
    Auto,
    Buildah,
    Buildx,
    Native,
}

/// The builder that will build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedBuilder {
    Buildah,
    Buildx,
    Native,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a builder: expected `auto`, `buildx`, `buildah` or `native`")]
pub struct BuilderChoiceParseError {
    pub text: String,
}

impl BuilderChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Buildah => "buildah",
            Self::Buildx => "buildx",
            Self::Native => "native",
        }
    }
}

impl FromStr for BuilderChoice {
    type Err = BuilderChoiceParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Auto, Self::Buildah, Self::Buildx, Self::Native]
            .into_iter()
            .find(|choice| choice.as_str() == text)
            .ok_or_else(|| BuilderChoiceParseError {
                text: text.to_owned(),
            })
    }
}

impl fmt::Display for BuilderChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ResolvedBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Buildah => "buildah",
            Self::Buildx => "buildx",
            Self::Native => "native",
        })
    }
}

/// What detection looks at.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The `docker` program (see [`docker_program`]).
    pub docker: PathBuf,
    /// The `PATH` buildah is looked for on.
    pub path: Option<OsString>,
    pub timeout: Duration,
}

impl Probe {
    /// `IMAGEPIPE_DOCKER` or `docker` on `PATH`, buildah on `PATH`, [`DOCKER_ANSWER_TIMEOUT`].
    pub fn from_environment() -> Self {
        let path = std::env::var_os("PATH");
        Self {
            docker: docker_program(std::env::var_os(DOCKER_VARIABLE), path.as_deref()),
            path,
            timeout: DOCKER_ANSWER_TIMEOUT,
        }
    }
}

/// The builder `choice` means on this machine. Blocks for up to twice [`DOCKER_ANSWER_TIMEOUT`] for `auto`.
pub fn resolve(choice: BuilderChoice) -> ResolvedBuilder {
    resolve_with(choice, &Probe::from_environment())
}

/// [`resolve`] looking at `probe` instead of the environment.
pub fn resolve_with(choice: BuilderChoice, probe: &Probe) -> ResolvedBuilder {
    match choice {
        BuilderChoice::Buildah => ResolvedBuilder::Buildah,
        BuilderChoice::Buildx => ResolvedBuilder::Buildx,
        BuilderChoice::Native => ResolvedBuilder::Native,
        BuilderChoice::Auto => match docker_answers(probe) {
            Ok(()) => {
                tracing::info!(
                    "building with buildx: `{} info` answered",
                    probe.docker.display()
                );
                ResolvedBuilder::Buildx
            }
            Err(why) if find_program("buildah", probe.path.as_deref()).is_some() => {
                tracing::info!("building with buildah: {why}");
                ResolvedBuilder::Buildah
            }
            Err(why) => {
                tracing::info!(
                    "building with the native builder: {why}, and buildah is not on `PATH`"
                );
                ResolvedBuilder::Native
            }
        },
    }
}

/// Whether a Docker engine answers `docker info` and the buildx plugin runs, each within the probe's timeout;
/// the error says why not.
fn docker_answers(probe: &Probe) -> Result<(), String> {
    let docker = probe.docker.display();
    run_within(&probe.docker, ["info"], probe.timeout)
        .map_err(|why| format!("`{docker} info` {why}"))?;
    run_within(&probe.docker, ["buildx", "version"], probe.timeout)
        .map_err(|why| format!("`{docker} buildx version` {why}"))
}

/// Runs `program` with its output discarded; the error completes "`program …` …".
fn run_within<const N: usize>(
    program: &PathBuf,
    arguments: [&str; N],
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut child = loop {
        let spawned = Command::new(program)
            .args(arguments.map(OsStr::new))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => break child,
            // A program just written (by a test) is busy while another thread forks with it open.
            Err(error)
                if error.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && started.elapsed() < timeout =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => return Err(format!("could not be started ({error})")),
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("failed ({status})")),
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not answer within {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => return Err(format!("could not be waited for ({error})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;

    use super::*;

    /// A folder with a fake `docker` running `script` and, when asked, a fake `buildah`.
    fn machine(script: &str, buildah: bool) -> (tempfile::TempDir, Probe) {
        let folder = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = folder.path().join(name);
            std::fs::write(&path, text).expect("writes");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        };
        write("docker", &format!("#!/bin/sh\n{script}\n"));
        if buildah {
            write("buildah", "#!/bin/sh\n");
        }
        let probe = Probe {
            docker: folder.path().join("docker"),
            path: Some(folder.path().as_os_str().to_owned()),
            timeout: Duration::from_millis(500),
        };
        (folder, probe)
    }

    #[test]
    fn choices_parse_and_print() {
        for text in ["auto", "buildah", "buildx", "native"] {
            let choice: BuilderChoice = text.parse().expect("parses");
            assert_eq!(choice.to_string(), text);
        }
        assert!("docker".parse::<BuilderChoice>().is_err());
    }

    #[test]
    fn an_explicit_choice_is_taken_as_it_is() {
        let (_folder, probe) = machine("exit 1", false);
        assert_eq!(
            resolve_with(BuilderChoice::Buildx, &probe),
            ResolvedBuilder::Buildx
        );
        assert_eq!(
            resolve_with(BuilderChoice::Buildah, &probe),
            ResolvedBuilder::Buildah
        );
        assert_eq!(
            resolve_with(BuilderChoice::Native, &probe),
            ResolvedBuilder::Native
        );
    }

    #[test]
    fn auto_takes_buildx_where_the_engine_answers() {
        let (_folder, probe) = machine("exit 0", true);
        assert_eq!(
            resolve_with(BuilderChoice::Auto, &probe),
            ResolvedBuilder::Buildx
        );
    }

    #[test]
    fn auto_takes_buildah_without_an_engine_or_without_buildx() {
        let (_folder, probe) = machine("exit 1", true);
        assert_eq!(
            resolve_with(BuilderChoice::Auto, &probe),
            ResolvedBuilder::Buildah
        );
        let (_folder, probe) = machine("[ \"$1\" = info ]", true);
        assert_eq!(
            resolve_with(BuilderChoice::Auto, &probe),
            ResolvedBuilder::Buildah
        );
    }

    #[test]
    fn an_engine_that_hangs_counts_as_absent() {
        let (_folder, probe) = machine("exec sleep 30", false);
        let started = Instant::now();
        assert_eq!(
            resolve_with(BuilderChoice::Auto, &probe),
            ResolvedBuilder::Native
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn auto_takes_native_with_neither() {
        let probe = Probe {
            docker: Path::new("/nonexistent/docker").to_owned(),
            path: Some(OsString::from("/nonexistent")),
            timeout: Duration::from_millis(500),
        };
        assert_eq!(
            resolve_with(BuilderChoice::Auto, &probe),
            ResolvedBuilder::Native
        );
    }
}
