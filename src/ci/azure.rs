//! Azure Pipelines logging commands.
//!
//! Output variable names are camelCase (`imageInfoSha256`), as the task's inputs are: a task declares its output
//! variables by names of letters and digits only.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CiHost, CommandWriter, Masker, secret_lines};

pub struct AzurePipelines {
    /// Where summary markdown is written before the agent is told to upload it.
    summary_folder: PathBuf,
    /// The agent reads logging commands from the task's standard output.
    commands: CommandWriter,
    summaries: usize,
}

impl AzurePipelines {
    pub fn new(summary_folder: PathBuf, commands: Box<dyn Write + Send>) -> Self {
        Self {
            summary_folder,
            commands: CommandWriter::new(commands),
            summaries: 0,
        }
    }

    fn command(&mut self, line: &str) {
        self.commands.line(line);
    }

    fn issue(&mut self, kind: &str, message: &str, file: Option<&Path>) {
        let source = file
            .map(|file| {
                format!(
                    "sourcepath={};",
                    escape_property(&file.display().to_string())
                )
            })
            .unwrap_or_default();
        self.command(&format!(
            "##vso[task.logissue type={kind};{source}]{}",
            escape_data(message)
        ));
    }
}

impl CiHost for AzurePipelines {
    fn set_output(&mut self, name: &str, value: &str) -> io::Result<()> {
        let name = super::camel_case(name);
        self.command(&format!(
            "##vso[task.setvariable variable={};isoutput=true]{}",
            escape_property(&name),
            escape_data(value)
        ));
        Ok(())
    }

    fn error(&mut self, message: &str, file: Option<&Path>) {
        self.issue("error", message, file);
    }

    fn warning(&mut self, message: &str, file: Option<&Path>) {
        self.issue("warning", message, file);
    }

    fn begin_group(&mut self, title: &str) {
        self.command(&format!("##[group]{}", escape_data(title)));
    }

    fn end_group(&mut self) {
        self.command("##[endgroup]");
    }

    fn mask(&mut self, secret: &str) {
        mask(&self.commands, secret);
    }

    fn masker(&self) -> Masker {
        let commands = self.commands.clone();
        Arc::new(move |secret| mask(&commands, secret))
    }

    fn summary(&mut self, markdown: &str) -> io::Result<()> {
        self.summaries += 1;
        let file = self.summary_folder.join(format!(
            "imagepipe-summary-{}-{}.md",
            std::process::id(),
            self.summaries
        ));
        std::fs::write(&file, markdown)?;
        self.command(&format!(
            "##vso[task.uploadsummary]{}",
            escape_data(&file.display().to_string())
        ));
        Ok(())
    }
}

/// `task.setsecret` for each line of the secret: the agent masks line by line, so a multi-line secret set whole
/// would never match.
fn mask(commands: &CommandWriter, secret: &str) {
    for line in secret_lines(secret) {
        commands.line(&format!("##vso[task.setsecret]{}", escape_data(line)));
    }
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%AZP25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(';', "%3B").replace(']', "%5D")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ci::Captured;

    #[test]
    fn speaks_the_logging_command_protocol() {
        let folder = tempfile::tempdir().expect("temp dir");
        let captured = Captured::default();
        let mut host = AzurePipelines::new(folder.path().to_owned(), Box::new(captured.clone()));
        host.set_output("image-info-sha256", "ab12")
            .expect("output");
        host.error("100% failed\nsee above", Some(Path::new("a;b].json")));
        host.begin_group("post-build");
        host.end_group();
        host.mask("s3cret");
        host.summary("| a |").expect("summary");
        let summary = std::fs::read_dir(folder.path()).expect("lists").count();
        assert_eq!(summary, 1);
        let text = captured.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..5],
            [
                "##vso[task.setvariable variable=imageInfoSha256;isoutput=true]ab12",
                "##vso[task.logissue type=error;sourcepath=a%3Bb%5D.json;]100%AZP25 failed%0Asee above",
                "##[group]post-build",
                "##[endgroup]",
                "##vso[task.setsecret]s3cret",
            ]
        );
        assert!(
            lines[5].starts_with("##vso[task.uploadsummary]"),
            "{}",
            lines[5]
        );
    }

    #[test]
    fn masks_each_line_of_a_secret_from_any_thread() {
        let folder = tempfile::tempdir().expect("temp dir");
        let captured = Captured::default();
        let mut host = AzurePipelines::new(folder.path().to_owned(), Box::new(captured.clone()));
        host.mask("first line\r\n100%\n\nlast");
        let masker = host.masker();
        std::thread::spawn(move || masker("found later"))
            .join()
            .expect("joins");
        assert_eq!(
            captured.text(),
            "##vso[task.setsecret]first line\n##vso[task.setsecret]100%AZP25\n\
             ##vso[task.setsecret]last\n##vso[task.setsecret]found later\n"
        );
    }
}
