//! Running an external tool (buildah, docker): its command line for messages, its output forwarded line by line
//! to the log and the end of it kept for the error, a missing program turned into [`BuildError::ToolMissing`].
//!
//! Command lines are shown in messages as they are: no secret is ever passed as an argument (credentials reach
//! the tools through their own config files, named by path).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};

use super::BuildError;

/// How many lines of a failed tool's output its error keeps.
pub const TAIL_LINES: usize = 40;

/// What to do when a tool is missing.
pub const INSTALL_HINT: &str = "install it with the system's package manager, or run `scripts/install-test-deps.sh` (as root, on Debian)";

/// How a tool's lines reach the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The progress of a build or push, which users follow in CI logs.
    Info,
    /// A query's chatter, shown with `--verbose`.
    Debug,
}

/// One run of an external tool.
#[derive(Debug, Clone)]
pub struct ToolCommand {
    /// The tool's name in messages: `buildah`, `docker`.
    tool: String,
    program: PathBuf,
    arguments: Vec<OsString>,
    environment: Vec<(OsString, OsString)>,
    progress: Progress,
    /// What to do when the program is not there.
    install_hint: String,
}

/// What a tool printed on its standard output, when it is data rather than progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub stdout: String,
}

impl ToolCommand {
    pub fn new(tool: &str, program: impl Into<PathBuf>) -> Self {
        Self {
            tool: tool.to_owned(),
            program: program.into(),
            arguments: Vec::new(),
            environment: Vec::new(),
            progress: Progress::Info,
            install_hint: format!("`{tool}` was not found: {INSTALL_HINT}"),
        }
    }

    pub fn arg(&mut self, argument: impl AsRef<OsStr>) -> &mut Self {
        self.arguments.push(argument.as_ref().to_owned());
        self
    }

    pub fn args<I>(&mut self, arguments: I) -> &mut Self
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        for argument in arguments {
            self.arg(argument);
        }
        self
    }

    /// Sets a variable in the tool's environment, on top of this process's.
    pub fn env(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.environment
            .push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn progress(&mut self, progress: Progress) -> &mut Self {
        self.progress = progress;
        self
    }

    /// What the missing-tool error says to do.
    pub fn install_hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.install_hint = hint.into();
        self
    }

    /// The command line, quoted as a shell would need it, for messages.
    pub fn command_line(&self) -> String {
        let mut line = quote(self.program.as_os_str());
        for argument in &self.arguments {
            line.push(' ');
            line += &quote(argument);
        }
        line
    }

    /// Runs the tool to completion, its standard output and error both forwarded to the log.
    pub async fn run(&self) -> Result<(), BuildError> {
        self.execute(false).await.map(|_| ())
    }

    /// Runs the tool to completion and returns its standard output; its standard error goes to the log.
    pub async fn output(&self) -> Result<Captured, BuildError> {
        self.execute(true).await
    }

    async fn execute(&self, capture: bool) -> Result<Captured, BuildError> {
        let mut child = self.spawn().await?;
        tracing::debug!(command = %self.command_line(), "running");
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let tail = std::cell::RefCell::new(Tail::default());
        let each = |line: &str| self.line(&mut tail.borrow_mut(), line);
        let stdout = async {
            match stdout {
                Some(stdout) if capture => read_all(stdout).await,
                Some(stdout) => {
                    forward(stdout, each).await;
                    String::new()
                }
                None => String::new(),
            }
        };
        let stderr = async {
            if let Some(stderr) = stderr {
                forward(stderr, each).await;
            }
        };
        let (captured, ()) = tokio::join!(stdout, stderr);
        let status = child.wait().await;
        let mut tail = tail.into_inner();
        let status = status.map_err(|error| self.failed(&format!("no status ({error})"), &tail))?;
        if status.success() {
            Ok(Captured { stdout: captured })
        } else {
            if capture {
                for line in captured.lines() {
                    tail.push(line);
                }
            }
            Err(self.failed(&describe(status), &tail))
        }
    }

    async fn spawn(&self) -> Result<Child, BuildError> {
        let spawned = crate::process::spawn(
            Command::new(&self.program)
                .args(&self.arguments)
                .envs(self.environment.iter().map(|(name, value)| (name, value)))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true),
        )
        .await;
        spawned.map_err(|error| BuildError::ToolMissing {
            tool: self.tool.clone(),
            hint: if error.kind() == io::ErrorKind::NotFound {
                self.install_hint.clone()
            } else {
                format!(
                    "`{}` could not be started ({error}): {}",
                    self.program.display(),
                    self.install_hint
                )
            },
        })
    }

    fn line(&self, tail: &mut Tail, line: &str) {
        match self.progress {
            Progress::Info => tracing::info!("{}: {line}", self.tool),
            Progress::Debug => tracing::debug!("{}: {line}", self.tool),
        }
        tail.push(line);
    }

    fn failed(&self, status: &str, tail: &Tail) -> BuildError {
        BuildError::ToolFailed {
            command: self.command_line(),
            status: status.to_owned(),
            output: tail.text(),
        }
    }
}

