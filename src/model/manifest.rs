//! manifest.json: what to build. Compatible with ImageBuilder's manifest format, so real manifests load unchanged.
//!
//! A manifest is used in two shapes: as written (variables unexpanded, `includes` unmerged; what a round trip
//! saves) and resolved (includes merged, every `$(…)` expanded; what stages work from). Both are this type.

use std::collections::{BTreeMap, BTreeSet};

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::issue::{FirstSeen, Issue, JsonPath, quoted};
use super::platform::{
    self, ARCHITECTURES, DEFAULT_ARCHITECTURE, OPERATING_SYSTEMS, PlatformIdentity,
};
use super::reference::{
    REGISTRY_RULE, REPOSITORY_RULE, is_valid_registry, is_valid_repository, is_valid_tag,
};
use super::variables::Variables;

/// Keys this product does not interpret, kept so a load/save round trip loses nothing.
pub type Extra = BTreeMap<String, Value>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "imagepipe manifest.json")]
pub struct Manifest {
    /// The public registry images are published to, e.g. `mcr.microsoft.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Values for `$(name)` references.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, VariableValue>,
    /// Further manifest files, relative to this one, whose variables and repos are merged in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub includes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<Repo>,
    #[serde(flatten)]
    pub extra: Extra,
    #[serde(skip)]
    pub origin: Origin,
}

/// Variable values are mostly strings; real files also hold numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum VariableValue {
    Text(String),
    Number(serde_json::Number),
    Flag(bool),
}

