//! The OCI Distribution registry client: one HTTP client per process, shared by every registry it talks to,
//! with the scheme and authentication of each registry learned once, tokens cached, retries with backoff, and a
//! bound on the requests in flight.

mod auth;
pub mod credentials;
mod deadline;
mod reply;
mod retry;
mod store;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::sync::{Mutex, OnceCell, Semaphore};
use tokio::time::Instant;

use self::auth::{Authorization, Challenge, TokenCache, TokenResponse};
pub use self::credentials::{Credential, CredentialError, CredentialSource};
use self::deadline::Deadline;
pub use self::deadline::{StageDeadline, TimeLimit, Timeouts};
pub(crate) use self::reply::Reply;
pub use self::retry::{RetryPolicy, is_retryable};
pub use self::store::RegistryStore;
use super::error::StoreError;

/// A token server's answer is a small JSON object.
const TOKEN_ANSWER_LIMIT: usize = 64 * 1024;

/// How the client behaves; built from the global flags.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Hosts that may be reached over plain HTTP or unverified TLS, besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// PEM files of CAs to trust besides the system's.
    pub ca_certificates: Vec<PathBuf>,
    pub credentials: CredentialSource,
    /// At most this many requests at once, over all registries.
    pub max_in_flight: usize,
    pub retry: RetryPolicy,
    /// Blobs larger than this are uploaded in chunks of this size.
    pub chunk_size: usize,
    pub timeouts: Timeouts,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            ca_certificates: Vec::new(),
            credentials: CredentialSource::default(),
            max_in_flight: 16,
            retry: RetryPolicy::default(),
            chunk_size: 16 * 1024 * 1024,
            timeouts: Timeouts::default(),
        }
    }
}

/// What the client learned about a registry host from `GET /v2/`.
#[derive(Debug, Clone)]
struct Host {
    /// `https://host` or `http://host`.
    base_url: String,
    /// Reached with the client that does not verify TLS (`--insecure-registry`).
    unverified: bool,
    challenge: Option<Challenge>,
    credential: Option<Credential>,
}

/// One request, replayable for retries and after an authentication challenge.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub host: &'a str,
    /// A path below the host (`/v2/…`) or an absolute URL (an upload `Location`).
    pub target: String,
    /// Token scopes, space-separated (`repository:a:pull,push repository:b:pull`).
    pub scope: String,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

pub struct RegistryClient {
    verified: reqwest::Client,
    /// Only for `--insecure-registry` hosts, as Docker does: their TLS certificates are not checked.
    unverified: reqwest::Client,
    settings: ClientSettings,
    hosts: Mutex<HashMap<String, Arc<OnceCell<Host>>>>,
    tokens: TokenCache,
    /// Per host: whether it has the referrers API (learned on first use).
    referrers: Mutex<HashMap<String, bool>>,
    in_flight: Semaphore,
    requests: AtomicU64,
}

impl RegistryClient {
    pub fn new(settings: ClientSettings) -> Result<Self, StoreError> {
        let idle = settings.timeouts.attempt;
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("imagepipe/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                // A connection that goes quiet this long is dead; the deadlines bound the slow-but-alive.
                .read_timeout(idle)
                // Redirects to blob storage must not carry the registry's credentials; reqwest drops the
                // Authorization header on a redirect to another host.
                .redirect(reqwest::redirect::Policy::limited(5))
        };
        let mut verified = builder();
        for file in &settings.ca_certificates {
            let pem = std::fs::read(file).map_err(|source| StoreError::Io {
                operation: "reading the CA certificate",
                path: file.clone(),
                source,
            })?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(StoreError::Client)?;
            for certificate in certificates {
                verified = verified.add_root_certificate(certificate);
            }
        }
        Ok(Self {
            verified: verified.build().map_err(StoreError::Client)?,
            unverified: builder()
                .danger_accept_invalid_certs(true)
                .build()
                .map_err(StoreError::Client)?,
            in_flight: Semaphore::new(settings.max_in_flight.max(1)),
            settings,
            hosts: Mutex::default(),
            tokens: TokenCache::default(),
            referrers: Mutex::default(),
            requests: AtomicU64::new(0),
        })
    }

    /// HTTP requests sent so far, token requests included: for benchmarks and summaries.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether `host` (`name[:port]`) was given with `--insecure-registry`, with or without its port.
    fn is_insecure(&self, host: &str) -> bool {
        let name = host_name(host);
        self.settings
            .insecure_registries
            .iter()
            .any(|allowed| allowed == host || allowed == name)
    }

    fn may_use_plain_http(&self, host: &str) -> bool {
        is_loopback(host) || self.is_insecure(host)
    }

