//! How a run ends: the exit code of DESIGN.md §8, and the error reported once, with its cause chain and a hint.

use std::process::ExitCode;

use crate::action::step::StageExited;
use crate::build::BuildError;
use crate::build::dependencies::DependencyError;
use crate::ci::CiHost;
use crate::files::FileError;
use crate::inputs::InputError;
use crate::model::issue::Issue;
use crate::model::ledger::LedgerError;
use crate::model::merge::MergeError;
use crate::model::placement::PlacementError;
use crate::model::published::PublishedMergeError;
use crate::sign::keys::KeyError;
use crate::stages::InvalidFlag;
use crate::stages::Refusal;
use crate::store::StoreError;

/// The exit codes scripts and CI templates depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A registry, the network or a build tool failed.
    RuntimeFailure = 1,
    /// Flags, manifest or image-info are wrong.
    InvalidInput = 2,
    /// A stage's precondition is not met: ordering, a missing index, an unsigned digest.
    PreconditionFailed = 3,
}

/// What the error chain says about the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub outcome: Outcome,
    pub hint: Option<String>,
    pub issues: Vec<Issue>,
}

/// Classifies an error by the first cause in its chain that this product knows.
pub fn diagnose(error: &anyhow::Error) -> Diagnosis {
    let plain = |outcome| Diagnosis {
        outcome,
        hint: None,
        issues: Vec::new(),
    };
    for cause in error.chain() {
        if let Some(input) = cause.downcast_ref::<InputError>() {
            let outcome = match input {
                InputError::File(FileError::Write { .. }) => Outcome::RuntimeFailure,
                // The file is well-formed but not the one the previous stage handed on.
                InputError::Changed { .. } => Outcome::PreconditionFailed,
                _ => Outcome::InvalidInput,
            };
            return Diagnosis {
                outcome,
                hint: input.hint(),
                issues: input.issues().to_vec(),
            };
        }
        if let Some(file) = cause.downcast_ref::<FileError>() {
            return match file {
                FileError::Write { .. } => plain(Outcome::RuntimeFailure),
                FileError::Parse { issue } => Diagnosis {
                    issues: vec![issue.clone()],
                    ..plain(Outcome::InvalidInput)
                },
                FileError::Read { .. } => plain(Outcome::InvalidInput),
            };
        }
        if cause.is::<KeyError>() {
            return plain(Outcome::InvalidInput);
        }
        if cause.is::<InvalidFlag>() {
            return plain(Outcome::InvalidInput);
        }
        if let Some(build) = cause.downcast_ref::<BuildError>() {
            let outcome = if build.is_invalid_input() {
                Outcome::InvalidInput
            } else {
                Outcome::RuntimeFailure
            };
            return Diagnosis {
                hint: build.hint(),
                ..plain(outcome)
            };
        }
        if let Some(dependency) = cause.downcast_ref::<DependencyError>() {
            return Diagnosis {
                hint: dependency.hint(),
                ..plain(Outcome::InvalidInput)
            };
        }
        if cause.is::<PublishedMergeError>() {
            return Diagnosis {
                hint: Some(
                    "the published image-info must be the one last published from this manifest's repositories"
                        .into(),
                ),
                ..plain(Outcome::InvalidInput)
            };
        }
        if cause.is::<PlacementError>() {
            return Diagnosis {
                hint: Some("image-info must come from this manifest's post-build".into()),
                ..plain(Outcome::InvalidInput)
            };
        }
        if cause.is::<MergeError>() {
            return Diagnosis {
                hint: Some(
                    "each platform must be built once per run; re-run the build leg that is wrong"
                        .into(),
                ),
                ..plain(Outcome::InvalidInput)
            };
        }
        if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            return Diagnosis {
                hint: refusal.hint.clone(),
                ..plain(Outcome::PreconditionFailed)
            };
        }
        if let Some(store) = cause.downcast_ref::<StoreError>() {
            return Diagnosis {
                hint: store.hint(),
                ..plain(Outcome::RuntimeFailure)
            };
        }
        if let Some(ledger) = cause.downcast_ref::<LedgerError>() {
            return Diagnosis {
                hint: Some(ledger.hint()),
                ..plain(Outcome::PreconditionFailed)
            };
        }
    }
    plain(Outcome::RuntimeFailure)
}

