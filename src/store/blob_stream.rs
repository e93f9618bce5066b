//! Blobs as streams of chunks, checked against their digest as they pass: a layer of any size is copied in
//! bounded memory, and a corrupt one is caught before the target accepts it.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use sha2::Digest as _;

use super::StoreError;
use crate::model::reference::Digest;

/// The chunks of a blob, in order.
pub type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// A blob being read.
pub struct BlobStream {
    /// The size the store announced, when it did.
    pub size: Option<u64>,
    pub chunks: Chunks,
}

impl BlobStream {
    /// A blob held in memory, as one chunk.
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self {
            size: Some(bytes.len() as u64),
            chunks: Box::pin(stream::once(async move { Ok(bytes) })),
        }
    }
}

/// The whole blob in memory, for blobs known to be small (configs, signature payloads); checked as it passes.
pub async fn collect(blob: BlobStream) -> Result<Bytes, StoreError> {
    let capacity = blob
        .size
        .and_then(|size| usize::try_from(size).ok())
        .unwrap_or_default();
    let mut bytes = bytes::BytesMut::with_capacity(capacity);
    let mut chunks = blob.chunks;
    while let Some(chunk) = chunks.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(bytes.freeze())
}

/// Passes `chunks` on while hashing them, and ends with a [`StoreError::DigestMismatch`] instead of the end
/// of the stream when what passed is not `expected`.
pub fn verified(
    chunks: impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static,
    expected: Digest,
    store: String,
    reference: String,
) -> Chunks {
    let state = Some((Box::pin(chunks), sha2::Sha256::new()));
    Box::pin(stream::unfold(state, move |state| {
        let (expected, store, reference) = (expected.clone(), store.clone(), reference.clone());
        async move {
            let (mut chunks, mut hasher) = state?;
            match chunks.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    Some((Ok(chunk), Some((chunks, hasher))))
                }
                Some(Err(error)) => Some((Err(error), None)),
                None => {
                    let actual = format!("sha256:{:x}", hasher.finalize());
                    if actual == expected.as_str() {
                        None
                    } else {
                        let mismatch = StoreError::DigestMismatch {
                            store,
                            reference,
                            expected: expected.to_string(),
                            actual,
                        };
                        Some((Err(mismatch), None))
                    }
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
        stream::iter(
            parts
                .iter()
                .map(|part| Ok(Bytes::from_static(part)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn passes_a_blob_that_matches_its_digest() {
        let expected = Digest::of(b"hello world");
        let stream = verified(
            chunks(&[b"hello ", b"world"]),
            expected,
            "s".into(),
            "r".into(),
        );
        let parts: Vec<Bytes> = stream.try_collect().await.expect("matches");
        assert_eq!(parts.concat(), b"hello world");
    }

    #[tokio::test]
    async fn ends_with_an_error_when_the_content_differs() {
        let expected = Digest::of(b"hello world");
        let stream = verified(
            chunks(&[b"hello ", b"there"]),
            expected,
            "s".into(),
            "r".into(),
        );
        let result: Result<Vec<Bytes>, StoreError> = stream.try_collect().await;
        assert!(
            matches!(result, Err(StoreError::DigestMismatch { .. })),
            "{result:?}"
        );
    }
}
