//! How a run ends: the exit code of DESIGN.md §8, and the error reported once, with its cause chain and a hint.

use std::process::ExitCode;

use crate::ci::CiHost;
use crate::files::FileError;
use crate::inputs::InputError;
use crate::model::issue::Issue;
use crate::model::ledger::LedgerError;
use crate::model::merge::MergeError;
use crate::model::placement::PlacementError;
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
