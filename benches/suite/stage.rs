//! Running one imagepipe stage as a CI step runs it (the release binary, a clean environment), measured.

use crate::common::Imagepipe;
use crate::measure::{Network, Sample, logged_request_count, measure, run_timed};
use crate::peers::PASSWORD;

/// Runs `imagepipe <arguments>` once; panics with its stderr when it fails.
pub fn imagepipe(network: &Network<'_>, arguments: &[String]) -> Sample {
    let mut stderr = String::new();
    let mut sample = measure(network, 1.0, || {
        let command = Imagepipe::new()
            .args(arguments)
            .env("COSIGN_PASSWORD", PASSWORD)
            .command();
        let (output, usage) = run_timed(&command);
        stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        vec![usage]
    });
    sample.logged_requests = logged_request_count(&stderr);
    sample
}

/// The arguments of the measured stages for one workload: its files, the staging registry as reached (through
/// its proxy) and the prefix there.
pub struct Stages {
    pub manifest: String,
    pub image_info: String,
    pub key: String,
    pub staging: String,
    pub prefix: String,
    /// Where publish writes the final image-info.
    pub output: String,
}

impl Stages {
    fn with_staging(&self, arguments: &[&str]) -> Vec<String> {
        arguments
            .iter()
            .copied()
            .chain(["--image-info", &self.image_info])
            .chain(["--staging-registry", &self.staging])
            .chain(["--staging-prefix", &self.prefix])
            .map(str::to_owned)
            .collect()
    }

    pub fn create_manifest(&self) -> Vec<String> {
        self.with_staging(&["create-manifest", "--manifest", &self.manifest])
    }

    pub fn sign(&self) -> Vec<String> {
        self.with_staging(&["sign", "--key", &self.key])
    }

    pub fn publish(&self) -> Vec<String> {
        self.with_staging(&["publish", "--output", &self.output])
    }
}