/// The path of `program` in the folders of `path` (a `PATH` value), if it is there and executable.
pub fn find_program(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|folder| folder.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// The last [`TAIL_LINES`] lines a tool printed, in the order they came.
#[derive(Debug, Default)]
struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: &str) {
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_owned());
    }

    fn text(&self) -> String {
        let lines: Vec<&str> = self.0.iter().map(String::as_str).collect();
        lines.join("\n")
    }
}

/// Calls `each` with every non-empty line of `stream`; a carriage return (progress redrawn in place) also ends a
/// line. Bytes that are not UTF-8 are replaced.
async fn forward(stream: impl AsyncRead + Unpin, mut each: impl FnMut(&str)) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                for line in String::from_utf8_lossy(&buffer).split(['\r', '\n']) {
                    let line = line.trim_end();
                    if !line.is_empty() {
                        each(line);
                    }
                }
            }
        }
    }
}

async fn read_all(mut stream: impl AsyncRead + Unpin) -> String {
    let mut bytes = Vec::new();
    // A read error leaves what came before it; the exit status says whether the tool succeeded.
    let _ = stream.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// `text` as one shell word: unchanged when it holds only safe characters, else in single quotes.
fn quote(text: &OsStr) -> String {
    let text = text.to_string_lossy();
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "-_./:=@,+%".contains(character));
    if safe {
        return text.into_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for character in text.chars() {
        if character == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(character);
        }
    }
    quoted.push('\'');
    quoted
}

/// `(name, value)` pairs as `FLAG name=value` arguments: `--build-arg`, `--label`.
pub fn pairs<'a>(
    flag: &'a str,
    pairs: impl IntoIterator<Item = (&'a String, &'a String)> + 'a,
) -> impl Iterator<Item = String> + 'a {
    pairs
        .into_iter()
        .flat_map(move |(name, value)| [flag.to_owned(), format!("{name}={value}")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> ToolCommand {
        let mut command = ToolCommand::new("sh", "/bin/sh");
        command.arg("-c").arg(script);
        command
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let mut command = ToolCommand::new("buildah", "buildah");
        command.args(["build", "--label", "a=b c", "-t", "x:1", "it's"]);
        assert_eq!(
            command.command_line(),
            "buildah build --label 'a=b c' -t x:1 'it'\\''s'"
        );
    }

    #[tokio::test]
    async fn a_failure_keeps_the_last_lines_of_both_streams() {
        // The pause puts the line on stderr after the others: the two streams are read as they come.
        let error = shell(
            "i=0; while [ $i -lt 50 ]; do echo out $i; i=$((i+1)); done; sleep 0.3; echo last >&2; exit 3",
        )
        .run()
        .await
        .expect_err("exits with 3");
        let BuildError::ToolFailed {
            command,
            status,
            output,
        } = &error
        else {
            panic!("{error:?}")
        };
        assert!(command.starts_with("/bin/sh -c "), "{command}");
        assert_eq!(status, "exit code 3");
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES, "{output}");
        // `last` is written after the pause, when stdout's lines are all in their pipe: it is read last even
        // where the reading task is starved. Without the pause, the two streams' order is scheduling's, and under
        // load `last` could be read first and pushed out of the tail.
        assert_eq!(lines[0], "out 11", "{output}");
        assert_eq!(lines[TAIL_LINES - 1], "last", "{output}");
    }

    #[tokio::test]
    async fn output_returns_standard_output_alone() {
        let captured = shell("echo data; echo noise >&2")
            .output()
            .await
            .expect("succeeds");
        assert_eq!(captured.stdout, "data\n");
    }

    #[tokio::test]
    async fn a_missing_program_says_what_to_install() {
        let mut command = ToolCommand::new("buildah", "/nonexistent/buildah");
        command.install_hint("install `buildah`");
        let error = command.run().await.expect_err("missing");
        assert!(
            matches!(&error, BuildError::ToolMissing { tool, .. } if tool == "buildah"),
            "{error:?}"
        );
        assert_eq!(error.hint().as_deref(), Some("install `buildah`"));
        assert!(
            ToolCommand::new("docker", "/nonexistent/docker")
                .install_hint
                .contains("scripts/install-test-deps.sh")
        );
    }

    #[tokio::test]
    async fn carriage_returns_end_lines() {
        let mut lines = Vec::new();
        forward(&b"one\rtwo\r\nthree\n\n"[..], |line| {
            lines.push(line.to_owned())
        })
        .await;
        assert_eq!(lines, ["one", "two", "three"]);
    }

    #[test]
    fn programs_are_found_on_the_path_given() {
        let folder = tempfile::tempdir().expect("temp dir");
        let program = folder.path().join("tool");
        std::fs::write(&program, "#!/bin/sh\n").expect("writes");
        let path = std::env::join_paths(["/nonexistent", &folder.path().display().to_string()])
            .expect("joins");
        assert_eq!(find_program("tool", Some(&path)), None, "not executable");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(find_program("tool", Some(&path)), Some(program));
        assert_eq!(find_program("tool", None), None);
    }
}
