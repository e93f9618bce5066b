//! The harness for integration tests against real servers and tools (STYLE.md "Tests").
//!
//! Each test starts its own [`Registry`] on a free loopback port, so tests run in parallel. A missing server
//! or tool is a failure naming `scripts/install-test-deps.sh`, never a silent skip. The binary itself runs
//! through [`Imagepipe`], in an environment cleaned of the machine's CI host and credentials.
// Each test binary uses only part of the harness.
#![allow(dead_code, unused_imports)]

pub mod binary;
pub mod builds;
pub mod busybox;
pub mod commands;
pub mod credentials;
pub mod docker_engine;
pub mod fake_github;
pub mod files;
pub mod github_outputs;
pub mod hostile;
pub mod http;
pub mod images;
pub mod latency_proxy;
pub mod proxy;
pub mod real_manifest;
pub mod registry;
pub mod server;
pub mod shared_data;
pub mod stages;
pub mod tls;
pub mod token_server;
pub mod tools;
pub mod verifiers;

pub use binary::{Imagepipe, Ran, error_lines};
pub use credentials::Credentials;
pub use files::{path, read_json, strings};
pub use registry::Registry;
pub use shared_data::shared_data;
