//! The ledger: which stages have completed on an image-info, and the ordering rule every stage checks on entry.
//!
//! The rule is the product's reason to exist: indexes are created (create-manifest) before signing, so that sign
//! sees every digest that will ever be published, and publish only copies what was signed.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Build,
    PostBuild,
    CreateManifest,
    Sign,
    Verify,
    Test,
    Publish,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Self::Build => "build",
            Self::PostBuild => "post-build",
            Self::CreateManifest => "create-manifest",
            Self::Sign => "sign",
            Self::Verify => "verify",
            Self::Test => "test",
            Self::Publish => "publish",
        }
    }

    /// The stages that must have completed, in this order, before this one may run.
    pub fn prerequisites(self) -> &'static [Stage] {
        match self {
            Self::Build | Self::PostBuild => &[],
            Self::CreateManifest => &[Self::PostBuild],
            Self::Sign | Self::Verify | Self::Test => &[Self::PostBuild, Self::CreateManifest],
            // Publish only copies what was signed.
            Self::Publish => &[Self::PostBuild, Self::CreateManifest, Self::Sign],
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One completed stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    pub stage: Stage,
    /// When the stage completed, RFC 3339 UTC.
    pub completed: String,
    /// The tool and version that ran it, e.g. `imagepipe 0.1.0`.
    pub tool: String,
    /// The CI run it belongs to (`GITHUB_RUN_ID`, Azure `BUILD_BUILDID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// The `pipeline` object of image-info.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pipeline {
    #[serde(default)]
    pub stages: Vec<StageRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "stage `{stage}` needs `{missing}` to have run first, and the ledger has no `{missing}` entry"
    )]
    Missing { stage: Stage, missing: Stage },
    #[error(
        "stage `{stage}` needs `{earlier}` before `{later}`, and the ledger has them the other way round"
    )]
    OutOfOrder {
        stage: Stage,
        earlier: Stage,
        later: Stage,
    },
}

impl LedgerError {
    /// What the user should do about it.
    pub fn hint(&self) -> String {
        match self {
            Self::Missing { missing, .. } => {
                format!("run `imagepipe {missing}` on this image-info first")
            }
            Self::OutOfOrder { earlier, .. } => {
                format!("re-run the pipeline from `imagepipe {earlier}` so the stages run in order")
            }
        }
    }
}

impl Pipeline {
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Whether `stage` has completed on this file.
    pub fn has(&self, stage: Stage) -> bool {
        self.last_position(stage).is_some()
    }

    /// The position of the latest record of `stage`.
    fn last_position(&self, stage: Stage) -> Option<usize> {
        self.stages.iter().rposition(|record| record.stage == stage)
    }

    /// Refuses to let `stage` run unless its prerequisites completed, in order.
    pub fn require(&self, stage: Stage) -> Result<(), LedgerError> {
        self.require_these(stage, stage.prerequisites())
    }

    /// Refuses to let `stage` run unless each of `required` completed, in the order given. For stages whose
    /// prerequisites depend on flags (`publish --allow-unsigned`, `--require-verify`).
    pub fn require_these(&self, stage: Stage, required: &[Stage]) -> Result<(), LedgerError> {
        let mut previous: Option<(Stage, usize)> = None;
        for &required in required {
            let position = self.last_position(required).ok_or(LedgerError::Missing {
                stage,
                missing: required,
            })?;
            if let Some((earlier, earlier_position)) = previous {
                if earlier_position > position {
                    return Err(LedgerError::OutOfOrder {
                        stage,
                        earlier,
                        later: required,
                    });
                }
            }
            previous = Some((required, position));
        }
        Ok(())
    }

    pub fn record(&mut self, record: StageRecord) {
        self.stages.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(stages: &[Stage]) -> Pipeline {
        Pipeline {
            stages: stages
                .iter()
                .map(|&stage| StageRecord {
                    stage,
                    completed: "2026-11-29T00:00:00Z".into(),
                    tool: "imagepipe test".into(),
                    run_id: None,
                    attempt: None,
                })
                .collect(),
        }
    }

    #[test]
    fn sign_requires_create_manifest_after_post_build() {
        use Stage::*;
        let cases: &[(&[Stage], Stage, Option<Stage>)] = &[
            (&[], PostBuild, None),
            (&[], CreateManifest, Some(PostBuild)),
            (&[PostBuild], CreateManifest, None),
            (&[PostBuild], Sign, Some(CreateManifest)),
            (&[Build, PostBuild, CreateManifest], Sign, None),
            (&[PostBuild, CreateManifest, Sign], Publish, None),
            (&[PostBuild, CreateManifest], Publish, Some(Sign)),
        ];
        for (stages, stage, missing) in cases {
            let result = ledger(stages).require(*stage);
            match missing {
                None => assert_eq!(result, Ok(()), "{stages:?} → {stage}"),
                Some(missing) => assert_eq!(
                    result,
                    Err(LedgerError::Missing {
                        stage: *stage,
                        missing: *missing
                    }),
                    "{stages:?} → {stage}"
                ),
            }
        }
    }

    #[test]
    fn out_of_order_ledger_is_refused() {
        let result = ledger(&[Stage::CreateManifest, Stage::PostBuild]).require(Stage::Sign);
        assert_eq!(
            result,
            Err(LedgerError::OutOfOrder {
                stage: Stage::Sign,
                earlier: Stage::PostBuild,
                later: Stage::CreateManifest,
            })
        );
        // A later re-run of both in order makes it good again.
        let rerun = ledger(&[
            Stage::CreateManifest,
            Stage::PostBuild,
            Stage::CreateManifest,
        ]);
        assert_eq!(rerun.require(Stage::Sign), Ok(()));
    }

    #[test]
    fn stage_names_serialize_as_the_cli_spells_them() {
        let json = serde_json::to_string(&Stage::CreateManifest).expect("serializes");
        assert_eq!(json, r#""create-manifest""#);
        assert_eq!(Stage::CreateManifest.to_string(), "create-manifest");
    }
}
