//! The names image-info gives its digests. Each is `registry/repository@sha256:…` with a valid registry host
//! and OCI repository path; a platform's or an index's names the repository it is recorded under
//! (`repos[].repo`), and every one names the public registry.
//!
//! Sign puts that name into the signature payload as the signed identity, and stages paste it into URL paths, so
//! a name changed by hand must stop at loading: otherwise `evil.example.net/other/thing@sha256:…` recorded under
//! `acme/app` gets signed as `evil.example.net/other/thing`.

use std::collections::BTreeMap;
use std::path::Path;

use super::image_info::ImageInfo;
use super::issue::{Issue, JsonPath, quoted};
use super::reference::{DigestReference, REGISTRY_RULE, REPOSITORY_RULE, ReferenceError};

/// The registry every digest must name, and how it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRegistry<'a> {
    /// `None`: names without a registry.
    registry: Option<&'a str>,
    source: RegistrySource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RegistrySource {
    /// The manifest's `registry`.
    Manifest,
    /// Most of the file's digests name it (the first one named, on a tie): with no manifest at hand, a file
    /// must at least agree with itself.
    File,
}

impl<'a> PublicRegistry<'a> {
    /// The manifest's `registry`; `None` or empty when the manifest names images without one.
    pub fn from_manifest(registry: Option<&'a str>) -> Self {
        Self {
            registry: registry.filter(|registry| !registry.is_empty()),
            source: RegistrySource::Manifest,
        }
    }

    /// The registry most of `info`'s digests name.
    pub fn from_file(info: &'a ImageInfo) -> Self {
        // (count, first position) for each registry named.
        let mut named: BTreeMap<Option<&'a str>, (usize, usize)> = BTreeMap::new();
        let references = info.digest_references().filter_map(|text| {
            text.parse::<DigestReference>()
                .ok()
                .map(|parsed| (text, parsed))
        });
        for (position, (text, parsed)) in references.enumerate() {
            // The registry as a slice of the file's own text, so it outlives the parsed reference.
            let registry = parsed.registry().map(|registry| &text[..registry.len()]);
            named.entry(registry).or_insert((0, position)).0 += 1;
        }
        let registry = named
            .into_iter()
            .max_by(|(_, left), (_, right)| left.0.cmp(&right.0).then(right.1.cmp(&left.1)))
            .and_then(|(registry, _)| registry);
        Self {
            registry,
            source: RegistrySource::File,
        }
    }

    /// Where a name must be, as messages say it: "in `registry.example.com`, the manifest's `registry`".
    fn clause(&self) -> String {
        match (self.registry, &self.source) {
            (Some(registry), RegistrySource::Manifest) => {
                format!("in `{registry}`, the manifest's `registry`")
            }
            (Some(registry), RegistrySource::File) => {
                format!("in `{registry}`, the registry the file's other digests name")
            }
            (None, RegistrySource::Manifest) => {
                "without a registry, as the manifest names none".to_owned()
            }
            (None, RegistrySource::File) => {
                "without a registry, as the file's other digests".to_owned()
            }
        }
    }
}

