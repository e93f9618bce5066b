//! One request's attempts: each sent within the bound on requests in flight and its attempt deadline, retried
//! with backoff on connection failures, stalls, 429 and 5xx, and on bodies that break off or stall part-way
//! when the body is read as part of the request; none waiting past the request's deadline.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use reqwest::{Method, Response};
use tokio::time::Instant;

use super::deadline::Deadline;
use super::reply::{BodyFailure, Reply, WholeBody};
use super::{RegistryClient, retry};
use crate::store::error::StoreError;

impl RegistryClient {
    /// Sends a request that needs no authentication, retrying transient failures within `deadline`; with
    /// `whole`, a successful answer's body is read as part of it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_with_retries(
        &self,
        client: &reqwest::Client,
        method: &Method,
        url: &str,
        attempts: u32,
        mut deadline: Deadline,
        whole: Option<WholeBody>,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Reply, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .transmit(
                    decorate(client.request(method.clone(), url)),
                    0,
                    &mut deadline,
                )
                .await;
            let outcome = self
                .after_attempt(method, url, attempt, attempts, deadline, sent)
                .await?;
            if let Some(response) = outcome {
                let finished = self
                    .finish(response, method, url, attempt, attempts, deadline, whole)
                    .await?;
                if let Some(reply) = finished {
                    return Ok(reply);
                }
            }
        }
    }

    /// Turns an answer into the reply, reading its body first when `whole` asks for it. A body that breaks off
    /// or stalls part-way fails the attempt: `Ok(None)` after the backoff (waited out here) means "send the
    /// request again", as [`RegistryClient::after_attempt`] decides for any other failure.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish(
        &self,
        response: Response,
        method: &Method,
        url: &str,
        attempt: u32,
        attempts: u32,
        deadline: Deadline,
        whole: Option<WholeBody>,
    ) -> Result<Option<Reply>, StoreError> {
        match reply(response, method, url, deadline).buffered(whole).await {
            Ok(reply) => Ok(Some(reply)),
            Err(BodyFailure::Final(error)) => Err(error),
            Err(BodyFailure::Broken(source)) => {
                let failure = Err(AttemptFailure::BrokenBody(source));
                self.after_attempt(method, url, attempt, attempts, deadline, failure)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Sends one attempt within the bound on requests in flight, counting it. Waiting for a free slot counts
    /// against the stage's deadline only, so the request's own time starts when it is sent; an attempt with no
    /// answer by its attempt deadline (later for a request body of `body_bytes` to send) is abandoned as stalled.
    pub(super) async fn transmit(
        &self,
        request: reqwest::RequestBuilder,
        body_bytes: u64,
        deadline: &mut Deadline,
    ) -> Result<Response, AttemptFailure> {
        let queued = Instant::now();
        let stage_end = self.settings.timeouts.stage.map(|stage| stage.at);
        let permit = match stage_end {
            Some(end) => tokio::time::timeout_at(end, self.in_flight.acquire())
                .await
                .map_err(|_| AttemptFailure::Stalled)?,
            None => self.in_flight.acquire().await,
        };
        let _permit = permit;
        *deadline = self
            .settings
            .timeouts
            .postponed(*deadline, queued.elapsed());
        self.requests.fetch_add(1, Ordering::Relaxed);
        let answer_by = self
            .settings
            .timeouts
            .attempt_deadline(*deadline, body_bytes);
        match tokio::time::timeout_at(answer_by, request.send()).await {
            Ok(sent) => sent.map_err(AttemptFailure::Connection),
            Err(_) => Err(AttemptFailure::Stalled),
        }
    }

    /// Decides what an attempt's outcome means: a response to return, or `None` to try again (after the
    /// backoff, which this waits out), or the final error. No wait runs past `deadline`.
    pub(super) async fn after_attempt(
        &self,
        method: &Method,
        url: &str,
        attempt: u32,
        attempts: u32,
        deadline: Deadline,
        sent: Result<Response, AttemptFailure>,
    ) -> Result<Option<Response>, StoreError> {
        let (retry_after, reason) = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                if !retry::is_retryable(status) || attempt >= attempts {
                    if retry::is_retryable(status) {
                        return Err(reply(response, method, url, deadline)
                            .into_error(attempt)
                            .await);
                    }
                    return Ok(Some(response));
                }
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(retry::parse_retry_after);
                (retry_after, format!("{status}"))
            }
            Err(failure) => {
                let reason = failure.reason(self.settings.timeouts.attempt_limit());
                if Instant::now() >= deadline.at {
                    return Err(timed_out(method, url, deadline, reason, attempt));
                }
                match failure {
                    // Every attempt timing out is a stall, whose limit `--timeout` sets: say so.
                    AttemptFailure::Connection(source) | AttemptFailure::BrokenBody(source)
                        if attempt >= attempts && source.is_timeout() =>
                    {
                        return Err(timed_out(method, url, deadline, reason, attempt));
                    }
                    AttemptFailure::Connection(source) | AttemptFailure::BrokenBody(source)
                        if attempt >= attempts =>
                    {
                        return Err(StoreError::Connection {
                            method: method.to_string(),
                            url: url.to_owned(),
                            attempts: attempt,
                            source,
                        });
                    }
                    AttemptFailure::Stalled if attempt >= attempts => {
                        return Err(timed_out(method, url, deadline, reason, attempt));
                    }
                    _ => (None, reason),
                }
            }
        };
        let delay = self.settings.retry.delay(attempt, retry_after);
        if Instant::now() + delay >= deadline.at {
            return Err(timed_out(method, url, deadline, reason, attempt));
        }
        tracing::info!(
            "retrying {method} {url} after {reason} (attempt {} of {attempts}) in {:.1} s",
            attempt + 1,
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
        Ok(None)
    }
}

/// Why an attempt got no answer, or not all of it.
pub(super) enum AttemptFailure {
    Connection(reqwest::Error),
    /// Nothing came back by the attempt's deadline.
    Stalled,
    /// The answer's body, read as part of the request, broke off or went quiet part-way.
    BrokenBody(reqwest::Error),
}

impl AttemptFailure {
    fn reason(&self, attempt_limit: Duration) -> String {
        match self {
            Self::Connection(error) => connection_failure(error),
            Self::BrokenBody(error) if error.is_timeout() => format!(
                "an answer whose body stalled for {}",
                humantime::format_duration(attempt_limit)
            ),
            Self::BrokenBody(_) => "an answer whose body broke off".to_owned(),
            Self::Stalled => format!(
                "no answer within {}",
                humantime::format_duration(attempt_limit)
            ),
        }
    }
}

pub(super) fn reply(response: Response, method: &Method, url: &str, deadline: Deadline) -> Reply {
    Reply {
        response,
        method: method.clone(),
        url: url.to_owned(),
        deadline,
        body: None,
    }
}

fn timed_out(
    method: &Method,
    url: &str,
    deadline: Deadline,
    reason: String,
    attempt: u32,
) -> StoreError {
    StoreError::TimedOut {
        method: method.to_string(),
        url: url.to_owned(),
        limit: deadline.limit,
        last: Some(format!("{reason} on attempt {attempt}")),
    }
}

/// A short reason for a failed connection, for retry log lines.
fn connection_failure(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "a timeout".to_owned()
    } else if error.is_connect() {
        "a connection failure".to_owned()
    } else {
        "a broken connection".to_owned()
    }
}
