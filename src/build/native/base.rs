//! The base image a build starts from: `scratch`; an image of this run in staging (`request.staged_bases`, by the
//! exact text of its `FROM` line), which may be an OCI layout; or a registry reference. An index is resolved to
//! its image for the build's platform.

use std::sync::Arc;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::instructions::Recipe;
use crate::build::{BuildError, BuildRequest};
use crate::model::platform::{Platform, canonical_architecture, canonical_os, same_platform};
use crate::model::reference::{Digest, is_valid_registry, is_valid_repository, is_valid_tag};
use crate::store::registry::RegistryClient;
use crate::store::{
    AnyStore, Location, ManifestReference, Store, StoreError, media_type, our_digest,
};

/// What `FROM scratch` says.
const SCRATCH: &str = "scratch";
/// The registry of names without one, as Docker reads them.
const DOCKER_HUB: &str = "docker.io";

/// The base image's image manifest for the build's platform, and what a build takes from it.
pub(super) struct BaseImage {
    pub store: AnyStore,
    pub location: Location,
    pub repository: String,
    /// The image manifest used (an index's child for the platform).
    pub digest: Digest,
    /// `registry/repository`, or `oci:DIR/repository` for a layout.
    pub name: String,
    pub layers: Vec<Descriptor>,
    /// The image configuration.
    pub config: Value,
}

impl BaseImage {
    /// `registry/repository@sha256:…` of the image manifest used.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.digest)
    }

    /// The base's runtime configuration (the config's `config` object), to build on.
    pub fn runtime_config(&self) -> Map<String, Value> {
        match self.config.get("config") {
            Some(Value::Object(config)) => config.clone(),
            _ => Map::new(),
        }
    }

    /// The base's `rootfs.diff_ids`.
    pub fn diff_ids(&self) -> Vec<Value> {
        self.config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

/// Finds and reads the base image of `recipe`; `None` for `scratch`.
pub(super) async fn resolve(
    recipe: &Recipe,
    request: &BuildRequest,
    client: &Arc<RegistryClient>,
) -> Result<Option<BaseImage>, BuildError> {
    let image = recipe.base.as_str();
    let problem = |problem: String| BuildError::BaseImage {
        file: request.declared_dockerfile.clone(),
        line: recipe.base_line,
        image: image.to_owned(),
        problem,
    };
    if image == SCRATCH {
        return Ok(None);
    }
    let (location, repository, name, reference) = match request.staged_bases.get(image) {
        Some(staged) => (
            staged.location.clone(),
            staged.repository.clone(),
            format!("{}/{}", staged.location, staged.repository),
            Reference::Digest(staged.digest.clone()),
        ),
        None => {
            let parsed = ImageName::parse(image).ok_or_else(|| {
                problem("is not a reference `registry/repository[:tag][@digest]`".to_owned())
            })?;
            (
                Location::Registry(parsed.registry.clone()),
                parsed.repository.clone(),
                format!("{}/{}", parsed.registry, parsed.repository),
                parsed.reference,
            )
        }
    };
    let store = AnyStore::open(&location, client);
    let reader = Reader {
        store: &store,
        repository: &repository,
    };
    let named = match &reference {
        Reference::Tag(tag) => ManifestReference::Tag(tag),
        Reference::Digest(digest) => ManifestReference::Digest(digest),
    };
    let mut manifest = reader.manifest(named).await?;
    if media_type::is_index(&manifest.media_type) {
        let index: ImageIndex = reader.parse(&manifest.bytes, named)?;
        let child = index
            .manifests()
            .iter()
            .find(|child| {
                child.platform().as_ref().is_some_and(|platform| {
                    same_platform(&request.platform, &ours(platform), false)
                })
            })
            .and_then(|child| our_digest(child.digest()))
            .ok_or_else(|| problem(format!("has no image for {}", request.platform)))?;
        manifest = reader.manifest(ManifestReference::Digest(&child)).await?;
    }
    if manifest.media_type != media_type::OCI_MANIFEST
        && manifest.media_type != media_type::DOCKER_MANIFEST
    {
        return Err(problem(format!(
            "is not an image: its manifest is `{}`",
            manifest.media_type
        )));
    }
    let digest = manifest.digest();
    let named = ManifestReference::Digest(&digest);
    let parsed: ImageManifest = reader.parse(&manifest.bytes, named)?;
    let config_digest = our_digest(parsed.config().digest())
        .ok_or_else(|| problem("has a config that is not named by a sha256 digest".to_owned()))?;
    let config_bytes = store.get_blob(&repository, &config_digest).await?;
    let config: Value = reader.parse(&config_bytes, ManifestReference::Digest(&config_digest))?;
    if let Some(found) = platform_of(&config) {
        if !same_platform(&found, &request.platform, true) {
            return Err(problem(format!("is for {found}, not {}", request.platform)));
        }
    }
    Ok(Some(BaseImage {
        layers: parsed.layers().clone(),
        store,
        location,
        repository,
        digest,
        name,
        config,
    }))
}

/// What names the base within its repository.
enum Reference {
    Tag(String),
    Digest(Digest),
}

/// An image reference as a `FROM` line writes it.
struct ImageName {
    registry: String,
    repository: String,
    reference: Reference,
}

impl ImageName {
    /// `[registry/]repository[:tag][@digest]`, Docker's way: a first component with `.` or `:`, or `localhost`,
    /// is the registry; otherwise it is Docker Hub, where a one-component name is in `library/`. Without tag or
    /// digest, the tag is `latest`.
    fn parse(text: &str) -> Option<Self> {
        let (name, digest) = match text.rsplit_once('@') {
            Some((name, digest)) => (name, Some(digest.parse::<Digest>().ok()?)),
            None => (text, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), rest)
            }
            _ => (DOCKER_HUB.to_owned(), name),
        };
        let last_slash = path.rfind('/').map_or(0, |slash| slash + 1);
        let (repository, tag) = match path[last_slash..].split_once(':') {
            Some((_, tag)) => (&path[..path.len() - tag.len() - 1], Some(tag)),
            None => (path, None),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_owned()
        };
        let valid = is_valid_registry(&registry)
            && is_valid_repository(&repository)
            && tag.is_none_or(is_valid_tag);
        let reference = match (digest, tag) {
            (Some(digest), _) => Reference::Digest(digest),
            (None, tag) => Reference::Tag(tag.unwrap_or("latest").to_owned()),
        };
        valid.then_some(Self {
            registry,
            repository,
            reference,
        })
    }
}