/// Checks the digest reference `text` at `path`. `repository` is the `repos[].repo` it is recorded under, `None`
/// where another repository is allowed (a syndicated copy) or that name is itself invalid (reported there).
pub fn check_digest_name(
    file: &Path,
    path: JsonPath,
    text: &str,
    repository: Option<&str>,
    public: &PublicRegistry<'_>,
) -> Option<Issue> {
    let reference = match text.parse::<DigestReference>() {
        Ok(reference) => reference,
        Err(error) => {
            let (found, expected) = match error {
                ReferenceError::Repository { repository, .. } => (
                    format!("repository `{repository}` in {}", quoted(text)),
                    REPOSITORY_RULE,
                ),
                ReferenceError::Registry { registry, .. } => (
                    format!("registry `{registry}` in {}", quoted(text)),
                    REGISTRY_RULE,
                ),
                ReferenceError::Digest { .. } | ReferenceError::DigestReference { .. } => {
                    (quoted(text), "`registry/repository@sha256:<64 hex digits>`")
                }
            };
            return Some(Issue::new(file, path, found, expected));
        }
    };
    let wrong_registry = reference.registry() != public.registry;
    let wrong_repository = repository.filter(|expected| reference.repository() != *expected);
    if !wrong_registry && wrong_repository.is_none() {
        return None;
    }
    let mut named = Vec::new();
    if wrong_registry {
        named.push(match reference.registry() {
            Some(registry) => format!("registry `{registry}`"),
            None => "no registry".to_owned(),
        });
    }
    if wrong_repository.is_some() {
        named.push(format!("repository `{}`", reference.repository()));
    }
    let found = format!("{}, naming {}", quoted(text), named.join(" and "));
    let expected = match repository {
        Some(repository) => {
            let name = match public.registry {
                Some(registry) => format!("{registry}/{repository}"),
                None => repository.to_owned(),
            };
            format!(
                "`{name}@{}`: the repository it is recorded under (`repos[].repo`), {}",
                reference.digest,
                public.clause()
            )
        }
        None => format!("a name {}", public.clause()),
    };
    Some(Issue::new(file, path, found, expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::image_info::{ImageData, ManifestData, PlatformData, RepoData};

    const HEX: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    /// A name, the repository it is recorded under, the public registry, and (found, expected) of its issue.
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        &'a PublicRegistry<'a>,
        Option<(&'a str, &'a str)>,
    );

    fn info(references: &[&str]) -> ImageInfo {
        let platforms = references
            .iter()
            .map(|reference| PlatformData {
                digest: format!("{reference}@sha256:{HEX}"),
                ..PlatformData::default()
            })
            .collect();
        ImageInfo {
            repos: vec![RepoData {
                repo: "acme/app".into(),
                images: vec![ImageData {
                    platforms,
                    manifest: Some(ManifestData {
                        digest: format!("registry.example.com/acme/app@sha256:{HEX}"),
                        ..ManifestData::default()
                    }),
                    ..ImageData::default()
                }],
                ..RepoData::default()
            }],
            ..ImageInfo::default()
        }
    }

    #[test]
    fn the_file_registry_is_the_one_most_digests_name() {
        let cases: [(&[&str], Option<&str>); 4] = [
            (&[], Some("registry.example.com")),
            (
                &["evil.example.net/acme/app", "evil.example.net/acme/app"],
                Some("evil.example.net"),
            ),
            // One each: the first named wins the tie.
            (&["evil.example.net/acme/app"], Some("evil.example.net")),
            (&["acme/app", "acme/app", "not a reference"], None),
        ];
        for (references, expected) in cases {
            assert_eq!(
                PublicRegistry::from_file(&info(references)).registry,
                expected,
                "{references:?}"
            );
        }
    }

    #[test]
    fn each_wrong_name_is_one_issue_saying_what_it_names_and_what_it_should() {
        let file = Path::new("image-info.json");
        let file_registry = PublicRegistry {
            registry: Some("registry.example.com"),
            source: RegistrySource::File,
        };
        let manifest_registry = PublicRegistry::from_manifest(Some("registry.example.com"));
        let bare = PublicRegistry::from_manifest(Some(""));
        let digest = format!("sha256:{HEX}");
        // (name, recorded repository, public registry, (found, expected) of the issue if one is due).
        let cases: [Case<'_>; 9] = [
            (
                "registry.example.com/acme/app",
                Some("acme/app"),
                &file_registry,
                None,
            ),
            ("acme/app", Some("acme/app"), &bare, None),
            ("registry.example.com/other/app", None, &file_registry, None),
            (
                "evil.example.net/other/thing",
                Some("acme/app"),
                &file_registry,
                Some((
                    "naming registry `evil.example.net` and repository `other/thing`",
                    "`registry.example.com/acme/app@sha256:",
                )),
            ),
            (
                "registry.example.com/other/thing",
                Some("acme/app"),
                &manifest_registry,
                Some((
                    "naming repository `other/thing`",
                    "in `registry.example.com`, the manifest's `registry`",
                )),
            ),
            (
                "evil.example.net/acme/app",
                Some("acme/app"),
                &file_registry,
                Some((
                    "naming registry `evil.example.net`",
                    "the registry the file's other digests name",
                )),
            ),
            (
                "registry.example.com/acme/app",
                Some("acme/app"),
                &bare,
                Some((
                    "naming registry `registry.example.com`",
                    "`acme/app@sha256:",
                )),
            ),
            (
                "evil.example.net/other/app",
                None,
                &file_registry,
                Some((
                    "naming registry `evil.example.net`",
                    "a name in `registry.example.com`",
                )),
            ),
            (
                "registry.example.com/ACME/../../v2/x?y#z",
                Some("acme/app"),
                &file_registry,
                Some((
                    "repository `ACME/../../v2/x?y#z` in `registry.example.com/ACME",
                    REPOSITORY_RULE,
                )),
            ),
        ];
        for (name, repository, public, due) in cases {
            let text = format!("{name}@{digest}");
            let issue = check_digest_name(file, JsonPath::from("x"), &text, repository, public);
            match (issue, due) {
                (None, None) => {}
                (Some(issue), Some((found, expected))) => {
                    assert!(issue.found.contains(found), "{name}: {issue}");
                    assert!(issue.expected.contains(expected), "{name}: {issue}");
                    assert_eq!(issue.path, JsonPath::from("x"), "{name}");
                }
                (issue, _) => panic!("{name}: {issue:?}"),
            }
        }
    }
}
