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
    let mut child = crate::process::spawn_blocking(
        Command::new(program)
            .args(arguments.map(OsStr::new))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .map_err(|error| format!("could not be started ({error})"))?;
    let started = Instant::now();
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
        let cases = [
            (BuilderChoice::Buildx, ResolvedBuilder::Buildx),
            (BuilderChoice::Buildah, ResolvedBuilder::Buildah),
            (BuilderChoice::Native, ResolvedBuilder::Native),
        ];
        for (choice, resolved) in cases {
            assert_eq!(resolve_with(choice, &probe), resolved, "{choice}");
        }
    }

    #[test]
    fn auto_takes_buildx_then_buildah_then_native() {
        // What the fake `docker` does, whether buildah is installed, what `auto` means.
        let cases = [
            ("exit 0", true, ResolvedBuilder::Buildx),
            ("exit 1", true, ResolvedBuilder::Buildah),
            // An engine that answers, without the buildx plugin.
            ("[ \"$1\" = info ]", true, ResolvedBuilder::Buildah),
            ("exit 1", false, ResolvedBuilder::Native),
            // An engine that hangs counts as absent.
            ("exec sleep 30", false, ResolvedBuilder::Native),
        ];
        for (script, buildah, resolved) in cases {
            let (_folder, probe) = machine(script, buildah);
            let started = Instant::now();
            assert_eq!(
                resolve_with(BuilderChoice::Auto, &probe),
                resolved,
                "{script}, buildah installed: {buildah}"
            );
            assert!(started.elapsed() < Duration::from_secs(10), "{script}");
        }
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
