//! Every CI step's inputs and outputs, declared once. A stage's inputs are its command-line flags as clap
//! declares them (name, description, required, default, kind), plus the few inputs only a CI step has: secrets
//! handed over as inputs, and the shim's own. Everything that names an input (the action.yml files, task.json,
//! docs/inputs.md, and the reading of `INPUT_*`) is made from this.

use std::any::TypeId;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory as _};

use crate::cli::Cli;

/// The stages a CI step runs, in pipeline order.
pub const STEP_STAGES: &[&str] = &[
    "matrix",
    "build",
    "record",
    "post-build",
    "create-manifest",
    "sign",
    "verify",
    "test",
    "publish",
    "publish-image-info",
];

/// Flags that are no input: the password comes as the secret input `password` instead of standard input.
const NOT_INPUTS: &[&str] = &["help", "version", "password-stdin"];

/// Inputs named otherwise than their flag, so that a step's input says what it is fed from.
const RENAMED: &[(&str, &str)] = &[("expect-sha256", "expect-image-info-sha256")];

/// What values an input takes, as the binary checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    String,
    /// `true` or `false`.
    Bool,
    /// One of these values.
    Enum(Vec<String>),
    /// A file or folder.
    Path,
    /// One item per line.
    List,
}

impl Kind {
    /// How the kind reads in documentation.
    pub fn describe(&self) -> String {
        match self {
            Kind::String => "string".to_owned(),
            Kind::Bool => "`true` or `false`".to_owned(),
            Kind::Enum(values) => {
                let values: Vec<String> = values.iter().map(|value| format!("`{value}`")).collect();
                format!("one of {}", values.join(", "))
            }
            Kind::Path => "path".to_owned(),
            Kind::List => "list, one per line".to_owned(),
        }
    }
}

/// Where an input's value goes when the step runs the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The stage's flag `--NAME`.
    Flag(String),
    /// An environment variable of the stage; a secret goes here, never on a command line.
    Environment(&'static str),
    /// The environment variable the stage's `token-env` input names (`GITHUB_TOKEN` by default).
    TokenEnvironment,
    /// Read by the Node shim only.
    Shim,
}

/// Which hosts offer an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosts {
    Both,
    AzureOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The name as written in GitHub YAML, kebab-case.
    pub name: String,
    pub description: String,
    pub required: bool,
    pub default: Option<String>,
    /// Masked before first use, never an output.
    pub secret: bool,
    pub kind: Kind,
    pub destination: Destination,
    pub hosts: Hosts,
}

