//! Blob uploads: a POST, a PATCH per chunk when the blob is larger than one, and the closing PUT, in bounded
//! memory.

use bytes::BytesMut;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};

use super::{RegistryStore, header_value};
use crate::model::reference::Digest;
use crate::store::Store;
use crate::store::blob_stream::{BlobStream, Chunks};
use crate::store::error::StoreError;
use crate::store::registry::Reply;

/// The most a blob stream hands over at once, as far as upload buffers are counted: a read off a socket.
const STREAM_PIECE: usize = 1024 * 1024;

impl RegistryStore {
    /// Uploads a blob from a stream: one POST and one PUT when it fits in one chunk, else POST, a PATCH per
    /// `chunk_size` and PUT. The next chunk is read while one is sent, so at most two are held in memory (the
    /// one sent can be sent again on a retry), and neither registry waits on the other's round trips.
    pub(super) async fn upload(
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
        // A blob that fits in a chunk is held whole; a larger one two chunks at a time, each with room for the
        // piece of the stream that overfills it.
        let held = blob
            .size
            .and_then(|size| usize::try_from(size).ok())
            .filter(|size| *size <= chunk_size)
            .unwrap_or(2 * (chunk_size + STREAM_PIECE));
        let _buffer = self.client.upload_buffer(held).await;
        let reply = self.expect(&start, &[StatusCode::ACCEPTED]).await?;
        let mut location = location_of(&reply, &start.target)?;
        let mut chunks = blob.chunks;
        let mut pending = BytesMut::new();
        let mut offset = 0usize;
        let mut ended = false;
        read_chunk(&mut chunks, &mut pending, &mut ended, chunk_size).await?;
        loop {
            // A blob that fits in one chunk goes with the closing PUT.
            if ended && offset == 0 && pending.len() <= chunk_size {
                break;
            }
            if pending.is_empty() {
                break;
            }
            let body = pending.split_to(pending.len().min(chunk_size)).freeze();
            // The rest moves to a buffer of its own, sized once: growing the one `body` still shares would
            // allocate again and again while the chunk is in flight.
            let mut next = BytesMut::with_capacity(chunk_size + STREAM_PIECE);
            next.extend_from_slice(&pending);
            pending = next;
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
            let sent = self.expect(&patch, &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT]);
            let read = read_chunk(&mut chunks, &mut pending, &mut ended, chunk_size);
            let (reply, ()) = futures_util::future::try_join(sent, read).await?;
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
}

/// Reads from `chunks` into `pending` until it holds more than a chunk or the stream has `ended`.
async fn read_chunk(
    chunks: &mut Chunks,
    pending: &mut BytesMut,
    ended: &mut bool,
    chunk_size: usize,
) -> Result<(), StoreError> {
    while !*ended && pending.len() <= chunk_size {
        match chunks.next().await {
            Some(chunk) => pending.extend_from_slice(&chunk?[..]),
            None => *ended = true,
        }
    }
    Ok(())
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
