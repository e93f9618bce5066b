//! image-info.json: what was built, compatible with ImageBuilder's image-info (schemaVersion 1.0 and 2.0).
//!
//! We read both versions and write 2.0. Our additions (the `pipeline` ledger, `signatures`, `isUnchanged`) are
//! new keys older readers ignore. Output is deterministic: [`ImageInfo::normalize`] sorts everything whose order
//! carries no meaning; layers keep their build order and tags the manifest's order (the first tag is the one a
//! platform is looked up by).

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::issue::{FirstSeen, Issue, JsonPath, quoted};
use super::ledger::Pipeline;
use super::manifest::Extra;
use super::naming::{PublicRegistry, check_digest_name};
use super::platform::{self, ARCHITECTURES, OPERATING_SYSTEMS, PlatformIdentity};
use super::reference::{REPOSITORY_RULE, is_valid_repository, is_valid_tag};

/// The version this product writes.
pub const SCHEMA_VERSION: &str = "2.0";
/// The versions this product reads.
pub const READABLE_SCHEMA_VERSIONS: &[&str] = &["1.0", "2.0"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "imagepipe image-info.json")]
pub struct ImageInfo {
    /// `1.0` or `2.0` when read; always `2.0` when written.
    pub schema_version: String,
    #[serde(default)]
    pub repos: Vec<RepoData>,
    /// The ledger of completed stages (added by imagepipe).
    #[serde(default, skip_serializing_if = "Pipeline::is_empty")]
    pub pipeline: Pipeline,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for ImageInfo {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION.to_owned(),
            repos: Vec::new(),
            pipeline: Pipeline::default(),
            extra: Extra::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoData {
    /// The repository path without registry, e.g. `dotnet/aspnet`.
    pub repo: String,
    #[serde(default)]
    pub images: Vec<ImageData>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    /// The manifest list (OCI index) of the image; absent for images without shared tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestData>,
    #[serde(default)]
    pub platforms: Vec<PlatformData>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestData {
    /// `registry/repo@sha256:…` of the index, named with the public registry.
    pub digest: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syndicated_digests: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub shared_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureRecord>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformData {
    /// The Dockerfile the image was built from.
    pub dockerfile: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub simple_tags: Vec<String>,
    /// `registry/repo@sha256:…` of the platform image, named with the public registry.
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image_digest: Option<String>,
    /// `Linux` or `Windows` as ImageBuilder writes it; compared without case.
    pub os_type: String,
    #[serde(default)]
    pub os_version: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_url: Option<String>,
    /// Layers in build order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<WrittenLayer>")]
    pub layers: Vec<Layer>,
    /// `sha256:…` over the Dockerfile's folder as built (added by imagepipe): with `baseImageDigest`, what the
    /// matrix compares to leave out a platform that would build the same again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_digest: Option<String>,
    /// Set when the platform was not rebuilt in this run and its published digest was reused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_unchanged: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureRecord>,
    /// The attestation manifest the builder attached to the image (BuildKit's provenance and SBOM), listed
    /// beside it in the image's index, signed and published with it (added by imagepipe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationData>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An attestation manifest: `unknown/unknown` in an index, annotated as describing one platform image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationData {
    /// `registry/repo@sha256:…` of the attestation manifest, named with the public registry.
    pub digest: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureRecord>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A layer: a bare digest string in schemaVersion 1.0, `{digest, size}` in 2.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    pub digest: String,
    /// Unknown for layers read from schemaVersion 1.0, which recorded none; then left out rather than invented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The two ways a layer is written, as read.
#[derive(Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a layer digest string or an object with `digest` and `size`"
)]
enum WrittenLayer {
    /// schemaVersion 1.0: the digest alone.
    Digest(String),
    /// schemaVersion 2.0.
    Described { digest: String, size: Option<u64> },
}

impl<'de> Deserialize<'de> for Layer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match WrittenLayer::deserialize(deserializer)? {
            WrittenLayer::Digest(digest) => Layer { digest, size: None },
            WrittenLayer::Described { digest, size } => Layer { digest, size },
        })
    }
}

/// A signature object stored for a digest (added by imagepipe).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignatureRecord {
    /// The digest of the signature object (manifest) in the registry.
    pub digest: String,
    /// How it is stored, e.g. `cosign-tag` or `referrers`.
    pub format: String,
    /// Identifies the signing key (SHA-256 of its public key).
    pub key_id: String,
}

