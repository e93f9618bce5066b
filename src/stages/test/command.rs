//! Running the user's test command once per platform image that staging holds.

use std::collections::HashMap;
use std::process::Stdio;

use anyhow::Context;

use crate::ci::CiHost;
use crate::model::platform::Platform;
use crate::model::reference::Digest;
use crate::store::Location;

use super::Verdict;
use super::expected::{Expected, platform_subject};
use super::staging::{Found, Probe};

/// One platform image to run the test command on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CommandTarget {
    pub(super) subject: String,
    /// The public repository.
    repository: String,
    /// A digest reference a client can pull from staging.
    image: String,
    platform: Platform,
    tags: Vec<String>,
}

/// Each platform image once (with the simple tags of every image of image-info that lists it), in image-info
/// order; images that staging lacks are left out, as their check already failed.
pub(super) fn command_targets(
    expected: &[Expected],
    found: &HashMap<Probe, Found>,
    staging: &Location,
) -> Vec<CommandTarget> {
    let mut targets: Vec<CommandTarget> = Vec::new();
    let mut positions: HashMap<(String, Digest), usize> = HashMap::new();
    for image in expected {
        for platform in &image.platforms {
            let key = (image.repository.clone(), platform.digest.clone());
            if let Some(&position) = positions.get(&key) {
                let target = &mut targets[position];
                for tag in &platform.simple_tags {
                    if !target.tags.contains(tag) {
                        target.tags.push(tag.clone());
                    }
                }
                continue;
            }
            if matches!(
                found.get(&image.image_probe(&platform.digest)),
                None | Some(Found::Missing)
            ) {
                continue;
            }
            // image-info 1.0 records no variant: take the manifest's.
            let mut target_platform = platform.recorded.clone();
            if target_platform.variant.is_none() {
                target_platform.variant = platform
                    .declared
                    .as_ref()
                    .and_then(|declared| declared.variant.clone());
            }
            positions.insert(key, targets.len());
            targets.push(CommandTarget {
                subject: platform_subject(&image.repository, platform),
                repository: image.repository.clone(),
                image: format!("{staging}/{}@{}", image.staged, platform.digest),
                platform: target_platform,
                tags: platform.simple_tags.clone(),
            });
        }
    }
    targets
}

/// Runs the test command for one platform image, its output in a log group of its own. The command's standard
/// output goes to our standard error, which is for logs: our standard output carries the report.
pub(super) async fn run_command(
    command: &str,
    target: &CommandTarget,
    host: &mut dyn CiHost,
) -> anyhow::Result<Verdict> {
    host.begin_group(&format!(
        "test `{}` {} ({})",
        target.repository, target.platform, target.image
    ));
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("IMAGEPIPE_IMAGE", &target.image)
        .env("IMAGEPIPE_PLATFORM", target.platform.to_string())
        .env("IMAGEPIPE_REPO", &target.repository)
        .env("IMAGEPIPE_TAGS", target.tags.join(" "))
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .await;
    host.end_group();
    let status = status.with_context(|| format!("starting `sh -c {command}`"))?;
    Ok(if status.success() {
        Verdict::Passed("exited with 0".to_owned())
    } else {
        match status.code() {
            Some(code) => Verdict::Failed(format!("the command exited with {code}")),
            None => Verdict::Failed("the command was ended by a signal".to_owned()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{digest, good_staging, image};
    use super::*;

    #[test]
    fn commands_run_once_per_platform_image_that_staging_holds() {
        let first = image();
        let mut again = image();
        again.platforms[0].simple_tags = vec!["1-amd64".into(), "latest-amd64".into()];
        let mut found = good_staging(&first);
        found.insert(first.image_probe(&digest('b')), Found::Missing);
        let staging: Location = "127.0.0.1:5000".parse().expect("location");
        let targets = command_targets(&[first, again], &found, &staging);
        assert_eq!(targets.len(), 1, "{targets:#?}");
        assert_eq!(
            targets[0].image,
            format!("127.0.0.1:5000/staging/1/acme/app@{}", digest('a'))
        );
        assert_eq!(targets[0].tags, ["1-amd64", "latest-amd64"]);
        assert_eq!(targets[0].platform.to_string(), "linux/amd64");
    }
}
