//! `docs/inputs.md`: every stage's inputs and outputs, as the GitHub and Azure YAML names them.

use std::fmt::Write as _;

use super::declaration::{Hosts, StageDeclaration};
use super::github_files::GENERATED;

pub fn inputs_reference(stages: &[StageDeclaration]) -> String {
    let mut text = format!(
        "<!-- {GENERATED} -->\n# Inputs and outputs\n\n\
         Each stage is a step: `uses: OWNER/imagepipe/dist/<stage>@v1` on GitHub (or the root action with \
         `stage:`), `ImagePipe@1` with `stage:` on Azure Pipelines. GitHub names an input as below; Azure by the \
         name in brackets. Every input is also a flag of `imagepipe <stage>` unless it says otherwise.\n"
    );
    for stage in stages {
        let _ = write!(
            text,
            "\n## {}\n\n{}\n\n| input | required | default | description |\n|---|---|---|---|\n",
            stage.name, stage.description
        );
        for input in &stage.inputs {
            let azure_only = if input.hosts == Hosts::AzureOnly {
                " Azure only."
            } else {
                ""
            };
            let _ = writeln!(
                text,
                "| `{}` (`{}`) | {} | {} | {}.{azure_only} |",
                input.name,
                input.azure_name(),
                if input.required { "yes" } else { "" },
                input
                    .default
                    .as_deref()
                    .map(|default| format!("`{default}`"))
                    .unwrap_or_default(),
                cell(&super::github_files::input_description(input, None)),
            );
        }
        text.push_str("\n| output (Azure) | description |\n|---|---|\n");
        for output in &stage.outputs {
            let _ = writeln!(
                text,
                "| `{}` (`{}`) | {} |",
                output.name,
                crate::ci::camel_case(output.name),
                cell(output.description)
            );
        }
    }
    text
}

/// Text that stays in its table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