impl VariableValue {
    fn as_text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Number(number) => number.to_string(),
            Self::Flag(flag) => flag.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Repo {
    /// What `$(Repo:<id>)` refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The repository path in the registry, e.g. `dotnet/aspnet`.
    pub name: String,
    #[serde(default)]
    pub images: Vec<Image>,
    #[serde(flatten)]
    pub extra: Extra,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    /// Tags shared by all platforms of the image; each becomes a manifest list (OCI index). In the file's
    /// order, which is meaningful: the first tag is the one a platform is looked up by.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub shared_tags: IndexMap<String, TagOptions>,
    pub platforms: Vec<PlatformEntry>,
    #[serde(flatten)]
    pub extra: Extra,
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformEntry {
    /// The Dockerfile, or the folder holding it.
    pub dockerfile: String,
    /// `linux` or `windows`.
    pub os: String,
    /// The OS release the image is based on, e.g. `bookworm-slim` or `nanoserver-ltsc2022`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// OCI architecture; `amd64` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// In the file's order: a platform not rebuilt in a run is found in the public registry by its first tag.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub tags: IndexMap<String, TagOptions>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The object a tag maps to (`{}` or `{"docType": "Undocumented"}`); kept as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TagOptions {
    #[serde(flatten)]
    pub extra: Extra,
}

/// Where an entry was written: merged manifests draw repos and images from several files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub path: JsonPath,
}

impl Origin {
    fn path_of(&self, below: &[PathStep<'_>]) -> JsonPath {
        below
            .iter()
            .fold(self.path.clone(), |path, step| match step {
                PathStep::Key(name) => path.key(name),
                PathStep::Index(index) => path.index(*index),
            })
    }

    fn issue(&self, below: &[PathStep<'_>], found: String, expected: impl Into<String>) -> Issue {
        Issue::new(&self.file, self.path_of(below), found, expected)
    }
}

enum PathStep<'a> {
    Key(&'a str),
    Index(usize),
}
use PathStep::{Index, Key};

impl PlatformEntry {
    pub fn architecture(&self) -> &str {
        self.architecture.as_deref().unwrap_or(DEFAULT_ARCHITECTURE)
    }

    pub fn identity(&self) -> PlatformIdentity {
        PlatformIdentity::new(
            &self.dockerfile,
            &self.os,
            self.os_version.as_deref().unwrap_or_default(),
            self.architecture(),
            self.variant.as_deref(),
        )
    }
}

impl Repo {
    /// `registry/name`, as image-info and `$(Repo:<id>)` name a repository.
    pub fn qualified_name(&self, registry: Option<&str>) -> String {
        match registry {
            Some(registry) if !registry.is_empty() => format!("{registry}/{}", self.name),
            _ => self.name.clone(),
        }
    }
}

impl Manifest {
    /// Records where each repo and image stands in `file`, so issues found later name the right place.
    pub fn locate(&mut self, file: &Path) {
        self.origin = Origin {
            file: file.to_owned(),
            path: JsonPath::root(),
        };
        for (repo_index, repo) in self.repos.iter_mut().enumerate() {
            let repo_path = JsonPath::root().key("repos").index(repo_index);
            for (image_index, image) in repo.images.iter_mut().enumerate() {
                image.origin = Origin {
                    file: file.to_owned(),
                    path: repo_path.key("images").index(image_index),
                };
            }
            repo.origin = Origin {
                file: file.to_owned(),
                path: repo_path,
            };
        }
    }

    /// Merges an included manifest (already located and itself merged with its own includes).
    ///
    /// Variables join this manifest's; a variable defined twice with different values is an issue. Repos with the
    /// id or name of one already present contribute their images to it; others are appended.
    pub fn include(&mut self, own_file: &Path, included: Manifest) -> Vec<Issue> {
        let mut issues = Vec::new();
        for (name, value) in included.variables {
            match self.variables.get(&name) {
                Some(existing) if *existing != value => issues.push(Issue::new(
                    own_file,
                    JsonPath::root().key("variables").key(&name),
                    format!(
                        "{} in an included file and {} here",
                        json(&value),
                        json(existing)
                    ),
                    "each variable defined once across a manifest and its includes",
                )),
                Some(_) => {}
                None => {
                    self.variables.insert(name, value);
                }
            }
        }
        for repo in included.repos {
            let same = self.repos.iter_mut().find(|existing| {
                (repo.id.is_some() && existing.id == repo.id) || existing.name == repo.name
            });
            match same {
                Some(existing) => existing.images.extend(repo.images),
                None => self.repos.push(repo),
            }
        }
        if self.registry.is_none() {
            self.registry = included.registry;
        }
        issues
    }

    /// Expands every `$(…)` in the fields stages read. `overrides` (from `--var` and built-ins such as
    /// `UniqueId`) take precedence over the manifest's own variables. Returns the manifest expanded as far as
    /// possible (a reference that cannot be expanded stays as written) and an issue for each such reference.
    pub fn resolve(&self, overrides: &BTreeMap<String, String>) -> (Manifest, Vec<Issue>) {
        let mut values: BTreeMap<String, String> = self
            .variables
            .iter()
            .map(|(name, value)| (name.clone(), value.as_text()))
            .collect();
        values.extend(overrides.clone());
        let plain = Variables::new(values.clone(), BTreeMap::new());
        let mut issues = Vec::new();
        let registry = self.registry.as_deref().map(|registry| {
            resolve_text(
                &plain,
                registry,
                &self.origin,
                &[Key("registry")],
                &mut issues,
            )
        });
        let repositories = self
            .repos
            .iter()
            .filter_map(|repo| {
                let id = repo.id.clone()?;
                let name = resolve_text(
                    &plain,
                    &repo.name,
                    &repo.origin,
                    &[Key("name")],
                    &mut issues,
                );
                let qualified = Repo {
                    name,
                    ..Repo::default()
                }
                .qualified_name(registry.as_deref());
                Some((id, qualified))
            })
            .collect();
        let variables = Variables::new(values, repositories);
        let repos = self
            .repos
            .iter()
            .map(|repo| resolve_repo(&variables, repo, &mut issues))
            .collect();
        let resolved = Manifest {
            registry,
            variables: self.variables.clone(),
            includes: Vec::new(),
            repos,
            extra: self.extra.clone(),
            origin: self.origin.clone(),
        };
        // A repository name is expanded twice (for `$(Repo:<id>)` and for itself): report it once.
        issues.sort();
        issues.dedup();
        (resolved, issues)
    }

    /// Checks a resolved manifest for what would break a build or a publish.
    pub fn check(&self) -> Vec<Issue> {
        let mut issues = Vec::new();
        // Every image-info name is built from it, and image-info is held to it.
        if let Some(registry) = self.registry.as_deref() {
            if !registry.is_empty() && !is_valid_registry(registry) {
                issues.push(
                    self.origin
                        .issue(&[Key("registry")], quoted(registry), REGISTRY_RULE),
                );
            }
        }
        let mut ids = BTreeSet::new();
        let mut names = BTreeSet::new();
        for repo in &self.repos {
            if !is_valid_repository(&repo.name) {
                issues.push(
                    repo.origin
                        .issue(&[Key("name")], quoted(&repo.name), REPOSITORY_RULE),
                );
            }
            if !names.insert(&repo.name) {
                issues.push(repo.origin.issue(
                    &[Key("name")],
                    quoted(&repo.name),
                    "a name used by one repo only",
                ));
            }
            if let Some(id) = &repo.id {
                if !ids.insert(id) {
                    issues.push(repo.origin.issue(
                        &[Key("id")],
                        quoted(id),
                        "an id used by one repo only",
                    ));
                }
            }
            check_repo(repo, &mut issues);
        }
        issues
    }
}

fn check_repo(repo: &Repo, issues: &mut Vec<Issue>) {
    // A tag names one thing in a repository; a platform may appear in several images (ImageBuilder manifests
    // list a platform under each manifest list that includes it) but only once in each.
    let mut tags = FirstSeen::default();
    for image in &repo.images {
        if image.platforms.is_empty() {
            issues.push(image.origin.issue(
                &[Key("platforms")],
                "no platforms".to_owned(),
                "at least one platform",
            ));
        }
        for tag in image.shared_tags.keys() {
            check_tag(
                &image.origin,
                &[Key("sharedTags"), Key(tag)],
                tag,
                &mut tags,
                issues,
            );
        }
        let mut identities = FirstSeen::default();
        for (index, entry) in image.platforms.iter().enumerate() {
            check_platform(&image.origin, index, entry, issues);
            for tag in entry.tags.keys() {
                let below = [Key("platforms"), Index(index), Key("tags"), Key(tag)];
                check_tag(&image.origin, &below, tag, &mut tags, issues);
            }
            let below = [Key("platforms"), Index(index)];
            if let Some(first) =
                identities.repeat_of(entry.identity(), &image.origin.path_of(&below))
            {
                issues.push(image.origin.issue(
                    &below,
                    format!(
                        "the platform `{}` declared again (first at `{first}`)",
                        entry.identity()
                    ),
                    "each Dockerfile and platform once per image",
                ));
            }
        }
    }
}

fn check_platform(origin: &Origin, index: usize, entry: &PlatformEntry, issues: &mut Vec<Issue>) {
    let at = |field: &'static str| [Key("platforms"), Index(index), Key(field)];
    if entry.dockerfile.trim().is_empty() {
        issues.push(origin.issue(
            &at("dockerfile"),
            "an empty path".to_owned(),
            "the path of a Dockerfile or its folder",
        ));
    }
    if !OPERATING_SYSTEMS.contains(&platform::canonical_os(&entry.os).as_str()) {
        issues.push(origin.issue(&at("os"), quoted(&entry.os), one_of(OPERATING_SYSTEMS)));
    }
    let architecture = entry.architecture();
    if !ARCHITECTURES.contains(&architecture) {
        issues.push(origin.issue(
            &at("architecture"),
            quoted(architecture),
            one_of(ARCHITECTURES),
        ));
    } else if let Some(variant) = &entry.variant {
        let variants = platform::variants_of(architecture);
        if !variants.contains(&variant.as_str()) {
            let expected = if variants.is_empty() {
                format!("no variant for `{architecture}`")
            } else {
                format!("for `{architecture}`, {}", one_of(variants))
            };
            issues.push(origin.issue(&at("variant"), quoted(variant), expected));
        }
    }
}

fn check_tag<'a>(
    origin: &Origin,
    below: &[PathStep<'_>],
    tag: &'a str,
    seen: &mut FirstSeen<&'a str>,
    issues: &mut Vec<Issue>,
) {
    if !is_valid_tag(tag) {
        issues.push(origin.issue(
            below,
            format!("the tag {}", quoted(tag)),
            "up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
        ));
    } else if let Some(first) = seen.repeat_of(tag, &origin.path_of(below)) {
        issues.push(origin.issue(
            below,
            format!("the tag {} already used at `{first}`", quoted(tag)),
            "each tag once per repo",
        ));
    }
}

fn resolve_repo(variables: &Variables, repo: &Repo, issues: &mut Vec<Issue>) -> Repo {
    let origin = &repo.origin;
    let images = repo
        .images
        .iter()
        .map(|image| resolve_image(variables, image, issues))
        .collect();
    Repo {
        id: repo.id.clone(),
        name: resolve_text(variables, &repo.name, origin, &[Key("name")], issues),
        images,
        extra: repo.extra.clone(),
        origin: origin.clone(),
    }
}

fn resolve_image(variables: &Variables, image: &Image, issues: &mut Vec<Issue>) -> Image {
    let origin = &image.origin;
    let product_version = image
        .product_version
        .as_deref()
        .map(|version| resolve_text(variables, version, origin, &[Key("productVersion")], issues));
    let shared_tags = resolve_tags(
        variables,
        &image.shared_tags,
        origin,
        &[Key("sharedTags")],
        issues,
    );
    let platforms = image
        .platforms
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let below = |field| [Key("platforms"), Index(index), Key(field)];
            let mut text =
                |value: &str, field| resolve_text(variables, value, origin, &below(field), issues);
            let dockerfile = text(&entry.dockerfile, "dockerfile");
            let os = text(&entry.os, "os");
            let os_version = entry
                .os_version
                .as_deref()
                .map(|value| text(value, "osVersion"));
            let architecture = entry
                .architecture
                .as_deref()
                .map(|value| text(value, "architecture"));
            let variant = entry.variant.as_deref().map(|value| text(value, "variant"));
            let build_args = entry
                .build_args
                .iter()
                .map(|(name, value)| {
                    let at = [Key("platforms"), Index(index), Key("buildArgs"), Key(name)];
                    (
                        name.clone(),
                        resolve_text(variables, value, origin, &at, issues),
                    )
                })
                .collect();
            let tags_at = [Key("platforms"), Index(index), Key("tags")];
            PlatformEntry {
                dockerfile,
                os,
                os_version,
                architecture,
                variant,
                tags: resolve_tags(variables, &entry.tags, origin, &tags_at, issues),
                build_args,
                extra: entry.extra.clone(),
            }
        })
        .collect();
    Image {
        product_version,
        shared_tags,
        platforms,
        extra: image.extra.clone(),
        origin: origin.clone(),
    }
}

fn resolve_tags(
    variables: &Variables,
    tags: &IndexMap<String, TagOptions>,
    origin: &Origin,
    below: &[PathStep<'_>],
    issues: &mut Vec<Issue>,
) -> IndexMap<String, TagOptions> {
    let mut resolved = IndexMap::new();
    for (tag, options) in tags {
        let mut at: Vec<PathStep<'_>> = below.iter().map(copy_step).collect();
        at.push(Key(tag));
        let name = resolve_text(variables, tag, origin, &at, issues);
        if resolved.insert(name.clone(), options.clone()).is_some() {
            issues.push(origin.issue(
                &at,
                format!("the tag {} written twice", quoted(&name)),
                "tags that stay distinct once variables are expanded",
            ));
        }
    }
    resolved
}

fn copy_step<'a>(step: &PathStep<'a>) -> PathStep<'a> {
    match step {
        Key(name) => Key(name),
        Index(index) => Index(*index),
    }
}

