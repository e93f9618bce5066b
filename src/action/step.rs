//! `imagepipe ci step [STAGE]`: one stage run from the CI host's inputs. The runner hands inputs over as
//! `INPUT_*` variables and enforces nothing, so the step looks each input up by its normalised name, trims it,
//! checks it by kind, enforces `required`, and names the input as the user wrote it in YAML. The stage then runs
//! as this same binary with the matching command line, its secrets in its environment (masked first), never on
//! the command line.

use std::collections::BTreeMap;
use std::ffi::OsString;

use anyhow::Context as _;

use super::declaration::{self, Destination, Input, Kind, StageDeclaration};
use crate::ci::{self, CiHost, HostKind};
use crate::stages::InvalidFlag;

/// How the user wrote an input's name in YAML, for messages that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// GitHub: kebab-case, `signature-mode`.
    Github,
    /// Azure Pipelines: camelCase, `signatureMode`.
    Azure,
}

impl Spelling {
    fn of(self, input: &Input) -> String {
        match self {
            Spelling::Github => input.name.clone(),
            Spelling::Azure => input.azure_name(),
        }
    }

    fn of_name(self, name: &str) -> String {
        match self {
            Spelling::Github => name.to_owned(),
            Spelling::Azure => crate::ci::camel_case(name),
        }
    }
}

/// The input naming the stage, for the umbrella action and the Azure task.
pub const STAGE_INPUT: &str = "stage";
/// The variable the token goes in when `token-env` is not given.
const DEFAULT_TOKEN_VARIABLE: &str = "GITHUB_TOKEN";

/// The stage exited unsuccessfully; it has reported why itself.
#[derive(Debug, thiserror::Error)]
#[error("the stage exited with code {code}")]
pub struct StageExited {
    pub code: u8,
}

/// The command line and environment a step runs its stage with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StagePlan {
    pub stage: String,
    /// The stage's subcommand and flags.
    pub arguments: Vec<OsString>,
    /// Variables added to the stage's environment: secrets.
    pub environment: BTreeMap<String, String>,
    /// Values to mask before the stage starts.
    pub secrets: Vec<String>,
    /// Inputs given that the stage does not take, by name.
    pub ignored: Vec<String>,
}

/// The inputs the runner set: each `INPUT_*` variable by its normalised name, trimmed, empty ones left out.
pub fn host_inputs(
    variables: impl IntoIterator<Item = (OsString, OsString)>,
) -> BTreeMap<String, String> {
    variables
        .into_iter()
        .filter_map(|(name, value)| {
            let name = name.to_str()?.strip_prefix("INPUT_")?.to_owned();
            let value = value.to_string_lossy().trim().to_owned();
            (!value.is_empty()).then(|| (declaration::normalised(&name), value))
        })
        .collect()
}

/// The stage's command line from the inputs: `stage` names the stage unless the step fixes it.
pub fn plan(
    fixed_stage: Option<&str>,
    inputs: &BTreeMap<String, String>,
    spelling: Spelling,
) -> Result<StagePlan, InvalidFlag> {
    let stages = declaration::stages();
    let names: Vec<&str> = stages.iter().map(|stage| stage.name).collect();
    let stage_name = match fixed_stage {
        Some(stage) => stage.to_owned(),
        None => inputs
            .get(&declaration::normalised(STAGE_INPUT))
            .cloned()
            .ok_or_else(|| {
                InvalidFlag(format!(
                    "input '{STAGE_INPUT}' is required: one of {}",
                    names.join(", ")
                ))
            })?,
    };
    let Some(stage) = stages.iter().find(|stage| stage.name == stage_name) else {
        return Err(InvalidFlag(format!(
            "input '{STAGE_INPUT}': expected one of {}, found '{stage_name}'",
            names.join(", ")
        )));
    };
    let mut plan = StagePlan {
        stage: stage.name.to_owned(),
        arguments: vec![stage.name.into()],
        ..StagePlan::default()
    };
    let missing: Vec<String> = stage
        .inputs
        .iter()
        .filter(|input| {
            input.required && !inputs.contains_key(&declaration::normalised(&input.name))
        })
        .map(|input| format!("'{}'", spelling.of(input)))
        .collect();
    match missing.as_slice() {
        [] => {}
        [one] => {
            return Err(InvalidFlag(format!(
                "input {one} is required by the `{}` stage",
                stage.name
            )));
        }
        several => {
            return Err(InvalidFlag(format!(
                "inputs {} are required by the `{}` stage",
                several.join(", "),
                stage.name
            )));
        }
    }
    for input in &stage.inputs {
        if let Some(value) = inputs.get(&declaration::normalised(&input.name)) {
            add_input(&mut plan, input, value, inputs, spelling)?;
        }
    }
    plan.ignored = ignored_inputs(stage, &stages, inputs)
        .into_iter()
        .map(|name| spelling.of_name(&name))
        .collect();
    Ok(plan)
}