    /// The client for a host: the one that does not verify TLS only for `--insecure-registry` hosts.
    fn client_for(&self, host: &str) -> &reqwest::Client {
        if self.is_insecure(host) {
            &self.unverified
        } else {
            &self.verified
        }
    }

    /// Refuses a URL a registry named (token realm, upload location) that is plain HTTP to a host that may not
    /// be reached that way: credentials and content would cross the network in clear text.
    fn require_secure(
        &self,
        registry: &str,
        what: &'static str,
        url: &Url,
    ) -> Result<(), StoreError> {
        if url.scheme() == "https"
            || (url.scheme() == "http" && self.may_use_plain_http(&authority(url)))
        {
            return Ok(());
        }
        Err(StoreError::PlainHttp {
            registry: registry.to_owned(),
            what,
            url: url.to_string(),
        })
    }

    async fn host(&self, host: &str) -> Result<Host, StoreError> {
        let cell = {
            let mut hosts = self.hosts.lock().await;
            hosts.entry(host.to_owned()).or_default().clone()
        };
        cell.get_or_try_init(|| self.discover(host)).await.cloned()
    }

    /// `GET /v2/` over HTTPS, then (for loopback and `--insecure-registry` hosts) plain HTTP: learns the
    /// scheme and the authentication challenge. A certificate that is not trusted ends discovery: the host
    /// speaks TLS, and falling back to plain HTTP would only hide why it failed.
    async fn discover(&self, host: &str) -> Result<Host, StoreError> {
        let unverified = self.is_insecure(host);
        let client = self.client_for(host);
        let mut schemes = vec!["https"];
        if self.may_use_plain_http(host) {
            schemes.push("http");
        }
        let deadline = self.settings.timeouts.request_deadline(0);
        let mut last_error = None;
        for (index, scheme) in schemes.iter().enumerate() {
            let base_url = format!("{scheme}://{host}");
            let url = format!("{base_url}/v2/");
            let last_scheme = index + 1 == schemes.len();
            let attempts = if last_scheme {
                self.settings.retry.attempts
            } else {
                1
            };
            match self
                .send_with_retries(client, &Method::GET, &url, attempts, deadline, |request| {
                    request
                })
                .await
            {
                Ok(reply) => {
                    let challenge = challenge_of(&reply.response);
                    let credential =
                        self.settings
                            .credentials
                            .lookup(host)
                            .await
                            .map_err(|source| StoreError::Credentials {
                                registry: host.to_owned(),
                                source: Box::new(source),
                            })?;
                    tracing::debug!("{host}: {base_url}, challenge {challenge:?}");
                    return Ok(Host {
                        base_url,
                        unverified,
                        challenge,
                        credential,
                    });
                }
                Err(StoreError::Connection { source, .. })
                    if *scheme == "https" && is_untrusted_certificate(&source) =>
                {
                    return Err(StoreError::UntrustedCertificate {
                        registry: host.to_owned(),
                        source,
                    });
                }
                Err(error) => {
                    tracing::debug!("{url}: {error}");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| unreachable!("at least one scheme is tried")))
    }

    /// Sends a request that needs no authentication, retrying transient failures within `deadline`.
    async fn send_with_retries(
        &self,
        client: &reqwest::Client,
        method: &Method,
        url: &str,
        attempts: u32,
        mut deadline: Deadline,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Reply, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .transmit(decorate(client.request(method.clone(), url)), &mut deadline)
                .await;
            let outcome = self
                .after_attempt(method, url, attempt, attempts, deadline, sent)
                .await?;
            if let Some(response) = outcome {
                return Ok(reply(response, method, url, deadline));
            }
        }
    }

    /// Sends one attempt within the bound on requests in flight, counting it. Waiting for a free slot counts
    /// against the stage's deadline only, so the request's own time starts when it is sent; an attempt with no
    /// answer by its attempt deadline is abandoned as stalled.
    async fn transmit(
        &self,
        request: reqwest::RequestBuilder,
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
        let answer_by = self.settings.timeouts.attempt_deadline(*deadline);
        match tokio::time::timeout_at(answer_by, request.send()).await {
            Ok(sent) => sent.map_err(AttemptFailure::Connection),
            Err(_) => Err(AttemptFailure::Stalled),
        }
    }

