//! Turns the parsed command line into each stage's settings and runs the stage. The only place that knows both
//! clap's types and the stages'.

use std::collections::BTreeMap;

use crate::ci::{CiHost, RunIdentity};
use crate::cli::{Cli, Command, SchemaFormat, VariableArgs};
use crate::stages::{self, post_build, schema, validate};

pub async fn run(cli: Cli, host: &mut dyn CiHost) -> anyhow::Result<()> {
    let Cli {
        command,
        verbose: _,
    } = cli;
    let run = RunIdentity::from_environment();
    match command {
        Command::PostBuild(arguments) => {
            let settings = post_build::Settings {
                manifest: arguments.manifest.manifest,
                variables: variables(arguments.manifest.variables, &run),
                fragments: arguments.fragments,
                output: arguments.output,
            };
            post_build::run(settings, &run, host)
        }
        Command::Validate(arguments) => {
            let settings = validate::Settings {
                manifest: arguments.manifest,
                image_info: arguments.image_info,
                variables: variables(arguments.variables, &run),
            };
            validate::run(settings)
        }
        Command::Schema(arguments) => {
            let format = match arguments.format {
                SchemaFormat::Manifest => schema::Format::Manifest,
                SchemaFormat::ImageInfo => schema::Format::ImageInfo,
            };
            schema::run(format)
        }
    }
}

fn variables(arguments: VariableArgs, run: &RunIdentity) -> BTreeMap<String, String> {
    let VariableArgs { variables } = arguments;
    stages::manifest_variables(variables, run)
}
