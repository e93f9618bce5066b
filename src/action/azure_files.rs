//! The Azure Pipelines task `ImagePipe@1`: `task.json`, with a `stage` pickList and each input shown only for
//! the stages that take it.

use serde_json::{Value, json};

use super::declaration::{
    Hosts, Kind, STEP_STAGES, StageDeclaration, shared_inputs, shared_outputs,
};
use super::github_files::input_description;
use super::step::STAGE_INPUT;

/// The task's identity: fixed for good, since pipelines and the marketplace know the task by it.
const TASK_ID: &str = "6f1d3c8e-2b7a-4e59-9c41-8a0d5e7b3f21";
/// The first agent that runs the `Node20_1` handler.
const MINIMUM_AGENT_VERSION: &str = "3.232.1";

/// `azure-task/ImagePipeV1/task.json`.
pub fn task_json(stages: &[StageDeclaration], version: &str) -> String {
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u64>().unwrap_or_default());
    let (_, minor, patch) = (parts.next(), parts.next(), parts.next());
    let mut inputs = vec![json!({
        "name": STAGE_INPUT,
        "type": "pickList",
        "label": "Stage",
        "required": true,
        "helpMarkDown": "The stage to run",
        "options": STEP_STAGES.iter().map(|stage| (stage.to_string(), Value::from(*stage))).collect::<serde_json::Map<_, _>>(),
    })];
    for shared in shared_inputs(stages) {
        let input = &shared.input;
        let mut entry = json!({
            "name": input.azure_name(),
            "type": input_type(&input.name, &input.kind),
            "label": input.name,
            "required": false,
            "helpMarkDown": input_description(input, None),
        });
        if let Some(default) = &input.default {
            entry["defaultValue"] = Value::from(default.as_str());
        }
        if let Kind::Enum(values) = &input.kind {
            entry["options"] = values
                .iter()
                .map(|value| (value.clone(), Value::from(value.as_str())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        if shared.stages.len() < STEP_STAGES.len() {
            let rule: Vec<String> = shared
                .stages
                .iter()
                .map(|stage| format!("{STAGE_INPUT} = {stage}"))
                .collect();
            entry["visibleRule"] = Value::from(rule.join(" || "));
        }
        if input.hosts == Hosts::AzureOnly || shared.stages.len() == STEP_STAGES.len() {
            entry["groupName"] = Value::from("connection");
        }
        inputs.push(entry);
    }
    let outputs: Vec<Value> = shared_outputs(stages)
        .iter()
        .map(|output| {
            json!({
                "name": crate::ci::camel_case(output.name),
                "description": output.description,
            })
        })
        .collect();
    let task = json!({
        "id": TASK_ID,
        "name": "ImagePipe",
        "friendlyName": "imagepipe",
        "description": "Release multi-architecture container images in typed stages, every published digest signed",
        "helpMarkDown": "Runs one imagepipe stage. Inputs: docs/inputs.md in the imagepipe repository.",
        "category": "Build",
        "author": "imagepipe",
        "version": {"Major": 1, "Minor": minor.unwrap_or_default(), "Patch": patch.unwrap_or_default()},
        "minimumAgentVersion": MINIMUM_AGENT_VERSION,
        "instanceNameFormat": "imagepipe $(stage)",
        "groups": [{"name": "connection", "displayName": "Registries and logging", "isExpanded": false}],
        "inputs": inputs,
        "outputVariables": outputs,
        "execution": {
            "Node20_1": {"target": "index.cjs"},
            "Node24": {"target": "index.cjs"},
        },
    });
    let mut text = serde_json::to_string_pretty(&task).unwrap_or_default();
    text.push('\n');
    text
}

/// The task input type: what Azure's editor shows for the kind.
fn input_type(name: &str, kind: &Kind) -> &'static str {
    if name == "docker-registry-service-connection" {
        return "connectedService:dockerregistry";
    }
    match kind {
        Kind::Bool => "boolean",
        Kind::Enum(_) => "pickList",
        Kind::List => "multiLine",
        // A `filePath` input left empty is filled with the repository root by the agent: a path the user did
        // not give would reach the stage.
        Kind::String | Kind::Path => "string",
    }
}
