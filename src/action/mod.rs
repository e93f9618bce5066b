//! imagepipe as a CI step: the GitHub Action and the Azure Pipelines task. Every stage's inputs and outputs are
//! declared once ([`declaration`], from the command line's own flags); the step reads its inputs from the
//! runner's `INPUT_*` variables ([`step`]), and every file that names them is generated ([`generate`]).

mod azure_files;
pub mod declaration;
mod docs;
pub mod generate;
mod github_files;
pub mod step;
