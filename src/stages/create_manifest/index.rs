//! The index of one image: its children described from their configs, each image's attestation manifest listed
//! after the images as `buildx imagetools create` lists them, serialized without anything that varies between
//! runs, and pushed under each shared tag that does not already point at it.

use std::collections::HashMap;

use anyhow::Context;
use futures_util::future::try_join_all;
use oci_spec::image::{
    Arch, Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType, Os, PlatformBuilder,
};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::model::reference::Digest;
use crate::store::{
    AnyStore, ManifestReference, Store, StoreError, StoredManifest, attestation, our_digest,
};

use super::IndexMediaType;

/// A platform image of an index, with the attestation manifest its build attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub image: Digest,
    pub attestation: Option<Digest>,
}

/// The platform fields an image's config declares.
#[derive(Deserialize)]
struct ConfigPlatform {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default, rename = "os.version")]
    os_version: Option<String>,
}

/// Describes platform images for index entries, once per digest however many indexes list it.
pub struct Describer<'a> {
    store: &'a AnyStore,
    known: Mutex<HashMap<Digest, Descriptor>>,
}

impl<'a> Describer<'a> {
    pub fn new(store: &'a AnyStore) -> Self {
        Self {
            store,
            known: Mutex::default(),
        }
    }

    /// The descriptor of a platform image, with the platform read from its config.
    pub async fn describe(&self, repository: &str, digest: &Digest) -> anyhow::Result<Descriptor> {
        if let Some(known) = self.known.lock().await.get(digest) {
            return Ok(known.clone());
        }
        let name = format!("{}/{repository}@{digest}", self.store.name());
        let manifest = self
            .read(repository, digest)
            .await
            .with_context(|| format!("reading platform image `{name}`"))?;
        let image: ImageManifest = serde_json::from_slice(&manifest.bytes)
            .with_context(|| format!("`{name}` is not an image manifest"))?;
        let config_digest = our_digest(image.config().digest())
            .with_context(|| format!("`{name}` has a config digest that is not sha256"))?;
        let config = self
            .store
            .get_blob(repository, &config_digest)
            .await
            .with_context(|| format!("reading the config of platform image `{name}`"))?;
        let declared: ConfigPlatform = serde_json::from_slice(&config)
            .with_context(|| format!("the config of `{name}` declares no os and architecture"))?;
        let mut platform = PlatformBuilder::default()
            .architecture(Arch::from(declared.architecture.as_str()))
            .os(Os::from(declared.os.as_str()));
        if let Some(variant) = declared.variant.filter(|variant| !variant.is_empty()) {
            platform = platform.variant(variant);
        }
        if let Some(version) = declared.os_version.filter(|version| !version.is_empty()) {
            platform = platform.os_version(version);
        }
        let mut descriptor = manifest.descriptor();
        descriptor.set_platform(Some(platform.build().context("describing a platform")?));
        self.known
            .lock()
            .await
            .insert(digest.clone(), descriptor.clone());
        Ok(descriptor)
    }

    /// The descriptor of the attestation manifest of `image`: platform `unknown/unknown`, annotated with the
    /// image it describes.
    pub async fn describe_attestation(
        &self,
        repository: &str,
        digest: &Digest,
        image: &Digest,
    ) -> anyhow::Result<Descriptor> {
        let name = format!("{}/{repository}@{digest}", self.store.name());
        let manifest = self
            .read(repository, digest)
            .await
            .with_context(|| format!("reading the attestation manifest `{name}` of {image}"))?;
        let mut descriptor = manifest.descriptor();
        descriptor.set_platform(Some(
            PlatformBuilder::default()
                .architecture(Arch::from(attestation::UNKNOWN))
                .os(Os::from(attestation::UNKNOWN))
                .build()
                .context("describing an attestation's platform")?,
        ));
        descriptor.set_annotations(Some(
            [
                (attestation::REFERENCE_DIGEST, image.as_str()),
                (
                    attestation::REFERENCE_TYPE,
                    attestation::ATTESTATION_MANIFEST,
                ),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
        ));
        Ok(descriptor)
    }

    async fn read(&self, repository: &str, digest: &Digest) -> anyhow::Result<StoredManifest> {
        Ok(self
            .store
            .get_manifest(repository, ManifestReference::Digest(digest))
            .await?
            .ok_or_else(|| StoreError::NotFound {
                store: self.store.name(),
                reference: format!("{repository}@{digest}"),
            })?)
    }
}

/// The index over `children`: the images in their declared order, then their attestation manifests in the
/// same order. It holds no timestamp and no annotation of its own, so the same children always give the same
/// bytes and digest.
pub async fn build_index(
    describer: &Describer<'_>,
    repository: &str,
    children: &[Child],
    media_type: IndexMediaType,
) -> anyhow::Result<StoredManifest> {
    // Described side by side: against a remote registry each description is two round trips.
    let images = children
        .iter()
        .map(|child| describer.describe(repository, &child.image));
    let attestations = children.iter().filter_map(|child| {
        let attestation = child.attestation.as_ref()?;
        Some(describer.describe_attestation(repository, attestation, &child.image))
    });
    let mut manifests = try_join_all(images).await?;
    manifests.extend(try_join_all(attestations).await?);
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(media_type.as_str()))
        .manifests(manifests)
        .build()
        .context("building an index")?;
    Ok(StoredManifest {
        media_type: media_type.as_str().to_owned(),
        bytes: serde_json::to_vec(&index)
            .context("serializing an index")?
            .into(),
    })
}