impl Input {
    /// The name as written in Azure YAML: alphanumeric, camelCase.
    pub fn azure_name(&self) -> String {
        crate::ci::camel_case(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDeclaration {
    pub name: &'static str,
    pub description: String,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
}

/// The normalised form an input is looked up by: alphanumerics only, uppercase, so that GitHub's
/// `INPUT_IMAGE-INFO` and Azure's `INPUT_IMAGEINFO` are the same input.
pub fn normalised(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|character| character.to_ascii_uppercase())
        .collect()
}

/// Every step stage's declaration, in pipeline order.
pub fn stages() -> Vec<StageDeclaration> {
    let command = Cli::command();
    let globals: Vec<Input> = command.get_arguments().filter_map(input_of).collect();
    STEP_STAGES
        .iter()
        .map(|&name| {
            let Some(subcommand) = command.find_subcommand(name) else {
                unreachable!("the step stage `{name}` is a subcommand of the CLI");
            };
            let mut inputs: Vec<Input> = subcommand.get_arguments().filter_map(input_of).collect();
            inputs.extend(globals.iter().cloned());
            inputs.extend(step_inputs(name));
            StageDeclaration {
                name,
                description: subcommand
                    .get_about()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                inputs,
                outputs: outputs(name),
            }
        })
        .collect()
}

/// The input of a flag; `None` for flags that are no input.
fn input_of(argument: &clap::Arg) -> Option<Input> {
    let long = argument.get_long()?;
    if NOT_INPUTS.contains(&long) || argument.is_hide_set() {
        return None;
    }
    let name = RENAMED
        .iter()
        .find(|(flag, _)| *flag == long)
        .map_or(long, |(_, input)| input);
    let possible: Vec<String> = argument
        .get_possible_values()
        .iter()
        .filter(|value| !value.is_hide_set())
        .map(|value| value.get_name().to_owned())
        .collect();
    let kind = match argument.get_action() {
        ArgAction::SetTrue => Kind::Bool,
        ArgAction::Append => Kind::List,
        _ if !possible.is_empty() => Kind::Enum(possible),
        _ if argument.get_value_parser().type_id() == TypeId::of::<PathBuf>() => Kind::Path,
        _ => Kind::String,
    };
    let default = argument
        .get_default_values()
        .first()
        .map(|value| value.to_string_lossy().into_owned())
        .filter(|value| kind != Kind::Bool || value != "false");
    Some(Input {
        name: name.to_owned(),
        description: argument
            .get_help()
            .map(|help| help.to_string().replace('\n', " "))
            .unwrap_or_default(),
        required: argument.is_required_set(),
        default,
        secret: false,
        kind,
        destination: Destination::Flag(long.to_owned()),
        hosts: Hosts::Both,
    })
}

/// The inputs of a step that are no flag of the stage.
fn step_inputs(stage: &str) -> Vec<Input> {
    let input = |name: &str, description: &str, secret, destination| Input {
        name: name.to_owned(),
        description: description.to_owned(),
        required: false,
        default: None,
        secret,
        kind: Kind::String,
        destination,
        hosts: Hosts::Both,
    };
    let mut inputs = vec![
        input(
            "password",
            "The staging registry's password for `username` (from a secret)",
            true,
            Destination::Environment("IMAGEPIPE_PASSWORD"),
        ),
        input(
            "imagepipe-path",
            "Run this imagepipe binary instead of the release the action pins",
            false,
            Destination::Shim,
        ),
        Input {
            hosts: Hosts::AzureOnly,
            ..input(
                "docker-registry-service-connection",
                "A Docker registry service connection whose credentials the stage uses",
                false,
                Destination::Shim,
            )
        },
    ];
    match stage {
        "sign" => inputs.push(input(
            "cosign-password",
            "The signing key's password (from a secret)",
            true,
            Destination::Environment("COSIGN_PASSWORD"),
        )),
        "publish-image-info" => inputs.push(input(
            "github-token",
            "The token that commits image-info (from a secret; put in the variable `token-env` names)",
            true,
            Destination::TokenEnvironment,
        )),
        _ => {}
    }
    inputs
}

/// What each stage sets for the steps after it.
fn outputs(stage: &str) -> Vec<Output> {
    let output = |name, description| Output { name, description };
    let image_info = [
        output(
            "image-info",
            "The image-info.json the stage wrote or checked",
        ),
        output(
            "image-info-sha256",
            "Its SHA-256, for the next stage's `expect-image-info-sha256`",
        ),
    ];
    let mut outputs = vec![output("stage", "The stage that ran")];
    match stage {
        "matrix" => outputs.extend([
            output("matrix", "The build legs as a job matrix (JSON)"),
            output("leg-count", "How many legs there are"),
            output(
                "cached",
                "The platforms left out as unchanged since the published image-info (JSON)",
            ),
        ]),
        "build" => outputs.push(output(
            "fragments",
            "The folder holding the fragments written",
        )),
        "record" => outputs.push(output("fragment", "The fragment written")),
        "post-build" | "verify" | "test" => outputs.extend(image_info),
        "create-manifest" => {
            outputs.extend(image_info);
            outputs.push(output(
                "indexes",
                "Every index created, as `registry/repository@digest` (JSON list)",
            ));
        }
        "sign" => {
            outputs.extend(image_info);
            outputs.push(output(
                "signed",
                "Every digest signed, as `registry/repository@digest` (JSON list)",
            ));
        }
        "publish" => {
            outputs.extend(image_info);
            outputs.push(output(
                "published-tags",
                "Every tag published, as `registry/repository:tag` (JSON list)",
            ));
        }
        "publish-image-info" => outputs.extend([
            output("commit", "The commit made, empty when nothing changed"),
            output("changed", "`true` when a commit was made"),
        ]),
        _ => {}
    }
    outputs
}

/// An input of several stages, as the umbrella action and the Azure task offer it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedInput {
    /// Required by no stage here (the binary enforces it for the stage that runs); its default only where every
    /// stage taking it has the same one.
    pub input: Input,
    /// The stages that take it, in pipeline order.
    pub stages: Vec<&'static str>,
}

/// Every input of any stage once, in the order first met.
pub fn shared_inputs(stages: &[StageDeclaration]) -> Vec<SharedInput> {
    let mut shared: Vec<SharedInput> = Vec::new();
    for stage in stages {
        for input in &stage.inputs {
            match shared
                .iter_mut()
                .find(|known| known.input.name == input.name)
            {
                Some(known) => {
                    if known.input.default != input.default {
                        known.input.default = None;
                    }
                    known.stages.push(stage.name);
                }
                None => shared.push(SharedInput {
                    input: Input {
                        required: false,
                        ..input.clone()
                    },
                    stages: vec![stage.name],
                }),
            }
        }
    }
    shared
}

/// Every output of any stage once, in the order first met.
pub fn shared_outputs(stages: &[StageDeclaration]) -> Vec<Output> {
    let mut shared: Vec<Output> = Vec::new();
    for output in stages.iter().flat_map(|stage| &stage.outputs) {
        if !shared.iter().any(|known| known.name == output.name) {
            shared.push(output.clone());
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str) -> StageDeclaration {
        stages()
            .into_iter()
            .find(|stage| stage.name == name)
            .expect("declared")
    }

    fn input<'a>(stage: &'a StageDeclaration, name: &str) -> &'a Input {
        stage
            .inputs
            .iter()
            .find(|input| input.name == name)
            .unwrap_or_else(|| panic!("`{}` takes `{name}`", stage.name))
    }