impl PlatformData {
    pub fn identity(&self) -> PlatformIdentity {
        PlatformIdentity::new(
            &self.dockerfile,
            &self.os_type,
            &self.os_version,
            &self.architecture,
            self.variant.as_deref(),
        )
    }
}

impl ImageData {
    /// Orders images by what identifies them, once their platforms are sorted.
    fn sort_key(&self) -> (Option<&str>, Option<PlatformIdentity>, Option<&str>) {
        (
            self.product_version.as_deref(),
            self.platforms.first().map(PlatformData::identity),
            self.manifest
                .as_ref()
                .map(|manifest| manifest.digest.as_str()),
        )
    }
}

impl ImageInfo {
    /// Puts every record in its canonical form and order and marks the file as the version we write, so that
    /// equal content always serializes to equal bytes.
    pub fn normalize(&mut self) {
        self.schema_version = SCHEMA_VERSION.to_owned();
        for repo in &mut self.repos {
            for image in &mut repo.images {
                if let Some(manifest) = &mut image.manifest {
                    unique_in_order(&mut manifest.shared_tags);
                    sort_unique(&mut manifest.syndicated_digests);
                    manifest.signatures.sort();
                    manifest.signatures.dedup();
                }
                for platform in &mut image.platforms {
                    platform.canonicalize();
                    unique_in_order(&mut platform.simple_tags);
                    platform.signatures.sort();
                    platform.signatures.dedup();
                    if let Some(attestation) = &mut platform.attestation {
                        attestation.signatures.sort();
                        attestation.signatures.dedup();
                    }
                }
                image.platforms.sort_by_cached_key(PlatformData::identity);
            }
            repo.images
                .sort_by(|left, right| left.sort_key().cmp(&right.sort_key()));
        }
        self.repos.sort_by(|left, right| left.repo.cmp(&right.repo));
    }

    /// Counts of repos, images, platforms and indexes, for summaries.
    pub fn counts(&self) -> Counts {
        let images = self.repos.iter().flat_map(|repo| &repo.images);
        let mut counts = Counts {
            repos: self.repos.len(),
            ..Counts::default()
        };
        for image in images {
            counts.images += 1;
            counts.platforms += image.platforms.len();
            counts.indexes += usize::from(image.manifest.is_some());
        }
        counts
    }

    /// Checks what serde cannot: digest and tag syntax, known platforms, no platform recorded twice, and the names
    /// of digests (see [`super::naming`]), whose registry must be the one most of the file's digests name.
    pub fn check(&self, file: &Path) -> Vec<Issue> {
        let public = PublicRegistry::from_file(self);
        let mut issues = Vec::new();
        if !READABLE_SCHEMA_VERSIONS.contains(&self.schema_version.as_str()) {
            issues.push(Issue::new(
                file,
                JsonPath::root().key("schemaVersion"),
                quoted(&self.schema_version),
                "`1.0` or `2.0`",
            ));
        }
        for (repo_index, repo) in self.repos.iter().enumerate() {
            let repo_path = JsonPath::root().key("repos").index(repo_index);
            let repository = is_valid_repository(&repo.repo).then_some(repo.repo.as_str());
            if repository.is_none() {
                issues.push(Issue::new(
                    file,
                    repo_path.key("repo"),
                    quoted(&repo.repo),
                    REPOSITORY_RULE,
                ));
            }
            let check_name = |path, text: &str, repository| {
                check_digest_name(file, path, text, repository, &public)
            };
            for (image_index, image) in repo.images.iter().enumerate() {
                let image_path = repo_path.key("images").index(image_index);
                if let Some(manifest) = &image.manifest {
                    let manifest_path = image_path.key("manifest");
                    issues.extend(check_name(
                        manifest_path.key("digest"),
                        &manifest.digest,
                        repository,
                    ));
                    // A syndicated copy is the index under another repository: only its registry is fixed.
                    for (index, syndicated) in manifest.syndicated_digests.iter().enumerate() {
                        let path = manifest_path.key("syndicatedDigests").index(index);
                        issues.extend(check_name(path, syndicated, None));
                    }
                    check_tags(
                        file,
                        &manifest_path.key("sharedTags"),
                        &manifest.shared_tags,
                        &mut issues,
                    );
                }
                // A platform may be listed under several images (each manifest list that includes it), but once
                // in each.
                let mut identities = FirstSeen::default();
                for (platform_index, entry) in image.platforms.iter().enumerate() {
                    let path = image_path.key("platforms").index(platform_index);
                    issues.extend(check_name(path.key("digest"), &entry.digest, repository));
                    if let Some(attestation) = &entry.attestation {
                        let path = path.key("attestation").key("digest");
                        issues.extend(check_name(path, &attestation.digest, repository));
                    }
                    check_platform(file, &path, entry, &mut issues);
                    if let Some(first) = identities.repeat_of(entry.identity(), &path) {
                        issues.push(Issue::new(
                            file,
                            path,
                            format!(
                                "the platform `{}` recorded again (first at `{first}`)",
                                entry.identity()
                            ),
                            "each Dockerfile and platform once per image",
                        ));
                    }
                }
            }
        }
        issues
    }
}

