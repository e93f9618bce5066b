//! The OCI image layout store (`oci:DIR`): one image layout folder per repository path, so the whole pipeline runs
//! with no server, and skopeo reads what we write (`oci:DIR/acme/app:TAG`) and we read what it writes.
//!
//! A layout (OCI image-layout spec) is an `oci-layout` file, `blobs/sha256/<hex>` holding blobs and manifests
//! alike, and `index.json`, whose `manifests[]` are the layout's entry points; a tag is an entry annotated with
//! `org.opencontainers.image.ref.name`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use bytes::Bytes;
use oci_spec::image::{ANNOTATION_REF_NAME, Descriptor, ImageIndex, MediaType};
use serde::Deserialize;

use futures_util::StreamExt as _;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use super::blob_stream::{self, BlobStream};
use super::{
    ManifestReference, Store, StoreError, StoredManifest, media_type, our_digest, signature_tag,
};
use crate::model::reference::{Digest, is_valid_repository};

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_FILE_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";

/// Files are written through a private temporary file; give the final file the usual mode (before the umask), so
/// other users and tools read the layout as they would one written by skopeo.
#[cfg(unix)]
const FILE_MODE: u32 = 0o644;

/// A folder of OCI image layouts: repository `acme/app` is the layout at `ROOT/acme/app`.
#[derive(Debug, Clone)]
pub struct LayoutStore {
    root: PathBuf,
}