/// Puts one checked input where the stage reads it.
fn add_input(
    plan: &mut StagePlan,
    input: &Input,
    value: &str,
    inputs: &BTreeMap<String, String>,
    spelling: Spelling,
) -> Result<(), InvalidFlag> {
    if input.secret {
        plan.secrets.push(value.to_owned());
    }
    let flag = match &input.destination {
        Destination::Flag(flag) => format!("--{flag}"),
        Destination::Environment(variable) => {
            plan.environment
                .insert((*variable).to_owned(), value.to_owned());
            return Ok(());
        }
        Destination::TokenEnvironment => {
            let variable = inputs
                .get(&declaration::normalised("token-env"))
                .map_or(DEFAULT_TOKEN_VARIABLE, String::as_str);
            plan.environment
                .insert(variable.to_owned(), value.to_owned());
            return Ok(());
        }
        Destination::Shim => return Ok(()),
    };
    let expected = |what: &str| {
        InvalidFlag(format!(
            "input '{}': expected {what}, found '{value}'",
            spelling.of(input)
        ))
    };
    match &input.kind {
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "true" => plan.arguments.push(flag.into()),
            "false" => {}
            _ => return Err(expected("true or false")),
        },
        Kind::Enum(values) => {
            let Some(known) = values
                .iter()
                .find(|known| known.eq_ignore_ascii_case(value))
            else {
                return Err(expected(&format!("one of {}", values.join(", "))));
            };
            plan.arguments.extend([flag.into(), known.into()]);
        }
        Kind::List => {
            for item in value.lines().map(str::trim).filter(|item| !item.is_empty()) {
                plan.arguments.extend([flag.clone().into(), item.into()]);
            }
        }
        Kind::String | Kind::Path => plan.arguments.extend([flag.into(), value.into()]),
    }
    Ok(())
}

/// Inputs given a value that no declaration of them defaults to, which this stage does not take: a mistake to
/// point out, where the umbrella action's defaults for other stages are not.
fn ignored_inputs(
    stage: &StageDeclaration,
    stages: &[StageDeclaration],
    inputs: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut ignored = Vec::new();
    for (normalised, value) in inputs {
        if normalised == &declaration::normalised(STAGE_INPUT)
            || stage
                .inputs
                .iter()
                .any(|input| &declaration::normalised(&input.name) == normalised)
        {
            continue;
        }
        let others: Vec<&Input> = stages
            .iter()
            .flat_map(|stage| &stage.inputs)
            .filter(|input| &declaration::normalised(&input.name) == normalised)
            .collect();
        let Some(first) = others.first() else {
            continue;
        };
        let a_default = others
            .iter()
            .any(|input| input.default.as_deref() == Some(value.as_str()))
            || (first.kind == Kind::Bool && value.eq_ignore_ascii_case("false"));
        if !a_default && !ignored.contains(&first.name) {
            ignored.push(first.name.clone());
        }
    }
    ignored
}

