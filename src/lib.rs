//! imagepipe: a multi-architecture container image release pipeline in typed stages.

pub mod action;
pub mod build;
pub mod ci;
pub mod cli;
pub mod dispatch;
pub mod files;
pub mod github;
pub mod inputs;
pub mod model;
pub mod process;
pub mod report;
pub mod sign;
pub mod stages;
pub mod store;