/// Reads manifests and JSON of one repository, with errors that name them.
struct Reader<'a> {
    store: &'a AnyStore,
    repository: &'a str,
}

impl Reader<'_> {
    async fn manifest(
        &self,
        reference: ManifestReference<'_>,
    ) -> Result<crate::store::StoredManifest, StoreError> {
        self.store
            .get_manifest(self.repository, reference)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                store: self.store.name(),
                reference: self.name(reference),
            })
    }

    fn parse<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        reference: ManifestReference<'_>,
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::InvalidManifest {
            store: self.store.name(),
            reference: self.name(reference),
            source,
        })
    }

    fn name(&self, reference: ManifestReference<'_>) -> String {
        match reference {
            ManifestReference::Tag(tag) => format!("{}:{tag}", self.repository),
            ManifestReference::Digest(digest) => format!("{}@{digest}", self.repository),
        }
    }
}

fn ours(platform: &oci_spec::image::Platform) -> Platform {
    Platform {
        os: canonical_os(&platform.os().to_string()),
        architecture: canonical_architecture(&platform.architecture().to_string()),
        variant: platform.variant().clone(),
    }
}

/// The platform an image configuration declares, if it names one.
fn platform_of(config: &Value) -> Option<Platform> {
    let text = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    };
    Some(Platform {
        os: canonical_os(text("os")?),
        architecture: canonical_architecture(text("architecture")?),
        variant: text("variant").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:82c6c5dc0e6a17b170f5e976802c71671a23568411f99ffa4c4befea66bd23d3";

    #[test]
    fn references_are_read_as_docker_reads_them() {
        let digest = format!("127.0.0.1:5000/base@{DIGEST}");
        let pinned = format!("registry.example.com/a/b:1.0@{DIGEST}");
        let cases: [(&str, &str, &str, &str); 7] = [
            ("busybox", DOCKER_HUB, "library/busybox", "latest"),
            ("acme/app:1.2", DOCKER_HUB, "acme/app", "1.2"),
            ("localhost/app", "localhost", "app", "latest"),
            (
                "127.0.0.1:5000/team/base:v1",
                "127.0.0.1:5000",
                "team/base",
                "v1",
            ),
            (
                "mcr.microsoft.com/dotnet/runtime:8.0",
                "mcr.microsoft.com",
                "dotnet/runtime",
                "8.0",
            ),
            (&digest, "127.0.0.1:5000", "base", DIGEST),
            (&pinned, "registry.example.com", "a/b", DIGEST),
        ];
        for (text, registry, repository, reference) in cases {
            let name = ImageName::parse(text).expect(text);
            let found = match &name.reference {
                Reference::Tag(tag) => tag.clone(),
                Reference::Digest(digest) => digest.to_string(),
            };
            assert_eq!(
                (
                    name.registry.as_str(),
                    name.repository.as_str(),
                    found.as_str()
                ),
                (registry, repository, reference),
                "{text}"
            );
        }
        for bad in [
            "",
            "Upper/case",
            "host:5000/app:bad tag",
            "app@sha256:00",
            "a//b",
        ] {
            assert!(ImageName::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_config_names_its_platform() {
        let config = serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        assert_eq!(
            platform_of(&config)
                .map(|platform| platform.to_string())
                .as_deref(),
            Some("linux/arm64/v8")
        );
        assert!(platform_of(&serde_json::json!({"os": "linux"})).is_none());
    }
}