/// Runs the stage the inputs describe, as this binary with its command line; its exit code becomes the step's.
pub fn run(fixed_stage: Option<&str>, host: &mut dyn CiHost) -> anyhow::Result<()> {
    let inputs = host_inputs(std::env::vars_os());
    let spelling = match ci::detect_kind() {
        HostKind::AzurePipelines => Spelling::Azure,
        HostKind::GitHubActions | HostKind::Local => Spelling::Github,
    };
    let plan = plan(fixed_stage, &inputs, spelling)?;
    for secret in &plan.secrets {
        host.mask(secret);
    }
    for name in &plan.ignored {
        host.warning(
            &format!(
                "input '{name}' is not an input of the `{}` stage: ignored",
                plan.stage
            ),
            None,
        );
    }
    let binary = std::env::current_exe().context("finding the imagepipe binary")?;
    let status = std::process::Command::new(&binary)
        .args(&plan.arguments)
        .envs(&plan.environment)
        .status()
        .with_context(|| format!("starting `{}`", binary.display()))?;
    if status.success() {
        return Ok(());
    }
    // A stage killed by a signal has no code: a runtime failure.
    let code = status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .filter(|code| *code != 0)
        .unwrap_or(1);
    Err(StageExited { code }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        host_inputs(
            pairs
                .iter()
                .map(|(name, value)| (format!("INPUT_{name}").into(), (*value).into())),
        )
    }

    fn arguments(plan: &StagePlan) -> Vec<String> {
        plan.arguments
            .iter()
            .map(|argument| argument.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn github_and_azure_names_give_the_same_command_line() {
        let github = inputs(&[
            ("IMAGE-INFO", " image-info.json \n"),
            ("KEY", "cosign.key"),
            ("STAGING-REGISTRY", "localhost:5000"),
            ("SIGNATURE-MODE", "Referrers"),
            ("VAR", "a=1\n\nb=2\n"),
            ("VERBOSE", "True"),
            ("COSIGN-PASSWORD", "s3cret"),
            ("EXPECT-IMAGE-INFO-SHA256", "ab"),
        ]);
        let azure = inputs(&[
            ("IMAGEINFO", "image-info.json"),
            ("KEY", "cosign.key"),
            ("STAGINGREGISTRY", "localhost:5000"),
            ("SIGNATUREMODE", "referrers"),
            ("VAR", "a=1\nb=2"),
            ("VERBOSE", "true"),
            ("COSIGNPASSWORD", "s3cret"),
            ("EXPECTIMAGEINFOSHA256", "ab"),
        ]);
        let github = plan(Some("sign"), &github, Spelling::Github).expect("plans");
        assert_eq!(
            github,
            plan(Some("sign"), &azure, Spelling::Github).expect("plans")
        );
        let arguments = arguments(&github);
        for expected in [
            "sign",
            "--image-info image-info.json",
            "--key cosign.key",
            "--staging-registry localhost:5000",
            "--signature-mode referrers",
            "--var a=1 --var b=2",
            "--verbose",
            "--expect-sha256 ab",
        ] {
            assert!(
                arguments.join(" ").contains(expected),
                "{expected}: {arguments:?}"
            );
        }
        assert!(!arguments.iter().any(|argument| argument.contains("s3cret")));
        assert_eq!(
            github.environment,
            BTreeMap::from([("COSIGN_PASSWORD".to_owned(), "s3cret".to_owned())])
        );
        assert_eq!(github.secrets, ["s3cret"]);
    }

    #[test]
    fn wrong_inputs_are_named_as_written() {
        let refused = |stage: Option<&str>, pairs: &[(&str, &str)]| {
            plan(stage, &inputs(pairs), Spelling::Github)
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            refused(
                Some("sign"),
                &[
                    ("IMAGE-INFO", "i.json"),
                    ("KEY", "k"),
                    ("STAGING-REGISTRY", "r"),
                    ("SIGNATURE-MODE", "tags")
                ]
            ),
            "input 'signature-mode': expected one of tag, referrers, auto, found 'tags'"
        );
        assert_eq!(
            refused(
                Some("sign"),
                &[("IMAGE-INFO", "i.json"), ("STAGING-REGISTRY", "r")]
            ),
            "input 'key' is required by the `sign` stage"
        );
        assert_eq!(
            refused(Some("sign"), &[("IMAGE-INFO", "i.json")]),
            "inputs 'key', 'staging-registry' are required by the `sign` stage"
        );
        assert_eq!(
            refused(
                Some("publish"),
                &[
                    ("IMAGE-INFO", "i"),
                    ("STAGING-REGISTRY", "r"),
                    ("OUTPUT", "o"),
                    ("DRY-RUN", "yes")
                ]
            ),
            "input 'dry-run': expected true or false, found 'yes'"
        );
        let azure = plan(
            Some("sign"),
            &inputs(&[
                ("IMAGEINFO", "i"),
                ("STAGINGREGISTRY", "r"),
                ("KEY", "k"),
                ("SIGNATUREMODE", "x"),
            ]),
            Spelling::Azure,
        )
        .expect_err("refused");
        assert_eq!(
            azure.to_string(),
            "input 'signatureMode': expected one of tag, referrers, auto, found 'x'"
        );
        assert!(refused(None, &[]).starts_with("input 'stage' is required: one of matrix, build"));
        assert!(refused(None, &[("STAGE", "deploy")]).contains("found 'deploy'"));
    }

    #[test]
    fn the_umbrella_actions_defaults_are_no_mistake_but_a_foreign_value_is() {
        let planned = plan(
            None,
            &inputs(&[
                ("STAGE", "post-build"),
                ("MANIFEST", "manifest.json"),
                ("FRAGMENTS", "fragments"),
                ("OUTPUT", "image-info.json"),
                ("SIGNATURE-MODE", "tag"),
                ("DRY-RUN", "false"),
                ("KEY", "cosign.key"),
            ]),
            Spelling::Github,
        )
        .expect("plans");
        assert_eq!(planned.stage, "post-build");
        assert_eq!(planned.ignored, ["key"]);
    }

    #[test]
    fn the_token_goes_where_token_env_says() {
        let planned = plan(
            Some("publish-image-info"),
            &inputs(&[
                ("IMAGE-INFO", "i.json"),
                ("REPO", "acme/images"),
                ("PATH", "info.json"),
                ("TOKEN-ENV", "IMAGES_TOKEN"),
                ("GITHUB-TOKEN", "ghs_x"),
            ]),
            Spelling::Github,
        )
        .expect("plans");
        assert_eq!(
            planned.environment,
            BTreeMap::from([("IMAGES_TOKEN".to_owned(), "ghs_x".to_owned())])
        );
    }
}
