//! Running the real `imagepipe` binary as a CI host runs it: arguments, the host's environment, standard input.
//!
//! The environment starts clean of whatever the machine running the tests has set: no CI host, no run identity,
//! no credentials, none of the `IMAGEPIPE_*` variables flags read, and a Docker config that does not exist. A
//! test adds back what its scenario needs with [`Imagepipe::env`].

use std::ffi::OsStr;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// The path of the binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_imagepipe");

/// What the binary reads from a CI host (`src/ci`) and the credentials it takes from the environment; removed
/// unless a test sets them. Every `IMAGEPIPE_*` variable is removed as well, `IMAGEPIPE_PASSWORD` among them.
const CLEARED_VARIABLES: [&str; 11] = [
    "GITHUB_ACTIONS",
    "GITHUB_OUTPUT",
    "GITHUB_STEP_SUMMARY",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_TOKEN",
    "TF_BUILD",
    "AGENT_TEMPDIRECTORY",
    "BUILD_BUILDID",
    "SYSTEM_JOBATTEMPT",
    "COSIGN_PASSWORD",
];

/// One run of the binary, built up like a [`Command`]; later settings override earlier ones.
#[must_use = "nothing runs until `run`"]
pub struct Imagepipe {
    command: Command,
    stdin: Option<String>,
}

/// How a run ended: its exit code (None when a signal ended it) and its output as text.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Imagepipe {
    /// The binary, with no arguments yet, in the clean environment.
    pub fn new() -> Self {
        Self::clean(Command::new(BINARY))
    }

    /// `bash script` with `IMAGEPIPE` naming the binary, in the same clean environment: for scripts that run the
    /// binary themselves, as a pipeline's steps do.
    pub fn script(script: &str) -> Self {
        let mut command = Command::new("bash");
        command.arg(script).env("IMAGEPIPE", BINARY);
        Self::clean(command)
    }

    fn clean(mut command: Command) -> Self {
        for variable in CLEARED_VARIABLES {
            command.env_remove(variable);
        }
        for (variable, _) in std::env::vars_os() {
            if variable.to_string_lossy().starts_with("IMAGEPIPE_") {
                command.env_remove(variable);
            }
        }
        command.env("DOCKER_CONFIG", "/nonexistent");
        Self {
            command,
            stdin: None,
        }
    }

    pub fn arg(mut self, argument: impl AsRef<OsStr>) -> Self {
        self.command.arg(argument);
        self
    }

    pub fn args(mut self, arguments: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        self.command.args(arguments);
        self
    }

    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(name, value);
        self
    }

    pub fn envs(
        mut self,
        variables: impl IntoIterator<Item = (impl AsRef<OsStr>, impl AsRef<OsStr>)>,
    ) -> Self {
        self.command.envs(variables);
        self
    }

    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> Self {
        self.command.env_remove(name);
        self
    }

    /// Runs the binary in `folder`, so that relative paths in its arguments are inside it.
    pub fn current_dir(mut self, folder: impl AsRef<std::path::Path>) -> Self {
        self.command.current_dir(folder);
        self
    }

    /// `text` as standard input, closed after it; without it, standard input is empty.
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_owned());
        self
    }

    /// The command as set up so far, for a test that manages the process itself (one that kills the registry
    /// while the binary runs); what [`Imagepipe::stdin`] set is not part of it.
    pub fn command(self) -> Command {
        self.command
    }

    /// Runs to the end. The input is written before the output is read, so keep it small (under a pipe's 64 KiB).
    pub fn run(mut self) -> Ran {
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {:?}: {error}", self.command));
        let mut stdin = child.stdin.take().expect("stdin is piped");
        if let Some(text) = &self.stdin {
            // A binary that exits without reading its input closes the pipe: its exit code tells the test.
            if let Err(error) = stdin.write_all(text.as_bytes()) {
                assert_eq!(
                    error.kind(),
                    std::io::ErrorKind::BrokenPipe,
                    "writing standard input: {error}"
                );
            }
        }
        drop(stdin);
        let output = child.wait_with_output().expect("the binary runs");
        Ran {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Default for Imagepipe {
    fn default() -> Self {
        Self::new()
    }
}

impl Ran {
    /// This run, when it exited with 0; panics with its stderr otherwise.
    #[track_caller]
    pub fn succeeded(&self) -> &Self {
        assert_eq!(self.code, Some(0), "{}", self.stderr);
        self
    }
}

/// The `error:` lines of a run's stderr: an error is reported once, so a test counts these.
pub fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect()
}

/// For helpers that hand the three parts on as a tuple.
impl From<Ran> for (Option<i32>, String, String) {
    fn from(ran: Ran) -> Self {
        (ran.code, ran.stdout, ran.stderr)
    }
}
