//! Test fixtures shared by the unit tests of the `test` stage: one image of image-info, and a staging that
//! holds exactly what it records.

use std::collections::HashMap;

use crate::model::platform::Platform;
use crate::model::reference::Digest;

use super::expected::{Expected, ExpectedIndex, ExpectedPlatform};
use super::staging::{Found, IndexEntry, Probe};

pub(super) fn platform(text: &str) -> Platform {
    text.parse().expect("platform")
}

pub(super) fn digest(fill: char) -> Digest {
    format!("sha256:{}", fill.to_string().repeat(64))
        .parse()
        .expect("digest")
}

fn expected_platform(fill: char, text: &str, tags: &[&str]) -> ExpectedPlatform {
    ExpectedPlatform {
        digest: digest(fill),
        recorded: platform(text),
        declared: Some(platform(text)),
        simple_tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        attestation: None,
    }
}

pub(super) fn image() -> Expected {
    Expected {
        repository: "acme/app".into(),
        staged: "staging/1/acme/app".into(),
        platforms: vec![
            expected_platform('a', "linux/amd64", &["1-amd64"]),
            expected_platform('b', "linux/arm64/v8", &["1-arm64v8"]),
        ],
        index: Some(ExpectedIndex {
            digest: digest('c'),
            shared_tags: vec!["1".into(), "latest".into()],
        }),
        declared_shared_tags: Some(vec!["1".into(), "latest".into()]),
    }
}

pub(super) fn entry(fill: char, text: &str) -> IndexEntry {
    IndexEntry {
        digest: digest(fill).to_string(),
        platform: Some(platform(text)),
        attests: None,
    }
}

/// Staging exactly as `image()` expects it, with the simple tags absent.
pub(super) fn good_staging(image: &Expected) -> HashMap<Probe, Found> {
    let mut found = HashMap::new();
    found.insert(
        image.image_probe(&digest('a')),
        Found::Image(platform("linux/amd64")),
    );
    found.insert(
        image.image_probe(&digest('b')),
        Found::Image(platform("linux/arm64/v8")),
    );
    found.insert(
        image.index_probe(&digest('c')),
        Found::Index(vec![
            entry('a', "linux/amd64"),
            entry('b', "linux/arm64/v8"),
        ]),
    );
    for tag in ["1", "latest"] {
        found.insert(image.tag_probe(tag), Found::Tagged(digest('c')));
    }
    for tag in ["1-amd64", "1-arm64v8"] {
        found.insert(image.tag_probe(tag), Found::Missing);
    }
    found
}
