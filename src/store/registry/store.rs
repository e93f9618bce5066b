//! The [`Store`] operations over the OCI distribution API of one registry host.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use oci_spec::image::ImageIndex;
use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LINK, LOCATION,
    RANGE,
};
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

/// The artifact type cosign gives signatures stored as referrers.
const COSIGN_SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Manifests beyond this size are refused: the distribution spec suggests registries accept at least 4 MiB.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// What is read whole is read as part of its request, so that an answer that breaks off is asked for again.
const MANIFEST: WholeBody = WholeBody {
    limit: MAX_MANIFEST_BYTES,
    what: "a manifest",
};
const REFERRERS_INDEX: WholeBody = WholeBody {
    limit: MAX_MANIFEST_BYTES,
    what: "a referrers index",
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
/// The most a blob stream hands over at once, as far as upload buffers are counted: a read off a socket.
const STREAM_PIECE: usize = 1024 * 1024;
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

    /// Uploads a blob from a stream: one POST and one PUT when it fits in one chunk, else POST, a PATCH per
    /// `chunk_size` and PUT, so that at most one chunk is held in memory (and can be sent again on a retry).
    async fn upload(
        &self,
        repository: &str,
        digest: &Digest,
        blob: BlobStream,
    ) -> Result<(), StoreError> {
        let start = self.request(
            Method::POST,
            format!("/v2/{repository}/blobs/uploads/"),
            repository,
            true,
        );
        let chunk_size = self.client.settings.chunk_size.max(1);
        // A blob that fits in a chunk is held whole; a larger one a chunk at a time, plus the piece of the
        // stream that overfills the chunk.
        let held = blob
            .size
            .and_then(|size| usize::try_from(size).ok())
            .filter(|size| *size <= chunk_size)
            .unwrap_or(chunk_size + STREAM_PIECE);
        let _buffer = self.client.upload_buffer(held).await;
        let reply = self.expect(&start, &[StatusCode::ACCEPTED]).await?;
        let mut location = location_of(&reply, &start.target)?;
        let mut chunks = blob.chunks;
        let mut pending = BytesMut::new();
        let mut offset = 0usize;
        let mut ended = false;
        loop {
            while !ended && pending.len() <= chunk_size {
                match chunks.next().await {
                    Some(chunk) => pending.extend_from_slice(&chunk?[..]),
                    None => ended = true,
                }
            }
            // A blob that fits in one chunk goes with the closing PUT.
            if ended && offset == 0 && pending.len() <= chunk_size {
                break;
            }
            if pending.is_empty() {
                break;
            }
            let body = pending.split_to(pending.len().min(chunk_size)).freeze();
            let mut patch = self.request(Method::PATCH, location.clone(), repository, true);
            patch.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            patch.headers.insert(
                CONTENT_RANGE,
                header_value(&format!("{offset}-{}", offset + body.len() - 1)),
            );
            patch
                .headers
                .insert(CONTENT_LENGTH, header_value(&body.len().to_string()));
            offset += body.len();
            patch.body = Some(body);
            let reply = self
                .expect(&patch, &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT])
                .await?;
            location = location_of(&reply, &patch.target)?;
        }
        let separator = if location.contains('?') { '&' } else { '?' };
        let mut finish = self.request(
            Method::PUT,
            format!("{location}{separator}digest={digest}"),
            repository,
            true,
        );
        finish.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if offset == 0 {
            finish.body = Some(pending.freeze());
        }
        let reply = self.client.send(&finish).await?;
        match reply.status() {
            StatusCode::CREATED => Ok(()),
            // The upload completed on an attempt whose answer was lost, so the session is gone: if the blob is
            // there, the upload did its job.
            StatusCode::NOT_FOUND if self.blob_size(repository, digest).await?.is_some() => Ok(()),
            _ => Err(reply.into_error(1).await),
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

    /// The referrers of a digest that are cosign signatures; `None` when the registry has no referrers API.
    async fn signature_referrers(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, StoreError> {
        // Until the host's answer is known, one caller at a time asks: the first answer teaches the rest.
        let _probe = match self.client.has_referrers(&self.host).await {
            Some(false) => return Ok(None),
            Some(true) => None,
            None => {
                let probe = self.client.referrers_probe.lock().await;
                match self.client.has_referrers(&self.host).await {
                    Some(false) => return Ok(None),
                    Some(true) => None,
                    None => Some(probe),
                }
            }
        };
        let mut request = self.request(
            Method::GET,
            format!("/v2/{repository}/referrers/{digest}"),
            repository,
            false,
        );
        request
            .headers
            .insert(ACCEPT, HeaderValue::from_static(media_type::OCI_INDEX));
        request.whole = Some(REFERRERS_INDEX);
        let reply = self.client.send(&request).await?;
        let is_index = reply
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with(media_type::OCI_INDEX));
        if reply.status() != StatusCode::OK || !is_index {
            // Registries without the API answer 404 (distribution 2.8) or something that is not an index.
            self.client.remember_referrers(&self.host, false).await;
            return Ok(None);
        }
        self.client.remember_referrers(&self.host, true).await;
        let body = reply
            .bytes(REFERRERS_INDEX.limit, REFERRERS_INDEX.what)
            .await?;
        let index: ImageIndex =
            serde_json::from_slice(&body).map_err(|source| StoreError::InvalidManifest {
                store: self.host.clone(),
                reference: format!("{repository} referrers of {digest}"),
                source,
            })?;
        Ok(Some(
            index
                .manifests()
                .iter()
                .filter(|descriptor| {
                    descriptor
                        .artifact_type()
                        .as_ref()
                        .is_some_and(|artifact| artifact.to_string() == COSIGN_SIGNATURE_ARTIFACT)
                })
                .cloned()
                .collect(),
        ))
    }
}

const ACCEPTED_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Location` of an upload session, made absolute against the request it answered.
fn location_of(reply: &Reply, request_target: &str) -> Result<String, StoreError> {
    let location = reply
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| StoreError::Status {
            method: "POST".into(),
            url: request_target.to_owned(),
            status: reply.status().as_u16(),
            code: None,
            message: "the upload answer has no Location".into(),
            attempts: 1,
        })?;
    Ok(match reply.response.url().join(location) {
        Ok(url) => url.to_string(),
        Err(_) => location.to_owned(),
    })
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
        loop {
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