/// Which digest of an image an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestSlot {
    Platform(usize),
    /// The attestation manifest of the platform at this index.
    Attestation(usize),
    Index,
    /// A copy of the index under another repository name.
    Syndicated(usize),
}

/// One digest image-info records, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestEntry {
    pub repo: usize,
    pub image: usize,
    pub slot: DigestSlot,
    /// As recorded: `registry/repository@sha256:…`.
    pub reference: String,
}

impl DigestEntry {
    /// Where the entry stands in the file.
    pub fn path(&self) -> JsonPath {
        let image = JsonPath::root()
            .key("repos")
            .index(self.repo)
            .key("images")
            .index(self.image);
        match self.slot {
            DigestSlot::Platform(index) => image.key("platforms").index(index).key("digest"),
            DigestSlot::Attestation(index) => image
                .key("platforms")
                .index(index)
                .key("attestation")
                .key("digest"),
            DigestSlot::Index => image.key("manifest").key("digest"),
            DigestSlot::Syndicated(index) => {
                image.key("manifest").key("syndicatedDigests").index(index)
            }
        }
    }
}

impl ImageInfo {
    /// Every digest reference as written, in the order of [`ImageInfo::digest_entries`].
    pub fn digest_references(&self) -> impl Iterator<Item = &str> {
        self.repos
            .iter()
            .flat_map(|repo| &repo.images)
            .flat_map(|image| {
                let platforms = image.platforms.iter().flat_map(|platform| {
                    std::iter::once(platform.digest.as_str()).chain(
                        platform
                            .attestation
                            .iter()
                            .map(|attestation| attestation.digest.as_str()),
                    )
                });
                let index = image.manifest.iter().flat_map(|manifest| {
                    std::iter::once(manifest.digest.as_str())
                        .chain(manifest.syndicated_digests.iter().map(String::as_str))
                });
                platforms.chain(index)
            })
    }

    /// Checks that every digest names `public`, once a stage knows the public registry from the manifest. The
    /// rest of the names rule was checked on loading.
    pub fn check_registry(&self, file: &Path, public: &PublicRegistry<'_>) -> Vec<Issue> {
        self.digest_entries()
            .into_iter()
            .filter_map(|entry| {
                let repository = match entry.slot {
                    DigestSlot::Platform(_) | DigestSlot::Attestation(_) | DigestSlot::Index => {
                        Some(self.repos[entry.repo].repo.as_str())
                            .filter(|repository| is_valid_repository(repository))
                    }
                    DigestSlot::Syndicated(_) => None,
                };
                check_digest_name(file, entry.path(), &entry.reference, repository, public)
            })
            .collect()
    }

    /// Every digest: each platform's, each index's and each syndicated copy's, in file order.
    pub fn digest_entries(&self) -> Vec<DigestEntry> {
        let mut entries = Vec::new();
        for (repo, data) in self.repos.iter().enumerate() {
            for (image, image_data) in data.images.iter().enumerate() {
                let entry = |slot, reference: &String| DigestEntry {
                    repo,
                    image,
                    slot,
                    reference: reference.clone(),
                };
                for (index, platform) in image_data.platforms.iter().enumerate() {
                    entries.push(entry(DigestSlot::Platform(index), &platform.digest));
                    if let Some(attestation) = &platform.attestation {
                        entries.push(entry(DigestSlot::Attestation(index), &attestation.digest));
                    }
                }
                if let Some(manifest) = &image_data.manifest {
                    entries.push(entry(DigestSlot::Index, &manifest.digest));
                    for (index, syndicated) in manifest.syndicated_digests.iter().enumerate() {
                        entries.push(entry(DigestSlot::Syndicated(index), syndicated));
                    }
                }
            }
        }
        entries
    }

