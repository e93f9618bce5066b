//! The [`Store`] operations over the OCI distribution API of one registry host.

mod referrers;
mod upload;

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LINK, RANGE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::auth::repository_scope;
use super::{RegistryClient, Reply, Request, WholeBody, resume};
use crate::model::reference::Digest;
use crate::store::blob_stream::{self, BlobStream, Chunks};
use crate::store::error::StoreError;
use crate::store::{
    Descriptor, ManifestReference, MediaType, Store, StoredManifest, media_type, signature_tag,
};

/// Manifests beyond this size are refused: the distribution spec suggests registries accept at least 4 MiB.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// What is read whole is read as part of its request, so that an answer that breaks off is asked for again.
const MANIFEST: WholeBody = WholeBody {
    limit: MAX_MANIFEST_BYTES,
    what: "a manifest",
};
/// `get_blob` is for small blobs read whole (configs, signature payloads); layers are streamed.
const SMALL_BLOB: WholeBody = WholeBody {
    limit: 16 * 1024 * 1024,
    what: "a blob read whole",
};
/// A page of a tag list: 1,000 tags of at most 128 characters, quoted, with room to spare.
const TAG_PAGE: WholeBody = WholeBody {
    limit: 1024 * 1024,
    what: "a page of tags",
};
/// The most tags read from one repository: far beyond any real one, short of what would exhaust memory.
const MAX_TAGS: usize = 1_000_000;
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A registry host, reached through the process's shared client.
#[derive(Clone)]
pub struct RegistryStore {
    client: Arc<RegistryClient>,
    host: String,
}

impl RegistryStore {
    pub fn new(client: Arc<RegistryClient>, host: &str) -> Self {
        // Docker Hub is named `docker.io` in image names but serves the API elsewhere.
        let host = match host {
            "docker.io" | "index.docker.io" => DOCKER_HUB_API,
            other => other,
        };
        Self {
            client,
            host: host.to_owned(),
        }
    }

    fn request(&self, method: Method, target: String, repository: &str, push: bool) -> Request<'_> {
        Request {
            method,
            host: &self.host,
            target,
            scope: repository_scope(repository, push),
            headers: HeaderMap::new(),
            body: None,
            whole: None,
        }
    }

    fn manifest_request(
        &self,
        method: Method,
        repository: &str,
        reference: ManifestReference<'_>,
    ) -> Request<'_> {
        let mut request = self.request(
            method,
            format!("/v2/{repository}/manifests/{reference}"),
            repository,
            false,
        );
        request
            .headers
            .insert(ACCEPT, HeaderValue::from_static(ACCEPTED_MANIFESTS));
        request
    }

    fn reference_name(&self, repository: &str, reference: ManifestReference<'_>) -> String {
        match reference {
            ManifestReference::Tag(tag) => format!("{}/{repository}:{tag}", self.host),
            ManifestReference::Digest(digest) => format!("{}/{repository}@{digest}", self.host),
        }
    }

    async fn expect(
        &self,
        request: &Request<'_>,
        expected: &[StatusCode],
    ) -> Result<Reply, StoreError> {
        let reply = self.client.send(request).await?;
        if expected.contains(&reply.status()) {
            Ok(reply)
        } else {
            Err(reply.into_error(1).await)
        }
    }

    /// The answer to `GET` of a blob that exists; with `whole`, its body read as part of the request.
    async fn blob_reply(
        &self,
        repository: &str,
        digest: &Digest,
        whole: Option<WholeBody>,
    ) -> Result<Reply, StoreError> {
        let mut request = self.request(
            Method::GET,
            format!("/v2/{repository}/blobs/{digest}"),
            repository,
            false,
        );
        request.whole = whole;
        let reply = self.client.send(&request).await?;
        if reply.status() == StatusCode::NOT_FOUND {
            return Err(StoreError::NotFound {
                store: self.host.clone(),
                reference: format!("{repository}@{digest}"),
            });
        }
        if reply.status() != StatusCode::OK {
            return Err(reply.into_error(1).await);
        }
        Ok(reply)
    }

    /// The rest of a blob of `size` bytes from byte `offset`, for a body that broke off: a `Range` request, whose
    /// answer must start at `offset`; a registry that ignores the range sends it whole, and the bytes already
    /// passed on are dropped.
    async fn blob_from(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
        size: u64,
    ) -> Result<resume::Rest, StoreError> {
        let mut request = self.request(
            Method::GET,
            format!("/v2/{repository}/blobs/{digest}"),
            repository,
            false,
        );
        request
            .headers
            .insert(RANGE, header_value(&format!("bytes={offset}-")));
        let reply = self.client.send(&request).await?;
        let timeouts = &self.client.settings.timeouts;
        match reply.status() {
            StatusCode::PARTIAL_CONTENT => {
                let range = reply
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let start = range
                    .strip_prefix("bytes ")
                    .and_then(|range| range.split('-').next())
                    .and_then(|start| start.parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(StoreError::Status {
                        method: "GET".into(),
                        url: reply.url.clone(),
                        status: 206,
                        code: None,
                        message: format!(
                            "asked for the rest of the blob from byte {offset}, the answer holds `Content-Range: {range}`"
                        ),
                        attempts: 1,
                    });
                }
                let rest = size.saturating_sub(offset);
                Ok((Box::pin(reply.chunks(timeouts, rest)), 0))
            }
            StatusCode::OK => Ok((Box::pin(reply.chunks(timeouts, size)), offset)),
            StatusCode::NOT_FOUND => Err(StoreError::NotFound {
                store: self.host.clone(),
                reference: format!("{repository}@{digest}"),
            }),
            _ => Err(reply.into_error(1).await),
        }
    }
}