/// Reports `error` once through the CI host and returns the exit code.
pub fn report(error: &anyhow::Error, host: &mut dyn CiHost) -> ExitCode {
    // A CI step's stage has reported its own failure; the step only passes its exit code on.
    if let Some(exited) = error.downcast_ref::<StageExited>() {
        return ExitCode::from(exited.code);
    }
    let diagnosis = diagnose(error);
    host.error(&format!("{error:#}"), None);
    if diagnosis.issues.len() > 1 {
        for issue in &diagnosis.issues {
            host.error(&issue.to_string(), Some(&issue.file));
        }
    }
    if let Some(hint) = &diagnosis.hint {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(diagnosis.outcome as u8)
}

/// Reports a command line clap refused the way every other invalid input is reported (exit 2): one `error:`
/// line, through the CI host so that it becomes an annotation, and one `hint:` line with clap's tip or the
/// usage. Help and version requests, and a bare `imagepipe`, print what clap prints.
pub fn report_usage(error: &clap::Error, host: &mut dyn CiHost) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        // Printing help can fail only when stdout is closed, and then there is nobody to tell.
        let _ = error.print();
        return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
    }
    let (message, hint) = usage_error_lines(&error.render().to_string());
    host.error(&message, None);
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(Outcome::InvalidInput as u8)
}

/// clap's several-line error as one message and a hint. clap writes the message on the first line, with what
/// it lists (missing arguments, possible values) on indented lines below, then a `tip:`, the usage, and a
/// pointer to `--help`.
fn usage_error_lines(rendered: &str) -> (String, Option<String>) {
    let mut lines = rendered.lines().map(str::trim);
    let first = lines.next().unwrap_or_default();
    let mut message = first
        .strip_prefix("error:")
        .unwrap_or(first)
        .trim()
        .to_owned();
    let mut listed = Vec::new();
    let (mut tip, mut usage) = (None, None);
    let mut in_message = true;
    for line in lines {
        if line.is_empty() {
            in_message = false;
        } else if let Some(text) = line.strip_prefix("tip:") {
            tip.get_or_insert_with(|| text.trim().to_owned());
        } else if let Some(text) = line.strip_prefix("Usage:") {
            usage = Some(format!("usage: `{}`", text.trim()));
        } else if in_message {
            listed.push(line);
        }
    }
    if !listed.is_empty() {
        let separator = if message.ends_with(':') { " " } else { ": " };
        message = format!("{message}{separator}{}", listed.join(", "));
    }
    (message, tip.or(usage))
}

/// Logs go to stderr, without timestamps (CI hosts add their own) or module paths.
pub fn init_logging(verbose: bool) {
    let level = if verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .without_time()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn clap_errors_become_one_line_and_a_hint() {
        let cases = [
            (
                "error: the following required arguments were not provided:\n  --fragments <DIR>\n  --output <FILE>\n\n\
                 Usage: imagepipe post-build --manifest <FILE> --fragments <DIR> --output <FILE>\n\n\
                 For more information, try '--help'.\n",
                "the following required arguments were not provided: --fragments <DIR>, --output <FILE>",
                Some(
                    "usage: `imagepipe post-build --manifest <FILE> --fragments <DIR> --output <FILE>`",
                ),
            ),
            (
                "error: unrecognized subcommand 'sing'\n\n  tip: a similar subcommand exists: 'sign'\n\n\
                 Usage: imagepipe [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n",
                "unrecognized subcommand 'sing'",
                Some("a similar subcommand exists: 'sign'"),
            ),
            (
                "error: invalid value 'foo' for '--media-type <MEDIA_TYPE>'\n  [possible values: oci, docker]\n\n\
                 For more information, try '--help'.\n",
                "invalid value 'foo' for '--media-type <MEDIA_TYPE>': [possible values: oci, docker]",
                None,
            ),
        ];
        for (rendered, message, hint) in cases {
            let (found, found_hint) = usage_error_lines(rendered);
            assert_eq!(found, message);
            assert_eq!(found_hint.as_deref(), hint);
        }
    }

    #[test]
    fn classifies_known_causes_through_context() {
        let ledger = anyhow::Error::new(LedgerError::Missing {
            stage: crate::model::ledger::Stage::Sign,
            missing: crate::model::ledger::Stage::CreateManifest,
        })
        .context("signing `image-info.json`");
        let diagnosis = diagnose(&ledger);
        assert_eq!(diagnosis.outcome, Outcome::PreconditionFailed);
        assert_eq!(
            diagnosis.hint.as_deref(),
            Some("run `imagepipe create-manifest` on this image-info first")
        );

        let missing = anyhow::Error::new(InputError::NoFragments {
            folder: PathBuf::from("fragments"),
        });
        assert_eq!(diagnose(&missing).outcome, Outcome::InvalidInput);

        let write = anyhow::Error::new(FileError::Write {
            file: PathBuf::from("out.json"),
            source: std::io::Error::other("disk full"),
        });
        assert_eq!(diagnose(&write).outcome, Outcome::RuntimeFailure);
        assert_eq!(
            diagnose(&anyhow::anyhow!("registry down")).outcome,
            Outcome::RuntimeFailure
        );
    }
}
