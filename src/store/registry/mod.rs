//! The OCI Distribution registry client: one HTTP client per process, shared by every registry it talks to,
//! with the scheme and authentication of each registry learned once, tokens cached, retries with backoff, and a
//! bound on the requests in flight.

mod auth;
pub mod credentials;
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
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::{Mutex, OnceCell, Semaphore};

use self::auth::{Authorization, Challenge, TokenCache, TokenResponse};
pub use self::credentials::{Credential, CredentialError, CredentialSource};
pub use self::retry::{RetryPolicy, is_retryable};
pub use self::store::RegistryStore;
use super::error::{ErrorCode, StoreError};

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
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("imagepipe/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(120))
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

    fn may_use_plain_http(&self, host: &str) -> bool {
        is_loopback(host)
            || self
                .settings
                .insecure_registries
                .iter()
                .any(|allowed| allowed == host)
    }

    async fn host(&self, host: &str) -> Result<Host, StoreError> {
        let cell = {
            let mut hosts = self.hosts.lock().await;
            hosts.entry(host.to_owned()).or_default().clone()
        };
        cell.get_or_try_init(|| self.discover(host)).await.cloned()
    }

    /// `GET /v2/` over HTTPS, then (for loopback and `--insecure-registry` hosts) plain HTTP: learns the
    /// scheme and the authentication challenge.
    async fn discover(&self, host: &str) -> Result<Host, StoreError> {
        let unverified = self
            .settings
            .insecure_registries
            .iter()
            .any(|allowed| allowed == host);
        let client = if unverified {
            &self.unverified
        } else {
            &self.verified
        };
        let mut schemes = vec!["https"];
        if self.may_use_plain_http(host) {
            schemes.push("http");
        }
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
                .send_with_retries(client, &Method::GET, &url, attempts, |request| request)
                .await
            {
                Ok(response) => {
                    let challenge = challenge_of(&response);
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
                Err(error) => {
                    tracing::debug!("{url}: {error}");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| unreachable!("at least one scheme is tried")))
    }

    /// Sends a request that needs no authentication, retrying transient failures.
    async fn send_with_retries(
        &self,
        client: &reqwest::Client,
        method: &Method,
        url: &str,
        attempts: u32,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .transmit(decorate(client.request(method.clone(), url)))
                .await;
            match self
                .after_attempt(method, url, attempt, attempts, sent)
                .await?
            {
                Some(response) => return Ok(response),
                None => continue,
            }
        }
    }

    /// Sends one request within the bound on requests in flight, counting it.
    async fn transmit(&self, request: reqwest::RequestBuilder) -> Result<Response, reqwest::Error> {
        let _permit = self.in_flight.acquire().await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        request.send().await
    }

    /// Decides what an attempt's outcome means: a response to return, or `None` to try again (after the
    /// backoff, which this waits out), or the final error.
    async fn after_attempt(
        &self,
        method: &Method,
        url: &str,
        attempt: u32,
        attempts: u32,
        sent: Result<Response, reqwest::Error>,
    ) -> Result<Option<Response>, StoreError> {
        let (retry_after, reason) = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                if !retry::is_retryable(status) || attempt >= attempts {
                    if retry::is_retryable(status) {
                        return Err(status_error(method, url, response, attempt).await);
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
            Err(source) => {
                if attempt >= attempts {
                    return Err(StoreError::Connection {
                        method: method.to_string(),
                        url: url.to_owned(),
                        attempts: attempt,
                        source,
                    });
                }
                (None, connection_failure(&source))
            }
        };
        let delay = self.settings.retry.delay(attempt, retry_after);
        tracing::info!(
            "retrying {method} {url} after {reason} (attempt {} of {attempts}) in {:.1} s",
            attempt + 1,
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
        Ok(None)
    }

    /// Sends an authenticated request: answers a 401 challenge once (token or basic credentials), retries
    /// transient failures, and returns whatever final response the registry gave.
    pub(crate) async fn send(&self, request: &Request<'_>) -> Result<Response, StoreError> {
        let host = self.host(request.host).await?;
        let client = if host.unverified {
            &self.unverified
        } else {
            &self.verified
        };
        let url = if request.target.starts_with("http://") || request.target.starts_with("https://")
        {
            request.target.clone()
        } else {
            format!("{}{}", host.base_url, request.target)
        };
        let attempts = self.settings.retry.attempts;
        let mut authorization = self
            .authorization(request.host, &host, &request.scope, None)
            .await?;
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
                self.transmit(builder).await
            };
            if let Ok(response) = &sent {
                if response.status() == StatusCode::UNAUTHORIZED {
                    let challenge = challenge_of(response);
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
                .after_attempt(&request.method, &url, attempt, attempts, sent)
                .await?
            {
                return Ok(response);
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

    /// Asks the realm for a token: `GET` with basic credentials, or the OAuth2 `POST` with a refresh token.
    async fn fetch_token(
        &self,
        registry: &str,
        host: &Host,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, Duration), StoreError> {
        let client = if host.unverified {
            &self.unverified
        } else {
            &self.verified
        };
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        for one in scope.split_whitespace() {
            query.push(("scope", one));
        }
        let response = match &host.credential {
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
            response.status(),
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
        if !response.status().is_success() {
            return Err(status_error(&Method::GET, realm, response, 1).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|source| StoreError::Connection {
                method: "GET".into(),
                url: realm.to_owned(),
                attempts: 1,
                source,
            })?;
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

/// The error for a response that is not what the operation needed, with the OCI error code when the registry
/// sent its error envelope.
pub(crate) async fn status_error(
    method: &Method,
    url: &str,
    response: Response,
    attempts: u32,
) -> StoreError {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
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
        method: method.to_string(),
        url: url.to_owned(),
        status,
        code,
        message,
        attempts,
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
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
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
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "registry.example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[2001:db8::1]:5000",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