    /// Decides what an attempt's outcome means: a response to return, or `None` to try again (after the
    /// backoff, which this waits out), or the final error. No wait runs past `deadline`.
    async fn after_attempt(
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
                let reason = failure.reason(self.settings.timeouts.attempt);
                if Instant::now() >= deadline.at {
                    return Err(timed_out(method, url, deadline, reason, attempt));
                }
                match failure {
                    AttemptFailure::Connection(source) if attempt >= attempts => {
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

    /// Sends an authenticated request: answers a 401 challenge once (token or basic credentials), retries
    /// transient failures, and returns whatever final answer the registry gave. Credentials go only to the
    /// registry itself: an absolute target (an upload `Location`) on another scheme, host or port gets none.
    pub(crate) async fn send(&self, request: &Request<'_>) -> Result<Reply, StoreError> {
        let host = self.host(request.host).await?;
        let client = if host.unverified {
            &self.unverified
        } else {
            &self.verified
        };
        let absolute =
            request.target.starts_with("http://") || request.target.starts_with("https://");
        let (url, own_origin) = if absolute {
            let parsed = Url::parse(&request.target).map_err(|_| StoreError::Status {
                method: request.method.to_string(),
                url: request.target.clone(),
                status: 0,
                code: None,
                message: "the registry named a URL that does not parse".to_owned(),
                attempts: 0,
            })?;
            self.require_secure(request.host, "upload location", &parsed)?;
            let own_origin =
                Url::parse(&host.base_url).is_ok_and(|base| base.origin() == parsed.origin());
            if !own_origin {
                tracing::debug!(
                    "{} {}: not {}, so no credentials are sent",
                    request.method,
                    request.target,
                    host.base_url
                );
            }
            (request.target.clone(), own_origin)
        } else {
            (format!("{}{}", host.base_url, request.target), true)
        };
        let attempts = self.settings.retry.attempts;
        let body_bytes = request.body.as_ref().map_or(0, |body| body.len() as u64);
        let mut deadline = self.settings.timeouts.request_deadline(body_bytes);
        let mut authorization = if own_origin {
            self.authorization(request.host, &host, &request.scope, None)
                .await?
        } else {
            Authorization::Anonymous
        };
        let mut challenged = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = {
                let mut builder = client
                    .request(request.method.clone(), &url)
                    .headers(request.headers.clone());
                builder = with_authorization(builder, &authorization);
                if let Some(body) = &request.body {
                    builder = builder.body(body.clone());
                }
                self.transmit(builder, &mut deadline).await
            };
            if let Ok(response) = &sent {
                if response.status() == StatusCode::UNAUTHORIZED {
                    let challenge = challenge_of(response).filter(|_| own_origin);
                    if challenged || challenge.is_none() {
                        return Err(StoreError::Unauthorized {
                            registry: request.host.to_owned(),
                            user: host
                                .credential
                                .as_ref()
                                .and_then(|credential| credential.username().map(str::to_owned)),
                        });
                    }
                    // The registry wants (another) token for this scope: get it and try once more.
                    challenged = true;
                    attempt -= 1;
                    authorization = self
                        .authorization(request.host, &host, &request.scope, challenge)
                        .await?;
                    continue;
                }
            }
            if let Some(response) = self
                .after_attempt(&request.method, &url, attempt, attempts, deadline, sent)
                .await?
            {
                return Ok(reply(response, &request.method, &url, deadline));
            }
        }
    }

    /// What to send with a request: basic credentials, a cached or newly fetched bearer token, or nothing.
    /// `fresh_challenge` (from a 401) forces a new token for the scope it names.
    async fn authorization(
        &self,
        registry: &str,
        host: &Host,
        scope: &str,
        fresh_challenge: Option<Challenge>,
    ) -> Result<Authorization, StoreError> {
        let forced = fresh_challenge.is_some();
        let challenge = fresh_challenge.or_else(|| host.challenge.clone());
        match challenge {
            None => Ok(Authorization::Anonymous),
            Some(Challenge::Basic) => Ok(host
                .credential
                .clone()
                .map_or(Authorization::Anonymous, Authorization::Basic)),
            Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) => {
                let scope = match asked {
                    Some(asked) if forced && !scope.contains(&asked) => format!("{scope} {asked}"),
                    _ => scope.to_owned(),
                };
                if !forced {
                    if let Some(token) = self.tokens.get(registry, &scope).await {
                        return Ok(Authorization::Bearer(token));
                    }
                }
                let (token, lifetime) = self
                    .fetch_token(registry, host, &realm, service.as_deref(), &scope)
                    .await?;
                self.tokens
                    .put(registry, &scope, token.clone(), lifetime)
                    .await;
                Ok(Authorization::Bearer(token))
            }
        }
    }

    /// Asks the realm for a token: `GET` with basic credentials, or the OAuth2 `POST` with a refresh token. The
    /// realm obeys the registry's own TLS rule: plain HTTP only on loopback or an `--insecure-registry` host.
    async fn fetch_token(
        &self,
        registry: &str,
        host: &Host,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, Duration), StoreError> {
        let realm_url = Url::parse(realm).map_err(|_| StoreError::Status {
            method: "GET".into(),
            url: realm.to_owned(),
            status: 0,
            code: None,
            message: format!("{registry} named a token realm that is not a URL"),
            attempts: 0,
        })?;
        self.require_secure(registry, "token realm", &realm_url)?;
        let client = self.client_for(&authority(&realm_url));
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        for one in scope.split_whitespace() {
            query.push(("scope", one));
        }
        let deadline = self.settings.timeouts.request_deadline(0);
        let reply = match &host.credential {
            Some(Credential::IdentityToken(refresh_token)) => {
                let mut form = query.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.as_str()),
                    ("client_id", "imagepipe"),
                ]);
                self.send_with_retries(
                    client,
                    &Method::POST,
                    realm,
                    self.settings.retry.attempts,
                    deadline,
                    |request| request.form(&form),
                )
                .await?
            }
            credential => {
                self.send_with_retries(
                    client,
                    &Method::GET,
                    realm,
                    self.settings.retry.attempts,
                    deadline,
                    |request| {
                        let request = request.query(&query);
                        match credential {
                            Some(Credential::Basic { username, password }) => {
                                request.basic_auth(username, Some(password))
                            }
                            _ => request,
                        }
                    },
                )
                .await?
            }
        };
        if matches!(
            reply.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(StoreError::Unauthorized {
                registry: registry.to_owned(),
                user: host
                    .credential
                    .as_ref()
                    .and_then(|credential| credential.username().map(str::to_owned)),
            });
        }
        if !reply.status().is_success() {
            return Err(reply.into_error(1).await);
        }
        let body = reply.bytes(TOKEN_ANSWER_LIMIT, "a token").await?;
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| StoreError::Status {
                method: "GET".into(),
                url: realm.to_owned(),
                status: 200,
                code: None,
                message: "the token server's answer holds no token".into(),
                attempts: 1,
            })
    }

    /// Whether a host has the referrers API; learned on the first call and remembered.
    async fn has_referrers(&self, host: &str) -> Option<bool> {
        self.referrers.lock().await.get(host).copied()
    }

    async fn remember_referrers(&self, host: &str, available: bool) {
        self.referrers
            .lock()
            .await
            .insert(host.to_owned(), available);
    }
}

