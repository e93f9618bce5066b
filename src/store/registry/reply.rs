//! A registry's answer to one request, read within bounds: never more bytes than the caller expects (checked
//! against the announced length before reading, and again while reading), never past the request's deadline,
//! and never a buffer sized by a number the peer sent. A body the caller reads whole can be read as part of the
//! request ([`WholeBody`]), so that one that breaks off counts as a failed attempt and is asked for again.

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, Stream};
use reqwest::header::{CONTENT_LENGTH, HeaderMap};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;

use super::deadline::{Deadline, Timeouts};
use crate::store::error::{ErrorCode, StoreError};

/// At most this much of an error answer is read, for its message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Buffers start at most this large, whatever length the peer announces; they grow with what really arrives.
const INITIAL_BUFFER_LIMIT: usize = 64 * 1024;

/// An answer and the request it answers.
pub(crate) struct Reply {
    pub response: Response,
    pub method: Method,
    pub url: String,
    /// When the request, body included, must be done.
    pub deadline: Deadline,
    /// The body, when it was read as part of the request ([`WholeBody`]).
    pub body: Option<Bytes>,
}

/// A successful answer's body read whole as part of its request, at most `limit` bytes of `what`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WholeBody {
    pub limit: usize,
    pub what: &'static str,
}

/// Why a body read as part of its request was not read.
pub(crate) enum BodyFailure {
    /// The connection broke off or went quiet part-way: worth another attempt of the whole request.
    Broken(reqwest::Error),
    /// Anything else (too large, the request's deadline passed): final.
    Final(StoreError),
}

/// The OCI error envelope.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    code: String,
    #[serde(default)]
    message: String,
}

impl Reply {
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The `Content-Length` header itself: for a HEAD answer, reqwest's `content_length()` is the length of the
    /// (empty) body it received.
    pub fn declared_length(&self) -> Option<u64> {
        self.headers()
            .get(CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Reads a successful answer's body whole when `whole` asks for it, keeping it in the reply for
    /// [`Reply::bytes`]; other answers are left as they are.
    pub async fn buffered(mut self, whole: Option<WholeBody>) -> Result<Self, BodyFailure> {
        let Some(WholeBody { limit, what }) = whole else {
            return Ok(self);
        };
        if !self.status().is_success() {
            return Ok(self);
        }
        match self.read_body(limit, what).await {
            Ok(body) => {
                self.body = Some(body);
                Ok(self)
            }
            Err(StoreError::Connection { source, .. }) => Err(BodyFailure::Broken(source)),
            Err(error) => Err(BodyFailure::Final(error)),
        }
    }

    /// The whole body, refused when it is longer than `limit` bytes: before reading when the length is
    /// announced, else as soon as more arrives.
    pub async fn bytes(mut self, limit: usize, what: &'static str) -> Result<Bytes, StoreError> {
        match self.body.take() {
            Some(body) if body.len() > limit => Err(self.too_large(limit, what)),
            Some(body) => Ok(body),
            None => self.read_body(limit, what).await,
        }
    }

    fn too_large(&self, limit: usize, what: &'static str) -> StoreError {
        StoreError::TooLarge {
            url: self.url.clone(),
            what,
            limit,
        }
    }

    async fn read_body(&mut self, limit: usize, what: &'static str) -> Result<Bytes, StoreError> {
        if self
            .declared_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(self.too_large(limit, what));
        }
        let capacity = self
            .declared_length()
            .map_or(0, |length| length.min(INITIAL_BUFFER_LIMIT as u64) as usize);
        let mut body = BytesMut::with_capacity(capacity);
        loop {
            let chunk = tokio::time::timeout_at(self.deadline.at, self.response.chunk())
                .await
                .map_err(|_| StoreError::TimedOut {
                    method: self.method.to_string(),
                    url: self.url.clone(),
                    limit: self.deadline.limit,
                    last: Some("reading the answer".to_owned()),
                })?
                .map_err(|source| StoreError::Connection {
                    method: self.method.to_string(),
                    url: self.url.clone(),
                    attempts: 1,
                    source,
                })?;
            let Some(chunk) = chunk else {
                return Ok(body.freeze());
            };
            if body.len() + chunk.len() > limit {
                return Err(self.too_large(limit, what));
            }
            body.extend_from_slice(&chunk);
        }
    }

    /// The body as a stream of chunks, each read before the deadline, extended for a body of `expected_bytes`.
    pub fn chunks(
        self,
        timeouts: &Timeouts,
        expected_bytes: u64,
    ) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
        let deadline = timeouts.extended(self.deadline, expected_bytes);
        let (method, url) = (self.method.to_string(), self.url);
        stream::unfold(Some(self.response), move |state| {
            let (method, url) = (method.clone(), url.clone());
            async move {
                let mut response = state?;
                match tokio::time::timeout_at(deadline.at, response.chunk()).await {
                    Ok(Ok(Some(chunk))) => Some((Ok(chunk), Some(response))),
                    Ok(Ok(None)) => None,
                    Ok(Err(source)) => Some((
                        Err(StoreError::Connection {
                            method,
                            url,
                            attempts: 1,
                            source,
                        }),
                        None,
                    )),
                    Err(_) => Some((
                        Err(StoreError::TimedOut {
                            method,
                            url,
                            limit: deadline.limit,
                            last: Some("reading the body".to_owned()),
                        }),
                        None,
                    )),
                }
            }
        })
    }

    /// The error for an answer that is not what the operation needed, with the OCI error code when the
    /// registry sent its error envelope.
    pub async fn into_error(self, attempts: u32) -> StoreError {
        let (method, url) = (self.method.to_string(), self.url.clone());
        let status = self.status().as_u16();
        let body = self
            .bytes(ERROR_BODY_LIMIT, "an error message")
            .await
            .unwrap_or_default();
        let envelope = serde_json::from_slice::<Envelope>(&body).ok();
        let first = envelope.and_then(|envelope| envelope.errors.into_iter().next());
        let (code, message) = match first {
            Some(error) => (Some(ErrorCode::parse(&error.code)), error.message),
            None => (
                None,
                String::from_utf8_lossy(&body[..body.len().min(200)])
                    .trim()
                    .to_owned(),
            ),
        };
        StoreError::Status {
            method,
            url,
            status,
            code,
            message,
            attempts,
        }
    }
}
