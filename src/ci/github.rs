//! GitHub Actions workflow commands and environment files.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CiHost, CommandWriter, Masker, secret_lines};

pub struct GitHubActions {
    output_file: Option<PathBuf>,
    summary_file: Option<PathBuf>,
    /// Where workflow commands go: the runner reads them from the step's standard output.
    commands: CommandWriter,
}

impl GitHubActions {
    pub fn new(
        output_file: Option<PathBuf>,
        summary_file: Option<PathBuf>,
        commands: Box<dyn Write + Send>,
    ) -> Self {
        Self {
            output_file,
            summary_file,
            commands: CommandWriter::new(commands),
        }
    }

    fn command(&mut self, line: &str) {
        self.commands.line(line);
    }

    fn annotation(&mut self, kind: &str, message: &str, file: Option<&Path>) {
        let properties = file
            .map(|file| format!(" file={}", escape_property(&file.display().to_string())))
            .unwrap_or_default();
        self.command(&format!("::{kind}{properties}::{}", escape_data(message)));
    }
}

fn append(file: &Path, text: &str) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?
        .write_all(text.as_bytes())
}

impl CiHost for GitHubActions {
    fn set_output(&mut self, name: &str, value: &str) -> io::Result<()> {
        let Some(file) = self.output_file.clone() else {
            return Err(io::Error::other("GITHUB_OUTPUT is not set"));
        };
        append(&file, &output_entry(name, value))
    }

    fn error(&mut self, message: &str, file: Option<&Path>) {
        self.annotation("error", message, file);
    }

    fn warning(&mut self, message: &str, file: Option<&Path>) {
        self.annotation("warning", message, file);
    }

    fn begin_group(&mut self, title: &str) {
        self.command(&format!("::group::{}", escape_data(title)));
    }

    fn end_group(&mut self) {
        self.command("::endgroup::");
    }

    fn mask(&mut self, secret: &str) {
        mask(&self.commands, secret);
    }

    fn masker(&self) -> Masker {
        let commands = self.commands.clone();
        Arc::new(move |secret| mask(&commands, secret))
    }

    fn summary(&mut self, markdown: &str) -> io::Result<()> {
        match &self.summary_file {
            Some(file) => append(file, &format!("{markdown}\n")),
            None => Ok(()),
        }
    }
}

/// `::add-mask::` for each line of the secret: the runner masks line by line.
fn mask(commands: &CommandWriter, secret: &str) {
    for line in secret_lines(secret) {
        commands.line(&format!("::add-mask::{}", escape_data(line)));
    }
}

/// One entry of the `GITHUB_OUTPUT` file; multi-line values use the heredoc form with a delimiter absent from
/// the value.
/// `name<<DELIMITER`, the value, `DELIMITER`: with a random delimiter that does not occur in the value, no value
/// (one a registry or a file supplied) can end the entry early and set another output.
fn output_entry(name: &str, value: &str) -> String {
    let delimiter = loop {
        let delimiter = format!(
            "ghadelimiter_{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        if !value.contains(&delimiter) {
            break delimiter;
        }
    };
    format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ci::Captured;

    #[test]
    fn speaks_the_workflow_command_protocol() {
        let folder = tempfile::tempdir().expect("temp dir");
        let output = folder.path().join("output");
        let summary = folder.path().join("summary");
        let captured = Captured::default();
        let mut host = GitHubActions::new(
            Some(output.clone()),
            Some(summary.clone()),
            Box::new(captured.clone()),
        );
        host.set_output("image-info", "out/image-info.json")
            .expect("output");
        host.set_output("notes", "two\nlines").expect("output");
        host.error("50% failed\nsee above", Some(Path::new("dir/a:b,c.json")));
        host.begin_group("post-build");
        host.end_group();
        host.mask("s3cret");
        host.summary("| a |").expect("summary");
        let written = std::fs::read_to_string(&output).expect("output file");
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 7, "{written}");
        let delimiter = lines[0].strip_prefix("image-info<<").expect("a heredoc");
        assert!(delimiter.starts_with("ghadelimiter_") && delimiter.len() > 40);
        assert_eq!(lines[1..3], ["out/image-info.json", delimiter]);
        let other = lines[3].strip_prefix("notes<<").expect("a heredoc");
        assert_ne!(other, delimiter, "each entry has its own delimiter");
        assert_eq!(lines[4..], ["two", "lines", other]);
        assert_eq!(
            std::fs::read_to_string(&summary).expect("summary file"),
            "| a |\n"
        );
        assert_eq!(
            captured.text(),
            "::error file=dir/a%3Ab%2Cc.json::50%25 failed%0Asee above\n::group::post-build\n::endgroup::\n::add-mask::s3cret\n"
        );
    }

    #[test]
    fn masks_each_line_of_a_secret_from_any_thread() {
        let captured = Captured::default();
        let mut host = GitHubActions::new(None, None, Box::new(captured.clone()));
        host.mask("-----BEGIN KEY-----\r\nabc%def\n\n  \nghi\n-----END KEY-----\n");
        let masker = host.masker();
        std::thread::spawn(move || masker("found later"))
            .join()
            .expect("joins");
        assert_eq!(
            captured.text(),
            "::add-mask::-----BEGIN KEY-----\n::add-mask::abc%25def\n::add-mask::ghi\n\
             ::add-mask::-----END KEY-----\n::add-mask::found later\n"
        );
    }
}