impl LayoutStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The layout folder of a repository. The name is checked, so that `..` or an absolute path cannot leave the
    /// root.
    fn folder(&self, repository: &str) -> Result<PathBuf, StoreError> {
        let folder = self.root.join(repository);
        if is_valid_repository(repository) {
            Ok(folder)
        } else {
            Err(StoreError::InvalidRepository {
                store: self.name(),
                repository: repository.to_owned(),
            })
        }
    }

    /// The repository's `index.json`; `None` when the layout (or its index) does not exist yet.
    async fn read_index(&self, repository: &str) -> Result<Option<ImageIndex>, StoreError> {
        let path = self.folder(repository)?.join(INDEX_FILE);
        let (store, reference) = (self.name(), format!("{repository}/{INDEX_FILE}"));
        blocking(&path.clone(), move || {
            read_index_file(&path, &store, &reference)
        })
        .await
    }

    /// The index entry tagged `tag`.
    async fn tagged_entry(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Descriptor>, StoreError> {
        let index = self.read_index(repository).await?;
        Ok(index.and_then(|index| {
            index
                .manifests()
                .iter()
                .find(|entry| tag_of(entry) == Some(tag))
                .cloned()
        }))
    }

    /// A blob's bytes checked against its digest; `None` when the file does not exist.
    async fn read_verified(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<Bytes>, StoreError> {
        let path = blob_path(&self.folder(repository)?, digest);
        let (store, reference, expected) = (
            self.name(),
            format!("{repository}@{digest}"),
            digest.clone(),
        );
        blocking(&path.clone(), move || {
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(source) => return Err(io_error("reading", &path, source)),
            };
            check_digest(&bytes, &expected, &store, &reference)?;
            Ok(Some(Bytes::from(bytes)))
        })
        .await
    }

    /// Creates the layout's folders, `oci-layout` and an empty `index.json` where missing.
    async fn ensure_layout(&self, folder: &Path) -> Result<(), StoreError> {
        let lock = index_lock(folder);
        let _guard = lock.lock().await;
        let folder = folder.to_owned();
        blocking(&folder.clone(), move || create_layout_files(&folder)).await
    }

    /// Read-modify-write of `index.json` under the folder's lock, so that concurrent updates lose nothing.
    async fn update_index(
        &self,
        repository: &str,
        change: impl FnOnce(&mut Vec<Descriptor>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let folder = self.folder(repository)?;
        let lock = index_lock(&folder);
        let _guard = lock.lock().await;
        let (store, reference) = (self.name(), format!("{repository}/{INDEX_FILE}"));
        blocking(&folder.clone(), move || {
            create_layout_files(&folder)?;
            let path = folder.join(INDEX_FILE);
            let mut index = read_index_file(&path, &store, &reference)?.unwrap_or_else(empty_index);
            let mut entries = index.manifests().clone();
            change(&mut entries);
            index.set_manifests(entries);
            let bytes =
                serde_json::to_vec(&index).map_err(|source| StoreError::InvalidManifest {
                    store,
                    reference,
                    source,
                })?;
            write_atomically(&path, &bytes)
        })
        .await
    }
}

impl Store for LayoutStore {
    fn name(&self) -> String {
        format!("oci:{}", self.root.display())
    }

    async fn get_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
    ) -> Result<Option<StoredManifest>, StoreError> {
        let (digest, indexed_media_type) = match reference {
            ManifestReference::Tag(tag) => {
                let Some(entry) = self.tagged_entry(repository, tag).await? else {
                    return Ok(None);
                };
                (
                    self.entry_digest(repository, &entry)?,
                    Some(entry.media_type().to_string()),
                )
            }
            ManifestReference::Digest(digest) => (digest.clone(), None),
        };
        let Some(bytes) = self.read_verified(repository, &digest).await? else {
            return match reference {
                // The index names a manifest the layout lacks: a broken layout, not an unknown tag.
                ManifestReference::Tag(tag) => Err(StoreError::NotFound {
                    store: self.name(),
                    reference: format!("{repository}@{digest} (tagged `{tag}`)"),
                }),
                ManifestReference::Digest(_) => Ok(None),
            };
        };
        let media_type = match indexed_media_type {
            Some(media_type) => media_type,
            None => {
                self.media_type_by_digest(repository, &digest, &bytes)
                    .await?
            }
        };
        Ok(Some(StoredManifest { media_type, bytes }))
    }

    async fn head_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
    ) -> Result<Option<Descriptor>, StoreError> {
        match reference {
            // A tag resolves through index.json alone, like a registry's HEAD, without reading the manifest.
            ManifestReference::Tag(tag) => {
                Ok(self.tagged_entry(repository, tag).await?.map(|entry| {
                    Descriptor::new(
                        entry.media_type().clone(),
                        entry.size(),
                        entry.digest().clone(),
                    )
                }))
            }
            ManifestReference::Digest(_) => Ok(self
                .get_manifest(repository, reference)
                .await?
                .map(|manifest| manifest.descriptor())),
        }
    }

    async fn put_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
        manifest: &StoredManifest,
    ) -> Result<Digest, StoreError> {
        let digest = manifest.digest();
        if let ManifestReference::Digest(expected) = reference {
            check_digest(
                &manifest.bytes,
                expected,
                &self.name(),
                &format!("{repository}@{expected}"),
            )?;
        }
        // The blob goes in first, so that index.json never names a manifest the layout lacks.
        self.put_blob(repository, &digest, manifest.bytes.clone())
            .await?;
        let mut entry = manifest.descriptor();
        match reference {
            ManifestReference::Tag(tag) => {
                entry.set_annotations(Some(HashMap::from([(
                    ANNOTATION_REF_NAME.to_owned(),
                    tag.to_owned(),
                )])));
                let tag = tag.to_owned();
                self.update_index(repository, move |entries| replace_tag(entries, &tag, entry))
                    .await?;
            }
            // By digest: make the manifest reachable from index.json (as the spec wants) unless it already is.
            ManifestReference::Digest(_) => {
                self.update_index(repository, move |entries| {
                    if !entries
                        .iter()
                        .any(|existing| existing.digest() == entry.digest())
                    {
                        entries.push(entry);
                    }
                })
                .await?;
            }
        }
        Ok(digest)
    }

    async fn blob_size(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, StoreError> {
        let path = blob_path(&self.folder(repository)?, digest);
        match tokio::fs::metadata(&path).await {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_error("reading the size of", &path, source)),
        }
    }

    async fn get_blob(&self, repository: &str, digest: &Digest) -> Result<Bytes, StoreError> {
        self.read_verified(repository, digest)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                store: self.name(),
                reference: format!("{repository}@{digest}"),
            })
    }

    async fn put_blob(
        &self,
        repository: &str,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        let folder = self.folder(repository)?;
        let path = blob_path(&folder, digest);
        // Checked before the layout is touched. Hashing a layer takes long enough to matter to the runtime, so it
        // runs off it, like the file work.
        let (hashed, expected) = (bytes.clone(), digest.clone());
        let (store, reference) = (self.name(), format!("{repository}@{digest}"));
        blocking(&path, move || {
            check_digest(&hashed, &expected, &store, &reference)
        })
        .await?;
        self.ensure_layout(&folder).await?;
        blocking(&path.clone(), move || write_atomically(&path, &bytes)).await
    }

    async fn open_blob(&self, repository: &str, digest: &Digest) -> Result<BlobStream, StoreError> {
        let path = blob_path(&self.folder(repository)?, digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    store: self.name(),
                    reference: format!("{repository}@{digest}"),
                });
            }
            Err(source) => return Err(io_error("opening", &path, source)),
        };
        let size = file.metadata().await.ok().map(|metadata| metadata.len());
        let chunks = tokio_util::io::ReaderStream::new(file)
            .map(move |chunk| chunk.map_err(|source| io_error("reading", &path, source)));
        Ok(BlobStream {
            size,
            chunks: blob_stream::verified(
                chunks,
                digest.clone(),
                self.name(),
                format!("{repository}@{digest}"),
            ),
        })
    }

    async fn put_blob_stream(
        &self,
        repository: &str,
        digest: &Digest,
        blob: BlobStream,
    ) -> Result<(), StoreError> {
        let folder = self.folder(repository)?;
        self.ensure_layout(&folder).await?;
        let path = blob_path(&folder, digest);
        let (file, temporary) = temporary_file(&folder.join("blobs").join("sha256"))?.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = sha2::Sha256::new();
        let mut chunks = blob.chunks;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|source| io_error("writing", &temporary, source))?;
        }
        file.sync_all()
            .await
            .map_err(|source| io_error("writing", &temporary, source))?;
        let actual = format!("sha256:{:x}", hasher.finalize());
        if actual != digest.as_str() {
            return Err(StoreError::DigestMismatch {
                store: self.name(),
                reference: format!("{repository}@{digest}"),
                expected: digest.to_string(),
                actual,
            });
        }
        temporary
            .persist(&path)
            .map_err(|error| io_error("renaming into place", &path, error.error))
    }

    async fn mount_blob(
        &self,
        repository: &str,
        from_repository: &str,
        digest: &Digest,
    ) -> Result<bool, StoreError> {
        let source = blob_path(&self.folder(from_repository)?, digest);
        let folder = self.folder(repository)?;
        if !tokio::fs::try_exists(&source)
            .await
            .map_err(|error| io_error("looking for", &source, error))?
        {
            return Ok(false);
        }
        self.ensure_layout(&folder).await?;
        let target = blob_path(&folder, digest);
        blocking(&target.clone(), move || link_or_copy(&source, &target)).await
    }

    async fn list_tags(&self, repository: &str) -> Result<Vec<String>, StoreError> {
        let Some(index) = self.read_index(repository).await? else {
            return Ok(Vec::new());
        };
        let mut tags: Vec<String> = index
            .manifests()
            .iter()
            .filter_map(|entry| tag_of(entry).map(str::to_owned))
            .collect();
        // A registry lists tags in lexical order; do the same, whatever order the entries are in.
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// A layout has no referrers API, so only the `sha256-<hex>.sig` tag counts. Scanning every entry for a
    /// `subject` would read every manifest of the repository once per signed digest.
    async fn has_referrers_api(&self, _repository: &str) -> Result<bool, StoreError> {
        // A layout has no API; signatures live at their `.sig` tag.
        Ok(false)
    }

    async fn signatures_of(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, StoreError> {
        let tag = signature_tag(digest);
        let signature = self
            .head_manifest(repository, ManifestReference::Tag(&tag))
            .await?;
        Ok(signature.into_iter().collect())
    }
}

impl LayoutStore {
    /// The digest an index entry names, as ours; an algorithm other than sha256 is a digest we cannot check.
    fn entry_digest(&self, repository: &str, entry: &Descriptor) -> Result<Digest, StoreError> {
        our_digest(entry.digest()).ok_or_else(|| StoreError::NotFound {
            store: self.name(),
            reference: format!("{repository}@{} (only sha256 is supported)", entry.digest()),
        })
    }

    /// A manifest's media type when it is addressed by digest: the index entry's if one names the digest, else the
    /// manifest's own `mediaType` field (which OCI manifests may omit: then the shape tells).
    async fn media_type_by_digest(
        &self,
        repository: &str,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<String, StoreError> {
        let indexed = self.read_index(repository).await?.and_then(|index| {
            index
                .manifests()
                .iter()
                .find(|entry| our_digest(entry.digest()).as_ref() == Some(digest))
                .map(|entry| entry.media_type().to_string())
        });
        if let Some(media_type) = indexed {
            return Ok(media_type);
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ManifestShape {
            media_type: Option<String>,
            manifests: Option<serde::de::IgnoredAny>,
        }
        let shape: ManifestShape =
            serde_json::from_slice(bytes).map_err(|source| StoreError::InvalidManifest {
                store: self.name(),
                reference: format!("{repository}@{digest}"),
                source,
            })?;
        Ok(match (shape.media_type, shape.manifests) {
            (Some(media_type), _) => media_type,
            (None, Some(_)) => media_type::OCI_INDEX.to_owned(),
            (None, None) => media_type::OCI_MANIFEST.to_owned(),
        })
    }
}

fn tag_of(entry: &Descriptor) -> Option<&str> {
    entry
        .annotations()
        .as_ref()
        .and_then(|annotations| annotations.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

/// Points `tag` at `entry`: one entry per tag, in the place the tag had. An untagged entry for the same manifest
/// is dropped too, since the tag now keeps it reachable.
fn replace_tag(entries: &mut Vec<Descriptor>, tag: &str, entry: Descriptor) {
    let superseded = |existing: &Descriptor| match tag_of(existing) {
        Some(existing_tag) => existing_tag == tag,
        None => existing.digest() == entry.digest(),
    };
    // Every entry before the first superseded one stays, so the position is still valid after `retain`.
    let position = entries.iter().position(superseded).unwrap_or(entries.len());
    entries.retain(|existing| !superseded(existing));
    entries.insert(position, entry);
}

fn empty_index() -> ImageIndex {
    let mut index = ImageIndex::default();
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(Vec::new());
    index
}

fn blob_path(folder: &Path, digest: &Digest) -> PathBuf {
    folder.join("blobs").join("sha256").join(digest.hex())
}

/// One lock per layout folder for index.json updates. The map is shared by every `LayoutStore` of the process,
/// because a stage may open two stores over the same root. Other processes are not excluded.
fn index_lock(folder: &Path) -> Arc<tokio::sync::Mutex<()>> {
    type Locks = Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>;
    static LOCKS: LazyLock<Locks> = LazyLock::new(Locks::default);
    let key = std::path::absolute(folder).unwrap_or_else(|_| folder.to_owned());
    // The map is only ever inserted into, so a panic elsewhere cannot leave it inconsistent.
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(locks.entry(key).or_default())
}

/// Runs file work (and hashing) off the runtime's threads.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(io_error("working on", path, io::Error::other(error))),
    }
}

fn io_error(operation: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        operation,
        path: path.to_owned(),
        source,
    }
}

fn check_digest(
    bytes: &[u8],
    expected: &Digest,
    store: &str,
    reference: &str,
) -> Result<(), StoreError> {
    let actual = Digest::of(bytes);
    if actual == *expected {
        Ok(())
    } else {
        Err(StoreError::DigestMismatch {
            store: store.to_owned(),
            reference: reference.to_owned(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

fn read_index_file(
    path: &Path,
    store: &str,
    reference: &str,
) -> Result<Option<ImageIndex>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error("reading", path, source)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StoreError::InvalidManifest {
            store: store.to_owned(),
            reference: reference.to_owned(),
            source,
        })
}

/// The layout skeleton; the caller holds the folder's lock, so a new empty index.json cannot replace a fresh one.
fn create_layout_files(folder: &Path) -> Result<(), StoreError> {
    let blobs = folder.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(|source| io_error("creating", &blobs, source))?;
    let layout_file = folder.join(LAYOUT_FILE);
    if !layout_file.exists() {
        write_atomically(&layout_file, LAYOUT_FILE_CONTENT)?;
    }
    let index_file = folder.join(INDEX_FILE);
    if !index_file.exists() {
        let bytes = serde_json::to_vec(&empty_index())
            .map_err(|source| io_error("writing", &index_file, source.into()))?;
        write_atomically(&index_file, &bytes)?;
    }
    Ok(())
}

/// Writes `bytes` to a temporary file next to `path` and renames it into place, so that readers (and a crash)
/// see the old file or the whole new one, never a part. The sync makes the rename durable only with full content.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut file = temporary_file(folder)?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|source| io_error("writing", file.path(), source))?;
    file.persist(path)
        .map_err(|error| io_error("renaming into place", path, error.error))?;
    Ok(())
}

fn temporary_file(folder: &Path) -> Result<tempfile::NamedTempFile, StoreError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(FILE_MODE));
    builder
        .tempfile_in(folder)
        .map_err(|source| io_error("creating a temporary file in", folder, source))
}

/// Shares a blob file between two layouts of one root: a hard link costs nothing; across file systems (or where
/// links are refused) it is copied, through a temporary file like any other write.
fn link_or_copy(source: &Path, target: &Path) -> Result<bool, StoreError> {
    match std::fs::hard_link(source, target) {
        Ok(()) => return Ok(true),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Ok(true),
        // Gone since we looked: the caller uploads instead.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(_) => {}
    }
    let folder = target.parent().unwrap_or(Path::new("."));
    let mut file = temporary_file(folder)?;
    let mut reader = File::open(source).map_err(|error| io_error("reading", source, error))?;
    io::copy(&mut reader, &mut file)
        .and_then(|_| file.as_file().sync_all())
        .map_err(|error| io_error("copying", source, error))?;
    file.persist(target)
        .map_err(|error| io_error("renaming into place", target, error.error))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn store() -> (tempfile::TempDir, LayoutStore) {
        let root = tempfile::tempdir().expect("temporary folder");
        let store = LayoutStore::new(root.path().to_owned());
        (root, store)
    }

    /// An OCI manifest with deliberately odd spacing, so that a re-serialization would change its digest.
    fn image_manifest(label: &str) -> StoredManifest {
        let text = format!(
            r#"{{"schemaVersion":2,  "mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[],"annotations":{{"label":"{label}"}}}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            Digest::of(b"{}"),
        );
        StoredManifest {
            media_type: media_type::OCI_MANIFEST.to_owned(),
            bytes: Bytes::from(text),
        }
    }

    fn index_json(root: &Path, repository: &str) -> Value {
        let bytes = std::fs::read(root.join(repository).join(INDEX_FILE)).expect("index.json");
        serde_json::from_slice(&bytes).expect("index.json is JSON")
    }

    #[tokio::test]
    async fn put_by_tag_writes_a_layout_and_reads_back_exact_bytes() {
        let (root, store) = store();
        let manifest = image_manifest("one");
        let digest = store
            .put_manifest("acme/app", ManifestReference::Tag("1.0"), &manifest)
            .await
            .expect("put");
        assert_eq!(digest, manifest.digest());

        let folder = root.path().join("acme/app");
        assert_eq!(
            std::fs::read(folder.join(LAYOUT_FILE)).expect("oci-layout"),
            LAYOUT_FILE_CONTENT
        );
        assert_eq!(
            std::fs::read(blob_path(&folder, &digest)).expect("blob"),
            manifest.bytes
        );
        let index = index_json(root.path(), "acme/app");
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(
            index["manifests"],
            json!([{
                "mediaType": media_type::OCI_MANIFEST,
                "digest": digest.to_string(),
                "size": manifest.bytes.len(),
                "annotations": {ANNOTATION_REF_NAME: "1.0"},
            }])
        );

        for reference in [
            ManifestReference::Tag("1.0"),
            ManifestReference::Digest(&digest),
        ] {
            let read = store
                .get_manifest("acme/app", reference)
                .await
                .expect("get");
            assert_eq!(read.as_ref(), Some(&manifest), "{reference}");
            let head = store
                .head_manifest("acme/app", reference)
                .await
                .expect("head");
            assert_eq!(head, Some(manifest.descriptor()), "{reference}");
        }
    }

    #[tokio::test]
    async fn put_by_digest_adds_one_untagged_entry() {
        let (root, store) = store();
        let manifest = image_manifest("by digest");
        let digest = manifest.digest();
        for _ in 0..2 {
            store
                .put_manifest("acme/app", ManifestReference::Digest(&digest), &manifest)
                .await
                .expect("put");
        }
        let entries = index_json(root.path(), "acme/app")["manifests"].clone();
        assert_eq!(entries.as_array().map(Vec::len), Some(1), "{entries}");
        assert_eq!(entries[0]["digest"], digest.to_string());
        assert_eq!(entries[0].get("annotations"), None);
        assert!(store.list_tags("acme/app").await.expect("tags").is_empty());

        // Tagging it later replaces the untagged entry: the tag keeps it reachable.
        store
            .put_manifest("acme/app", ManifestReference::Tag("v1"), &manifest)
            .await
            .expect("put");
        let entries = index_json(root.path(), "acme/app")["manifests"].clone();
        assert_eq!(entries.as_array().map(Vec::len), Some(1), "{entries}");
        assert_eq!(entries[0]["annotations"][ANNOTATION_REF_NAME], "v1");
    }

    #[tokio::test]
    async fn put_by_a_wrong_digest_is_refused() {
        let (root, store) = store();
        let wrong = Digest::of(b"something else");
        let error = store
            .put_manifest(
                "acme/app",
                ManifestReference::Digest(&wrong),
                &image_manifest("x"),
            )
            .await
            .expect_err("mismatch");
        assert!(
            matches!(error, StoreError::DigestMismatch { .. }),
            "{error:?}"
        );
        assert!(!root.path().join("acme/app").exists());
    }

    #[tokio::test]
    async fn retagging_replaces_the_tags_entry() {
        let (root, store) = store();
        let (first, second) = (image_manifest("first"), image_manifest("second"));
        for (tag, manifest) in [("latest", &first), ("stable", &first), ("latest", &second)] {
            store
                .put_manifest("acme/app", ManifestReference::Tag(tag), manifest)
                .await
                .expect("put");
        }
        let entries = index_json(root.path(), "acme/app")["manifests"].clone();
        let pairs: Vec<(String, String)> = entries
            .as_array()
            .expect("manifests")
            .iter()
            .map(|entry| {
                let tag = entry["annotations"][ANNOTATION_REF_NAME]
                    .as_str()
                    .expect("tag");
                (
                    tag.to_owned(),
                    entry["digest"].as_str().expect("digest").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("latest".to_owned(), second.digest().to_string()),
                ("stable".to_owned(), first.digest().to_string()),
            ]
        );
        let latest = store
            .get_manifest("acme/app", ManifestReference::Tag("latest"))
            .await;
        assert_eq!(latest.expect("get"), Some(second));
        // The old manifest stays readable by digest, as in a registry.
        let old = store
            .get_manifest("acme/app", ManifestReference::Digest(&first.digest()))
            .await;
        assert_eq!(old.expect("get"), Some(first));
    }

    #[tokio::test]
    async fn media_type_by_digest_comes_from_the_manifest_when_no_entry_names_it() {
        let (_root, store) = store();
        let index = Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media_type::OCI_INDEX
        ));
        let bare = Bytes::from_static(br#"{"schemaVersion":2,"manifests":[]}"#);
        for (bytes, expected) in [
            (index, media_type::OCI_INDEX),
            (bare, media_type::OCI_INDEX),
        ] {
            let digest = Digest::of(&bytes);
            store
                .put_blob("acme/app", &digest, bytes)
                .await
                .expect("put blob");
            let read = store
                .get_manifest("acme/app", ManifestReference::Digest(&digest))
                .await
                .expect("get")
                .expect("found");
            assert_eq!(read.media_type, expected);
        }
    }

    #[tokio::test]
    async fn blobs_are_checked_against_their_digest() {
        let (root, store) = store();
        let bytes = Bytes::from_static(b"layer bytes");
        let digest = Digest::of(&bytes);
        store
            .put_blob("acme/app", &digest, bytes.clone())
            .await
            .expect("put");
        assert_eq!(
            store.get_blob("acme/app", &digest).await.expect("get"),
            bytes
        );
        assert_eq!(
            store.blob_size("acme/app", &digest).await.expect("size"),
            Some(11)
        );

        let error = store
            .put_blob("acme/app", &Digest::of(b"other"), bytes)
            .await
            .expect_err("wrong digest");
        assert!(
            matches!(error, StoreError::DigestMismatch { .. }),
            "{error:?}"
        );

        std::fs::write(
            blob_path(&root.path().join("acme/app"), &digest),
            b"tampered",
        )
        .expect("corrupt");
        let error = store
            .get_blob("acme/app", &digest)
            .await
            .expect_err("corrupt");
        let StoreError::DigestMismatch {
            expected, actual, ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(
            (expected.as_str(), actual.as_str()),
            (digest.as_str(), Digest::of(b"tampered").as_str())
        );
    }

    #[tokio::test]
    async fn a_corrupted_manifest_is_a_digest_mismatch() {
        let (root, store) = store();
        let manifest = image_manifest("x");
        let digest = store
            .put_manifest("acme/app", ManifestReference::Tag("v1"), &manifest)
            .await
            .expect("put");
        std::fs::write(blob_path(&root.path().join("acme/app"), &digest), b"{}").expect("corrupt");
        for reference in [
            ManifestReference::Tag("v1"),
            ManifestReference::Digest(&digest),
        ] {
            let error = store
                .get_manifest("acme/app", reference)
                .await
                .expect_err("corrupt");
            assert!(
                matches!(error, StoreError::DigestMismatch { .. }),
                "{error:?}"
            );
        }
    }

    #[tokio::test]
    async fn missing_things_are_none_or_not_found() {
        let (_root, store) = store();
        let digest = Digest::of(b"absent");
        for reference in [
            ManifestReference::Tag("v1"),
            ManifestReference::Digest(&digest),
        ] {
            assert_eq!(
                store
                    .get_manifest("acme/app", reference)
                    .await
                    .expect("get"),
                None
            );
            assert_eq!(
                store
                    .head_manifest("acme/app", reference)
                    .await
                    .expect("head"),
                None
            );
        }
        assert_eq!(
            store.blob_size("acme/app", &digest).await.expect("size"),
            None
        );
        let error = store
            .get_blob("acme/app", &digest)
            .await
            .expect_err("missing");
        assert!(matches!(error, StoreError::NotFound { .. }), "{error:?}");
        assert!(store.list_tags("acme/app").await.expect("tags").is_empty());
        assert!(
            store
                .signatures_of("acme/app", &digest)
                .await
                .expect("signatures")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_corrupt_index_and_a_bad_repository_name_are_errors() {
        let (root, store) = store();
        let folder = root.path().join("acme/app");
        std::fs::create_dir_all(&folder).expect("folder");
        std::fs::write(folder.join(INDEX_FILE), b"{not json").expect("index");
        let error = store.list_tags("acme/app").await.expect_err("corrupt");
        assert!(
            matches!(error, StoreError::InvalidManifest { .. }),
            "{error:?}"
        );

        for repository in ["../escape", "/absolute", "Upper"] {
            let error = store.list_tags(repository).await.expect_err(repository);
            assert!(
                matches!(error, StoreError::InvalidRepository { .. }),
                "{error:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_tags_on_one_repository_are_all_kept() {
        let (_root, store) = store();
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..20)
            .map(|number| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let tag = format!("tag-{number:02}");
                    let manifest = image_manifest(&tag);
                    store
                        .put_manifest("acme/app", ManifestReference::Tag(&tag), &manifest)
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("put");
        }
        let expected: Vec<String> = (0..20).map(|number| format!("tag-{number:02}")).collect();
        assert_eq!(store.list_tags("acme/app").await.expect("tags"), expected);
    }

    #[tokio::test]
    async fn list_tags_is_sorted() {
        let (_root, store) = store();
        for tag in ["b", "a", "c"] {
            store
                .put_manifest(
                    "acme/app",
                    ManifestReference::Tag(tag),
                    &image_manifest(tag),
                )
                .await
                .expect("put");
        }
        assert_eq!(
            store.list_tags("acme/app").await.expect("tags"),
            ["a", "b", "c"]
        );
    }

    #[tokio::test]
    async fn mount_shares_a_blob_between_repositories() {
        let (_root, store) = store();
        let bytes = Bytes::from_static(b"shared layer");
        let digest = Digest::of(&bytes);
        store
            .put_blob("acme/app", &digest, bytes.clone())
            .await
            .expect("put");
        assert!(
            store
                .mount_blob("other/app", "acme/app", &digest)
                .await
                .expect("mount")
        );
        assert_eq!(
            store.get_blob("other/app", &digest).await.expect("get"),
            bytes
        );
        // Again: already there.
        assert!(
            store
                .mount_blob("other/app", "acme/app", &digest)
                .await
                .expect("mount")
        );
        let absent = Digest::of(b"absent");
        assert!(
            !store
                .mount_blob("other/app", "acme/app", &absent)
                .await
                .expect("mount")
        );
    }

    #[tokio::test]
    async fn signatures_are_found_at_the_signature_tag() {
        let (_root, store) = store();
        let image = image_manifest("image");
        let signature = image_manifest("signature");
        let digest = store
            .put_manifest("acme/app", ManifestReference::Tag("v1"), &image)
            .await
            .expect("put");
        assert!(
            store
                .signatures_of("acme/app", &digest)
                .await
                .expect("none")
                .is_empty()
        );
        let tag = signature_tag(&digest);
        store
            .put_manifest("acme/app", ManifestReference::Tag(&tag), &signature)
            .await
            .expect("put");
        let found = store
            .signatures_of("acme/app", &digest)
            .await
            .expect("signatures");
        assert_eq!(found, [signature.descriptor()]);
    }

    /// Written files get the mode a plain `create` would give (0644 under the umask), not the 0600 of a temporary
    /// file, so that other users' tools can read the layout.
    #[cfg(unix)]
    #[tokio::test]
    async fn written_files_are_readable_like_ordinary_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let (root, store) = store();
        let digest = store
            .put_manifest(
                "acme/app",
                ManifestReference::Tag("v1"),
                &image_manifest("x"),
            )
            .await
            .expect("put");
        let folder = root.path().join("acme/app");
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777
        };
        let ordinary = folder.join("ordinary");
        std::fs::write(&ordinary, b"").expect("write");
        let expected = mode(&ordinary) & FILE_MODE;
        for path in [
            folder.join(INDEX_FILE),
            folder.join(LAYOUT_FILE),
            blob_path(&folder, &digest),
        ] {
            assert_eq!(mode(&path), expected, "{}", path.display());
        }
    }

    #[test]
    fn the_name_is_the_location() {
        let store = LayoutStore::new(PathBuf::from("/srv/images"));
        assert_eq!(store.name(), "oci:/srv/images");
    }
}