    /// The signature records of a digest entry; a syndicated copy's are kept with its index's.
    pub fn signatures_mut(&mut self, entry: &DigestEntry) -> Option<&mut Vec<SignatureRecord>> {
        let image = self
            .repos
            .get_mut(entry.repo)?
            .images
            .get_mut(entry.image)?;
        match entry.slot {
            DigestSlot::Platform(index) => Some(&mut image.platforms.get_mut(index)?.signatures),
            DigestSlot::Attestation(index) => Some(
                &mut image
                    .platforms
                    .get_mut(index)?
                    .attestation
                    .as_mut()?
                    .signatures,
            ),
            DigestSlot::Index | DigestSlot::Syndicated(_) => {
                Some(&mut image.manifest.as_mut()?.signatures)
            }
        }
    }
}

/// Sizes of an image-info, for progress and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub repos: usize,
    pub images: usize,
    pub platforms: usize,
    pub indexes: usize,
}

fn check_platform(file: &Path, path: &JsonPath, entry: &PlatformData, issues: &mut Vec<Issue>) {
    if !OPERATING_SYSTEMS.contains(&platform::canonical_os(&entry.os_type).as_str()) {
        issues.push(Issue::new(
            file,
            path.key("osType"),
            quoted(&entry.os_type),
            "`Linux` or `Windows`",
        ));
    }
    let architecture = platform::canonical_architecture(&entry.architecture);
    if !ARCHITECTURES.contains(&architecture.as_str()) {
        let known: Vec<String> = ARCHITECTURES.iter().map(|name| quoted(name)).collect();
        issues.push(Issue::new(
            file,
            path.key("architecture"),
            quoted(&entry.architecture),
            format!("one of {} (or `arm32`)", known.join(", ")),
        ));
    }
    check_tags(file, &path.key("simpleTags"), &entry.simple_tags, issues);
}

fn check_tags(file: &Path, path: &JsonPath, tags: &[String], issues: &mut Vec<Issue>) {
    for (index, tag) in tags.iter().enumerate() {
        if !is_valid_tag(tag) {
            issues.push(Issue::new(
                file,
                path.index(index),
                quoted(tag),
                "up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
            ));
        }
    }
}

fn sort_unique(values: &mut Vec<String>) {
    values.sort();
    values.dedup();
}