fn resolve_text(
    variables: &Variables,
    text: &str,
    origin: &Origin,
    below: &[PathStep<'_>],
    issues: &mut Vec<Issue>,
) -> String {
    variables.resolve(text).unwrap_or_else(|error| {
        let found =
            if text.starts_with("$(") && text.ends_with(')') && text.matches("$(").count() == 1 {
                error.to_string()
            } else {
                format!("{error} in {}", quoted(text))
            };
        issues.push(origin.issue(
            below,
            found,
            "references to defined variables and repository ids",
        ));
        text.to_owned()
    })
}

fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|value| quoted(value)).collect();
    format!("one of {}", quoted.join(", "))
}

fn json(value: &VariableValue) -> String {
    quoted(&value.as_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Manifest {
        let mut manifest: Manifest = serde_json::from_str(text).expect("test manifest parses");
        manifest.locate(Path::new("manifest.json"));
        manifest
    }

    const SMALL: &str = r#"{
      "registry": "registry.example",
      "variables": {"ver": "1.4", "tag|fixed": "$(ver).2", "number": 7},
      "readme": "kept",
      "repos": [{
        "id": "app", "name": "team/app", "custom": {"a": 1},
        "images": [{
          "productVersion": "$(tag|fixed)",
          "sharedTags": {"$(ver)": {}, "latest": {"docType": "Undocumented"}},
          "platforms": [
            {"dockerfile": "app/amd64", "os": "linux", "osVersion": "bookworm", "tags": {"$(ver)-amd64": {}},
             "buildArgs": {"BASE": "$(Repo:app):$(number)"}},
            {"dockerfile": "app/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64",
             "variant": "v8", "tags": {"$(ver)-arm64v8": {}}}
          ]
        }]
      }]
    }"#;

    #[test]
    fn resolves_variables_repo_ids_and_overrides() {
        let manifest = parse(SMALL);
        let (resolved, issues) = manifest.resolve(&BTreeMap::new());
        assert!(issues.is_empty(), "{issues:?}");
        let image = &resolved.repos[0].images[0];
        assert_eq!(image.product_version.as_deref(), Some("1.4.2"));
        assert_eq!(
            image.shared_tags.keys().collect::<Vec<_>>(),
            ["1.4", "latest"]
        );
        assert_eq!(
            image.platforms[0].tags.keys().collect::<Vec<_>>(),
            ["1.4-amd64"]
        );
        assert_eq!(
            image.platforms[0].build_args["BASE"],
            "registry.example/team/app:7"
        );
        assert_eq!(image.platforms[0].architecture(), "amd64");
        assert!(resolved.check().is_empty(), "{:?}", resolved.check());

        let overrides = BTreeMap::from([("ver".to_owned(), "2.0".to_owned())]);
        let (overridden, _) = manifest.resolve(&overrides);
        assert_eq!(
            overridden.repos[0].images[0].product_version.as_deref(),
            Some("2.0.2")
        );
    }

    #[test]
    fn unknown_keys_survive_a_round_trip() {
        let manifest = parse(SMALL);
        let saved = serde_json::to_value(&manifest).expect("serializes");
        assert_eq!(saved["readme"], "kept");
        assert_eq!(saved["repos"][0]["custom"]["a"], 1);
        assert_eq!(
            saved["repos"][0]["images"][0]["sharedTags"]["latest"]["docType"],
            "Undocumented"
        );
        assert!(
            saved["repos"][0]["images"][0]["platforms"][0]
                .get("architecture")
                .is_none()
        );
        let reloaded = parse(&saved.to_string());
        assert_eq!(reloaded, manifest);
    }

    #[test]
    fn unresolved_references_name_their_place() {
        let manifest = parse(
            r#"{"repos": [{"name": "app", "images": [{"platforms": [
                {"dockerfile": "x", "os": "linux", "tags": {"$(nope)-x": {}}}]}]}]}"#,
        );
        let (_, issues) = manifest.resolve(&BTreeMap::new());
        assert_eq!(issues.len(), 1);
        assert_eq!(
            issues[0].path.to_string(),
            r#"repos[0].images[0].platforms[0].tags["$(nope)-x"]"#
        );
        assert!(
            issues[0].found.contains("`$(nope)` is not defined"),
            "{}",
            issues[0].found
        );
    }

    #[test]
    fn check_reports_each_bad_field() {
        let manifest = parse(
            r#"{"registry": "registry.example/v2", "repos": [{"name": "Team/App", "images": [{"sharedTags": {"1.0": {}}, "platforms": [
                {"dockerfile": "a", "os": "solaris", "tags": {"1.0": {}}},
                {"dockerfile": "b", "os": "linux", "architecture": "armv7"},
                {"dockerfile": "c", "os": "linux", "architecture": "arm", "variant": "v9"},
                {"dockerfile": "c/Dockerfile", "os": "linux", "architecture": "arm", "variant": "v9"}
            ]}]}]}"#,
        );
        let (resolved, _) = manifest.resolve(&BTreeMap::new());
        let found: Vec<String> = resolved
            .check()
            .iter()
            .map(|issue| issue.path.to_string())
            .collect();
        assert_eq!(
            found,
            [
                "registry",
                "repos[0].name",
                "repos[0].images[0].platforms[0].os",
                r#"repos[0].images[0].platforms[0].tags["1.0"]"#,
                "repos[0].images[0].platforms[1].architecture",
                "repos[0].images[0].platforms[2].variant",
                "repos[0].images[0].platforms[3].variant",
                "repos[0].images[0].platforms[3]",
            ]
        );
    }

    #[test]
    fn includes_merge_variables_and_repos() {
        let mut main = parse(SMALL);
        let mut included = parse(
            r#"{"variables": {"ver": "1.4", "extra": "x"},
                "repos": [{"name": "team/app", "images": [{"platforms": [
                    {"dockerfile": "other", "os": "linux"}]}]},
                  {"name": "team/tool", "images": []}]}"#,
        );
        included.locate(Path::new("versions.json"));
        let issues = main.include(Path::new("manifest.json"), included);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(main.repos.len(), 2);
        assert_eq!(main.repos[0].images.len(), 2);
        assert_eq!(
            main.repos[0].images[1].origin.file,
            Path::new("versions.json")
        );
        assert!(main.variables.contains_key("extra"));

        let clash = parse(r#"{"variables": {"ver": "9"}}"#);
        let issues = main.include(Path::new("manifest.json"), clash);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path.to_string(), "variables.ver");
    }
}