fn with_authorization(
    builder: reqwest::RequestBuilder,
    authorization: &Authorization,
) -> reqwest::RequestBuilder {
    match authorization {
        Authorization::Anonymous => builder,
        Authorization::Basic(Credential::Basic { username, password }) => {
            builder.basic_auth(username, Some(password))
        }
        // A refresh token is only good at the token endpoint.
        Authorization::Basic(Credential::IdentityToken(_)) => builder,
        Authorization::Bearer(token) => match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(mut value) => {
                value.set_sensitive(true);
                builder.header(AUTHORIZATION, value)
            }
            Err(_) => builder,
        },
    }
}

fn challenge_of(response: &Response) -> Option<Challenge> {
    if response.status() != StatusCode::UNAUTHORIZED {
        return None;
    }
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(auth::parse_challenge)
        .next()
}

/// Why an attempt got no answer.
enum AttemptFailure {
    Connection(reqwest::Error),
    /// Nothing came back by the attempt's deadline.
    Stalled,
}

impl AttemptFailure {
    fn reason(&self, attempt_limit: Duration) -> String {
        match self {
            Self::Connection(error) => connection_failure(error),
            Self::Stalled => format!(
                "no answer within {}",
                humantime::format_duration(attempt_limit)
            ),
        }
    }
}

fn reply(response: Response, method: &Method, url: &str, deadline: Deadline) -> Reply {
    Reply {
        response,
        method: method.clone(),
        url: url.to_owned(),
        deadline,
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

/// Whether a failed HTTPS attempt failed on the server's certificate. rustls's error reaches us only as the text
/// of the I/O error that carries it (`io::Error::source` skips the error it wraps), so the chain's text is read.
fn is_untrusted_certificate(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.to_string().contains("certificate") {
            return true;
        }
        cause = current.source();
    }
    false
}

/// `host[:port]` of a URL, as registries are named.
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The host name of `host[:port]` or `[v6]:port`.
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
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

/// Loopback registries may be plain HTTP, like Docker allows: `localhost`, `127.0.0.0/8`, `::1`.
pub fn is_loopback(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|address| match address {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
            v4 => v4.is_loopback(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "registry.example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[2001:db8::1]:5000",
            "0.0.0.0:5000",
            "[::ffff:10.0.0.1]",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