/// Drops repeats, keeping each value's first place.
fn unique_in_order(values: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    values.retain(|value| seen.insert(value.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST_A: &str = "registry.example/team/app@sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn layers_read_from_both_schema_versions() {
        let layers: Vec<Layer> = serde_json::from_str(
            r#"["sha256:aa", {"digest": "sha256:bb", "size": 12}, {"digest": "sha256:cc"}]"#,
        )
        .expect("both forms parse");
        assert_eq!(
            layers[0],
            Layer {
                digest: "sha256:aa".into(),
                size: None
            }
        );
        assert_eq!(
            layers[1],
            Layer {
                digest: "sha256:bb".into(),
                size: Some(12)
            }
        );
        assert_eq!(
            serde_json::to_string(&layers[1]).expect("serializes"),
            r#"{"digest":"sha256:bb","size":12}"#
        );
        assert!(serde_json::from_str::<Layer>("12").is_err());
    }

    #[test]
    fn normalize_sorts_all_but_layers_and_tags() {
        let platform = |dockerfile: &str, tags: &[&str]| PlatformData {
            dockerfile: dockerfile.into(),
            digest: DIGEST_A.into(),
            os_type: "Linux".into(),
            architecture: "amd64".into(),
            simple_tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            layers: vec![
                Layer {
                    digest: "sha256:zz".into(),
                    size: Some(1),
                },
                Layer {
                    digest: "sha256:aa".into(),
                    size: Some(2),
                },
            ],
            ..PlatformData::default()
        };
        let mut info = ImageInfo {
            schema_version: "1.0".into(),
            repos: vec![
                RepoData {
                    repo: "z".into(),
                    ..RepoData::default()
                },
                RepoData {
                    repo: "a".into(),
                    images: vec![ImageData {
                        platforms: vec![platform("b", &["t2", "t1", "t1"]), platform("a", &[])],
                        ..ImageData::default()
                    }],
                    ..RepoData::default()
                },
            ],
            ..ImageInfo::default()
        };
        info.normalize();
        assert_eq!(info.schema_version, "2.0");
        assert_eq!(info.repos[0].repo, "a");
        let platforms = &info.repos[0].images[0].platforms;
        assert_eq!(
            platforms[0].dockerfile, "a/Dockerfile",
            "normalize also canonicalizes"
        );
        assert_eq!(
            platforms[1].simple_tags,
            ["t2", "t1"],
            "tags keep their order"
        );
        assert_eq!(platforms[1].layers[0].digest, "sha256:zz");
    }

    #[test]
    fn check_names_bad_fields() {
        let info: ImageInfo = serde_json::from_value(serde_json::json!({
            "schemaVersion": "3.0",
            "repos": [{"repo": "team/app", "images": [{
                "manifest": {"digest": "team/app:latest", "sharedTags": ["ok", "-bad"]},
                "platforms": [
                    {"dockerfile": "a", "digest": DIGEST_A, "osType": "Linux", "architecture": "arm32"},
                    {"dockerfile": "a/Dockerfile", "digest": DIGEST_A, "osType": "Plan9", "architecture": "vax"}
                ]}]}]
        }))
        .expect("parses");
        let paths: Vec<String> = info
            .check(Path::new("image-info.json"))
            .iter()
            .map(|issue| issue.path.to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "schemaVersion",
                "repos[0].images[0].manifest.digest",
                "repos[0].images[0].manifest.sharedTags[1]",
                "repos[0].images[0].platforms[1].osType",
                "repos[0].images[0].platforms[1].architecture",
            ]
        );
    }

    #[test]
    fn check_holds_every_digest_to_its_repository_and_the_public_registry() {
        let hex = "1".repeat(64);
        let named = |name: &str| format!("{name}@sha256:{hex}");
        let file = |repo: &str, platform: &str, index: &str, syndicated: &str| {
            serde_json::json!({"schemaVersion": "2.0", "repos": [{"repo": repo, "images": [{
                "manifest": {"digest": named(index), "sharedTags": ["1"], "syndicatedDigests": [named(syndicated)]},
                "platforms": [{"dockerfile": "a", "digest": named(platform), "osType": "Linux", "architecture": "amd64"}]
            }]}]})
        };
        let good = "registry.example/team/app";
        let cases: [(&str, serde_json::Value, &[&str]); 6] = [
            (
                "as built",
                file("team/app", good, good, "registry.example/team/copy"),
                &[],
            ),
            (
                "another repository",
                file("team/app", "evil.example/other/thing", good, good),
                &["repos[0].images[0].platforms[0].digest"],
            ),
            (
                "another repository, same registry",
                file("team/app", good, "registry.example/other/thing", good),
                &["repos[0].images[0].manifest.digest"],
            ),
            (
                "a syndicated copy in another registry",
                file("team/app", good, good, "evil.example/team/copy"),
                &["repos[0].images[0].manifest.syndicatedDigests[0]"],
            ),
            (
                "a hostile repository",
                file("ACME/../../v2/x?y#z", good, good, good),
                &["repos[0].repo"],
            ),
            (
                "a hostile digest name",
                file(
                    "team/app",
                    "registry.example/ACME/../../v2/x?y#z",
                    good,
                    good,
                ),
                &["repos[0].images[0].platforms[0].digest"],
            ),
        ];
        for (case, content, expected) in cases {
            let info: ImageInfo = serde_json::from_value(content).expect("parses");
            let paths: Vec<String> = info
                .check(Path::new("image-info.json"))
                .iter()
                .map(|issue| issue.path.to_string())
                .collect();
            assert_eq!(paths, expected, "{case}");
        }
    }

    #[test]
    fn check_registry_holds_every_digest_to_the_manifest_registry() {
        let hex = "1".repeat(64);
        let info: ImageInfo = serde_json::from_value(serde_json::json!({"schemaVersion": "2.0",
            "repos": [{"repo": "team/app", "images": [{
                "manifest": {"digest": format!("evil.example/team/app@sha256:{hex}"), "sharedTags": ["1"]},
                "platforms": [{"dockerfile": "a", "digest": format!("evil.example/team/app@sha256:{hex}"),
                    "osType": "Linux", "architecture": "amd64"}]}]}]}))
        .expect("parses");
        let file = Path::new("image-info.json");
        assert_eq!(info.check(file), Vec::new(), "the file agrees with itself");
        let issues = info.check_registry(
            file,
            &PublicRegistry::from_manifest(Some("registry.example")),
        );
        let paths: Vec<String> = issues.iter().map(|issue| issue.path.to_string()).collect();
        assert_eq!(
            paths,
            [
                "repos[0].images[0].platforms[0].digest",
                "repos[0].images[0].manifest.digest"
            ]
        );
        assert!(
            issues[0]
                .expected
                .contains("`registry.example/team/app@sha256:"),
            "{}",
            issues[0]
        );
        assert_eq!(
            info.check_registry(file, &PublicRegistry::from_manifest(Some("evil.example"))),
            Vec::new()
        );
    }
}