    #[test]
    fn flags_become_inputs_of_their_kind() {
        let sign = stage("sign");
        assert_eq!(
            input(&sign, "signature-mode").kind,
            Kind::Enum(vec!["tag".into(), "referrers".into(), "auto".into()])
        );
        assert_eq!(
            input(&sign, "signature-mode").default.as_deref(),
            Some("tag")
        );
        assert!(input(&sign, "key").required);
        assert_eq!(input(&sign, "image-info").kind, Kind::Path);
        assert_eq!(input(&sign, "var").kind, Kind::List);
        assert_eq!(input(&sign, "verbose").kind, Kind::Bool);
        assert_eq!(input(&sign, "verbose").default, None);
        assert_eq!(
            input(&sign, "expect-image-info-sha256").destination,
            Destination::Flag("expect-sha256".into())
        );
        assert!(input(&sign, "cosign-password").secret);
        assert!(
            !sign
                .inputs
                .iter()
                .any(|input| input.name == "password-stdin")
        );
        assert!(!input(&sign, "key").description.is_empty());
    }

    #[test]
    fn every_stage_is_declared_with_unique_inputs_and_its_outputs() {
        let stages = stages();
        assert_eq!(stages.len(), STEP_STAGES.len());
        for stage in &stages {
            let mut names: Vec<String> = stage
                .inputs
                .iter()
                .map(|input| normalised(&input.name))
                .collect();
            names.sort();
            let count = names.len();
            names.dedup();
            assert_eq!(
                names.len(),
                count,
                "`{}` has inputs that collide",
                stage.name
            );
            assert!(!stage.description.is_empty(), "{}", stage.name);
            assert_eq!(stage.outputs[0].name, "stage");
        }
        let names = |stage: &str| -> Vec<&str> {
            stages
                .iter()
                .find(|declared| declared.name == stage)
                .map(|declared| declared.outputs.iter().map(|output| output.name).collect())
                .unwrap_or_default()
        };
        assert!(names("create-manifest").contains(&"indexes"));
        assert!(names("publish").contains(&"published-tags"));
        assert!(names("matrix").contains(&"matrix"));
    }

    #[test]
    fn names_are_normalised_and_camel_cased() {
        assert_eq!(normalised("image-info"), "IMAGEINFO");
        assert_eq!(normalised("IMAGE-INFO"), "IMAGEINFO");
        let stage = stage("create-manifest");
        assert_eq!(input(&stage, "image-info").azure_name(), "imageInfo");
        assert_eq!(
            input(&stage, "expect-image-info-sha256").azure_name(),
            "expectImageInfoSha256"
        );
    }
}
