//! A streamed blob whose body breaks off or goes quiet part-way is resumed where it stopped, with a new request
//! for the rest (`Range: bytes=N-`), instead of failing the copy it feeds: a layer of any size survives a reset
//! connection at the cost of one more request. The digest check around the stream
//! ([`crate::store::blob_stream::verified`]) is unchanged, so a registry that answers a range wrongly is caught
//! there.

use std::future::Future;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;

use super::RetryPolicy;
use crate::store::blob_stream::Chunks;
use crate::store::error::StoreError;

/// The rest of a blob from a byte offset: its chunks, and how many bytes at their start to drop (a registry
/// that ignores `Range` sends the whole blob again).
pub(super) type Rest = (Chunks, u64);

/// Passes `first` on; when it fails with a broken connection after `received` bytes, opens the rest with
/// `open_from(received)` (after the retry policy's backoff) and goes on from there, up to `policy.attempts`
/// reads in all. `what` names the blob in log lines.
pub(super) fn resuming<F, Fut>(
    first: Chunks,
    policy: RetryPolicy,
    what: String,
    open_from: F,
) -> Chunks
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Rest, StoreError>> + Send + 'static,
{
    let state = Resuming {
        current: first,
        received: 0,
        skip: 0,
        reads: 1,
        policy,
        what,
        open_from,
    };
    Box::pin(stream::unfold(Some(state), |state| async move {
        state?.next().await
    }))
}

struct Resuming<F> {
    current: Chunks,
    /// Bytes passed on so far.
    received: u64,
    /// Bytes still to drop from the start of `current`.
    skip: u64,
    /// Requests made for the body, the first included.
    reads: u32,
    policy: RetryPolicy,
    what: String,
    open_from: F,
}

impl<F, Fut> Resuming<F>
where
    F: Fn(u64) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Rest, StoreError>> + Send,
{
    /// The next chunk to pass on, and the state after it; `None` at the end.
    async fn next(mut self) -> Option<(Result<Bytes, StoreError>, Option<Self>)> {
        loop {
            match self.current.next().await {
                None => return None,
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let dropped = self.skip.min(chunk.len() as u64);
                        self.skip -= dropped;
                        chunk = chunk.slice(dropped as usize..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    self.received += chunk.len() as u64;
                    return Some((Ok(chunk), Some(self)));
                }
                Some(Err(StoreError::Connection { source, .. }))
                    if self.reads < self.policy.attempts =>
                {
                    let delay = self.policy.delay(self.reads, None);
                    self.reads += 1;
                    tracing::info!(
                        "resuming {} at byte {} after its body broke off ({source}; read {} of {}) in {:.1} s",
                        self.what,
                        self.received,
                        self.reads,
                        self.policy.attempts,
                        delay.as_secs_f64()
                    );
                    tokio::time::sleep(delay).await;
                    match (self.open_from)(self.received).await {
                        Ok((rest, skip)) => {
                            self.current = rest;
                            self.skip = skip;
                        }
                        Err(error) => return Some((Err(error), None)),
                    }
                }
                Some(Err(mut error)) => {
                    if let StoreError::Connection { attempts, .. } = &mut error {
                        *attempts = self.reads;
                    }
                    return Some((Err(error), None));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const POLICY: RetryPolicy = RetryPolicy {
        attempts: 3,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// A broken connection, as reqwest reports one.
    async fn broken() -> StoreError {
        let source = reqwest::Client::new()
            .get("http://127.0.0.1:1/")
            .send()
            .await
            .expect_err("nothing listens on port 1");
        StoreError::Connection {
            method: "GET".into(),
            url: "http://127.0.0.1:1/".into(),
            attempts: 1,
            source,
        }
    }

    fn parts(parts: Vec<Result<&'static [u8], StoreError>>) -> Chunks {
        Box::pin(stream::iter(
            parts
                .into_iter()
                .map(|part| part.map(Bytes::from_static))
                .collect::<Vec<_>>(),
        ))
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_goes_on_from_where_it_stopped() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let first = parts(vec![Ok(b"hello "), Err(broken().await)]);
        let seen = Arc::clone(&asked);
        let second_error = broken().await;
        let second_error = Arc::new(Mutex::new(Some(second_error)));
        let resumed = resuming(first, POLICY, "a blob".into(), move |offset| {
            seen.lock().expect("lock").push(offset);
            let error = second_error.lock().expect("lock").take();
            async move {
                Ok(match (offset, error) {
                    // The second read breaks off too, after one more byte.
                    (6, Some(error)) => (parts(vec![Ok(b"w"), Err(error)]), 0),
                    // The last read ignores the range: the whole blob again, the first 7 bytes dropped.
                    _ => (parts(vec![Ok(b"hel"), Ok(b"lo world")]), offset),
                })
            }
        });
        let whole: Vec<Bytes> = resumed.try_collect().await.expect("the whole blob");
        assert_eq!(whole.concat(), b"hello world");
        assert_eq!(*asked.lock().expect("lock"), [6, 7]);
    }

    #[tokio::test]
    async fn a_body_that_keeps_breaking_off_fails_naming_its_reads() {
        let first = parts(vec![Err(broken().await)]);
        let resumed = resuming(first, POLICY, "a blob".into(), |_| async {
            Ok((parts(vec![Err(broken().await)]), 0))
        });
        let error = resumed
            .try_collect::<Vec<Bytes>>()
            .await
            .expect_err("no read gets through");
        assert!(
            matches!(error, StoreError::Connection { attempts: 3, .. }),
            "{error}"
        );
    }
}
