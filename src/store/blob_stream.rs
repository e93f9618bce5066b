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

/// The blob as its descriptor describes it: `size` bytes, ending with [`StoreError::TooLarge`] as soon as more
/// pass, so a store cannot make a copy read past what the manifest promised.
pub fn at_most(blob: BlobStream, size: u64, reference: String) -> BlobStream {
    let limit = usize::try_from(size).unwrap_or(usize::MAX);
    let chunks = blob.chunks.scan(0u64, move |passed, chunk| {
        let chunk = chunk.and_then(|chunk| {
            *passed += chunk.len() as u64;
            if *passed > size {
                Err(StoreError::TooLarge {
                    url: reference.clone(),
                    what: "a blob of the size its descriptor gives",
                    limit,
                })
            } else {
                Ok(chunk)
            }
        });
        futures_util::future::ready(Some(chunk))
    });
    BlobStream {
        size: Some(size),
        chunks: Box::pin(chunks),
    }
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
    async fn a_blob_longer_than_its_descriptor_says_is_cut_off() {
        let blob = BlobStream {
            size: None,
            chunks: Box::pin(chunks(&[b"hello ", b"world"])),
        };
        let result: Result<Vec<Bytes>, StoreError> =
            at_most(blob, 8, "r".into()).chunks.try_collect().await;
        assert!(
            matches!(result, Err(StoreError::TooLarge { limit: 8, .. })),
            "{result:?}"
        );
        let exact = BlobStream::from_bytes(Bytes::from_static(b"hello"));
        let parts: Vec<Bytes> = at_most(exact, 5, "r".into())
            .chunks
            .try_collect()
            .await
            .expect("fits");
        assert_eq!(parts.concat(), b"hello");
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