/// The index recorded for these `children` by an earlier run, read back by its digest, when it is exactly what
/// [`build_index`] would build now: the same media type, the same children in the same order, in the bytes this
/// serializer writes. A re-run then reads one index instead of every child and its config.
pub async fn recorded_index(
    store: &AnyStore,
    repository: &str,
    recorded: &Digest,
    children: &[Child],
    media_type: IndexMediaType,
) -> anyhow::Result<Option<StoredManifest>> {
    let Some(index) = store
        .get_manifest(repository, ManifestReference::Digest(recorded))
        .await
        .with_context(|| {
            format!(
                "reading the recorded index `{}/{repository}@{recorded}`",
                store.name()
            )
        })?
    else {
        return Ok(None);
    };
    if index.media_type != media_type.as_str() {
        return Ok(None);
    }
    let Ok(parsed) = serde_json::from_slice::<ImageIndex>(&index.bytes) else {
        return Ok(None);
    };
    let listed: Vec<Option<Digest>> = parsed
        .manifests()
        .iter()
        .map(|child| our_digest(child.digest()))
        .collect();
    let expected: Vec<Option<Digest>> = children
        .iter()
        .map(|child| Some(child.image.clone()))
        .chain(
            children
                .iter()
                .filter_map(|child| Some(Some(child.attestation.clone()?))),
        )
        .collect();
    let canonical = serde_json::to_vec(&parsed).is_ok_and(|bytes| bytes == index.bytes[..]);
    Ok((listed == expected && canonical).then_some(index))
}

/// Pushes the index under each shared tag that does not point at it already, whatever image-info recorded:
/// a re-run from any stage on unchanged input writes nothing. Returns how many tags were pushed.
pub async fn push_index(
    store: &AnyStore,
    repository: &str,
    shared_tags: &[String],
    index: &StoredManifest,
) -> anyhow::Result<usize> {
    let digest = &index.digest();
    let pushes = shared_tags.iter().map(|tag| async move {
        let current = store
            .head_manifest(repository, ManifestReference::Tag(tag))
            .await
            .with_context(|| format!("reading tag `{}/{repository}:{tag}`", store.name()))?;
        if current
            .and_then(|descriptor| our_digest(descriptor.digest()))
            .as_ref()
            == Some(digest)
        {
            return Ok::<_, anyhow::Error>(0);
        }
        store
            .put_manifest(repository, ManifestReference::Tag(tag), index)
            .await
            .with_context(|| format!("pushing index `{}/{repository}:{tag}`", store.name()))?;
        Ok(1)
    });
    Ok(try_join_all(pushes).await?.into_iter().sum())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use oci_spec::image::DescriptorBuilder;

    use super::*;
    use crate::store::Location;
    use crate::store::registry::{ClientSettings, RegistryClient};

    fn digest(fill: char) -> Digest {
        format!("sha256:{}", fill.to_string().repeat(64))
            .parse()
            .expect("a digest")
    }

    /// An index over `listed`, pushed to `store` in `bytes_of`'s serialization; its digest.
    async fn push(
        store: &AnyStore,
        listed: &[Digest],
        media_type: &str,
        bytes_of: impl Fn(&ImageIndex) -> Vec<u8>,
    ) -> Digest {
        let manifests = listed
            .iter()
            .map(|child| {
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageManifest)
                    .digest(crate::store::oci_digest(child))
                    .size(10u64)
                    .build()
                    .expect("a descriptor")
            })
            .collect::<Vec<_>>();
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::from(media_type))
            .manifests(manifests)
            .build()
            .expect("an index");
        let manifest = StoredManifest {
            media_type: media_type.to_owned(),
            bytes: bytes_of(&index).into(),
        };
        store
            .put_manifest(
                "app",
                ManifestReference::Digest(&manifest.digest()),
                &manifest,
            )
            .await
            .expect("pushed");
        manifest.digest()
    }

    #[tokio::test]
    async fn only_an_index_exactly_as_it_would_be_built_is_taken_from_the_record() {
        let folder = tempfile::tempdir().expect("temp dir");
        let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
        let store = AnyStore::open(&Location::Layout(folder.path().to_owned()), &client);
        let children = [
            Child {
                image: digest('a'),
                attestation: Some(digest('c')),
            },
            Child {
                image: digest('b'),
                attestation: None,
            },
        ];
        let compact = |index: &ImageIndex| serde_json::to_vec(index).expect("serializes");
        let oci = IndexMediaType::Oci;
        let recorded = |digest: Digest| {
            let store = &store;
            let children = &children;
            async move {
                recorded_index(store, "app", &digest, children, oci)
                    .await
                    .expect("reads")
                    .map(|index| index.digest())
            }
        };
        let exact = push(
            &store,
            &[digest('a'), digest('b'), digest('c')],
            oci.as_str(),
            compact,
        )
        .await;
        assert_eq!(recorded(exact.clone()).await, Some(exact));
        let reordered = push(
            &store,
            &[digest('b'), digest('a'), digest('c')],
            oci.as_str(),
            compact,
        )
        .await;
        assert_eq!(recorded(reordered).await, None, "children in another order");
        let without_attestation =
            push(&store, &[digest('a'), digest('b')], oci.as_str(), compact).await;
        assert_eq!(recorded(without_attestation).await, None, "a child missing");
        let docker = push(
            &store,
            &[digest('a'), digest('b'), digest('c')],
            IndexMediaType::Docker.as_str(),
            compact,
        )
        .await;
        assert_eq!(recorded(docker).await, None, "another media type");
        let pretty = push(
            &store,
            &[digest('a'), digest('b'), digest('c')],
            oci.as_str(),
            |index| serde_json::to_vec_pretty(index).expect("serializes"),
        )
        .await;
        assert_eq!(recorded(pretty).await, None, "bytes another tool wrote");
        assert_eq!(recorded(digest('f')).await, None, "not in the store");
    }
}