const ACCEPTED_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn content_type(reply: &Reply) -> Option<String> {
    let value = reply.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or(value).trim().to_owned())
}

fn header_digest(reply: &Reply) -> Option<String> {
    Some(
        reply
            .headers()
            .get(DOCKER_CONTENT_DIGEST)?
            .to_str()
            .ok()?
            .to_owned(),
    )
}

/// A manifest's own `mediaType` field, for registries that answer without a useful Content-Type.
fn declared_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Declared {
        media_type: Option<String>,
    }
    serde_json::from_slice::<Declared>(bytes).ok()?.media_type
}

impl Store for RegistryStore {
    fn name(&self) -> String {
        self.host.clone()
    }

    async fn get_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
    ) -> Result<Option<StoredManifest>, StoreError> {
        let mut request = self.manifest_request(Method::GET, repository, reference);
        request.whole = Some(MANIFEST);
        let reply = self.client.send(&request).await?;
        if reply.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if reply.status() != StatusCode::OK {
            return Err(reply.into_error(1).await);
        }
        let announced = header_digest(&reply);
        let declared_type = content_type(&reply);
        let bytes = reply.bytes(MANIFEST.limit, MANIFEST.what).await?;
        let actual = Digest::of(&bytes);
        let expected = match reference {
            ManifestReference::Digest(digest) => Some(digest.to_string()),
            ManifestReference::Tag(_) => announced,
        };
        if let Some(expected) = expected {
            if expected != actual.as_str() {
                return Err(StoreError::DigestMismatch {
                    store: self.host.clone(),
                    reference: self.reference_name(repository, reference),
                    expected,
                    actual: actual.to_string(),
                });
            }
        }
        let media_type = declared_type
            .filter(|media_type| media_type::MANIFESTS.contains(&media_type.as_str()))
            .or_else(|| declared_media_type(&bytes))
            .unwrap_or_else(|| media_type::OCI_MANIFEST.to_owned());
        Ok(Some(StoredManifest { media_type, bytes }))
    }

    async fn head_manifest(
        &self,
        repository: &str,
        reference: ManifestReference<'_>,
    ) -> Result<Option<Descriptor>, StoreError> {
        let request = self.manifest_request(Method::HEAD, repository, reference);
        let reply = self.client.send(&request).await?;
        if reply.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if reply.status() != StatusCode::OK {
            return Err(reply.into_error(1).await);
        }
        // A size beyond the manifest cap is not a manifest this client would read.
        let size = reply
            .declared_length()
            .filter(|size| *size <= MAX_MANIFEST_BYTES as u64);
        let digest = header_digest(&reply).and_then(|digest| digest.parse::<Digest>().ok());
        let media_type = content_type(&reply);
        match (size, digest, media_type) {
            (Some(size), Some(digest), Some(media_type))
                if media_type::MANIFESTS.contains(&media_type.as_str()) =>
            {
                Ok(Some(Descriptor::new(
                    MediaType::from(media_type.as_str()),
                    size,
                    crate::store::oci_digest(&digest),
                )))
            }
            // Not every registry describes a manifest fully in a HEAD answer: read it instead.
            _ => Ok(self
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
        let mut request = self.request(
            Method::PUT,
            format!("/v2/{repository}/manifests/{reference}"),
            repository,
            true,
        );
        request
            .headers
            .insert(CONTENT_TYPE, header_value(&manifest.media_type));
        request.body = Some(manifest.bytes.clone());
        let reply = self
            .expect(&request, &[StatusCode::CREATED, StatusCode::OK])
            .await?;
        let digest = manifest.digest();
        if let Some(stored) = header_digest(&reply) {
            if stored != digest.as_str() {
                return Err(StoreError::DigestMismatch {
                    store: self.host.clone(),
                    reference: self.reference_name(repository, reference),
                    expected: digest.to_string(),
                    actual: stored,
                });
            }
        }
        Ok(digest)
    }

    async fn blob_size(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, StoreError> {
        let request = self.request(
            Method::HEAD,
            format!("/v2/{repository}/blobs/{digest}"),
            repository,
            false,
        );
        let reply = self.client.send(&request).await?;
        match reply.status() {
            StatusCode::OK => Ok(Some(reply.declared_length().unwrap_or_default())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(reply.into_error(1).await),
        }
    }

    async fn get_blob(&self, repository: &str, digest: &Digest) -> Result<Bytes, StoreError> {
        let reply = self
            .blob_reply(repository, digest, Some(SMALL_BLOB))
            .await?;
        let bytes = reply.bytes(SMALL_BLOB.limit, SMALL_BLOB.what).await?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                store: self.host.clone(),
                reference: format!("{}/{repository}@{digest}", self.host),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    async fn put_blob(
        &self,
        repository: &str,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        self.upload(repository, digest, BlobStream::from_bytes(bytes))
            .await
    }

    async fn open_blob(&self, repository: &str, digest: &Digest) -> Result<BlobStream, StoreError> {
        let reply = self.blob_reply(repository, digest, None).await?;
        let size = reply.declared_length();
        // The announced size buys the body time to arrive; the digest check and the caller's expected size
        // (see `copy`) bound what a lying announcement can cost.
        let expected = size.unwrap_or_default();
        let first: Chunks = Box::pin(reply.chunks(&self.client.settings.timeouts, expected));
        let reference = format!("{}/{repository}@{digest}", self.host);
        let rest = {
            let (store, repository, digest) = (self.clone(), repository.to_owned(), digest.clone());
            move |offset| {
                let (store, repository, digest) =
                    (store.clone(), repository.clone(), digest.clone());
                async move {
                    store
                        .blob_from(&repository, &digest, offset, expected)
                        .await
                }
            }
        };
        let chunks = resume::resuming(first, self.client.settings.retry, reference.clone(), rest);
        Ok(BlobStream {
            size,
            chunks: blob_stream::verified(chunks, digest.clone(), self.host.clone(), reference),
        })
    }

    async fn put_blob_stream(
        &self,
        repository: &str,
        digest: &Digest,
        blob: BlobStream,
    ) -> Result<(), StoreError> {
        self.upload(repository, digest, blob).await
    }

    async fn mount_blob(
        &self,
        repository: &str,
        from_repository: &str,
        digest: &Digest,
    ) -> Result<bool, StoreError> {
        let target =
            format!("/v2/{repository}/blobs/uploads/?mount={digest}&from={from_repository}");
        let mut request = self.request(Method::POST, target, repository, true);
        request.scope = format!(
            "{} {}",
            repository_scope(repository, true),
            repository_scope(from_repository, false)
        );
        let reply = self
            .expect(&request, &[StatusCode::CREATED, StatusCode::ACCEPTED])
            .await?;
        Ok(reply.status() == StatusCode::CREATED)
    }

    async fn list_tags(&self, repository: &str) -> Result<Vec<String>, StoreError> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut target = format!("/v2/{repository}/tags/list?n=1000");
        let mut pages = std::collections::HashSet::new();
        loop {
            // A registry that links back to a page, or on without end, is cut off rather than followed.
            let refused = if !pages.insert(target.clone()) {
                Some("the tag list links back to a page it already gave".to_owned())
            } else if tags.len() > MAX_TAGS {
                Some(format!("the tag list goes on past {MAX_TAGS} tags"))
            } else {
                None
            };
            if let Some(message) = refused {
                return Err(StoreError::Status {
                    method: "GET".into(),
                    url: target,
                    status: 200,
                    code: None,
                    message: format!("{message}; refused"),
                    attempts: 1,
                });
            }
            let mut request = self.request(Method::GET, target.clone(), repository, false);
            request.whole = Some(TAG_PAGE);
            let reply = self.client.send(&request).await?;
            if reply.status() == StatusCode::NOT_FOUND {
                // distribution answers NAME_UNKNOWN for a repository pushed only by digest, or not at all.
                return Ok(tags);
            }
            if reply.status() != StatusCode::OK {
                return Err(reply.into_error(1).await);
            }
            let next = reply
                .headers()
                .get(LINK)
                .and_then(|value| value.to_str().ok())
                .and_then(|link| link.split(';').next())
                .map(|link| {
                    link.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned()
                });
            let body = reply.bytes(TAG_PAGE.limit, TAG_PAGE.what).await?;
            let page: TagList =
                serde_json::from_slice(&body).map_err(|source| StoreError::InvalidManifest {
                    store: self.host.clone(),
                    reference: format!("{repository} tag list"),
                    source,
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) if !next.is_empty() => target = next,
                _ => return Ok(tags),
            }
        }
    }

    async fn has_referrers_api(&self, repository: &str) -> Result<bool, StoreError> {
        // Asking for the referrers of a digest nothing has teaches the client whether the API is there.
        let probe = Digest::of(b"imagepipe referrers probe");
        Ok(self
            .signature_referrers(repository, &probe)
            .await?
            .is_some())
    }

    async fn signatures_of(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, StoreError> {
        let mut signatures = self
            .signature_referrers(repository, digest)
            .await?
            .unwrap_or_default();
        let tag = signature_tag(digest);
        if let Some(descriptor) = self
            .head_manifest(repository, ManifestReference::Tag(&tag))
            .await?
        {
            signatures.push(descriptor);
        }
        Ok(signatures)
    }
}
