//! The OCI Distribution registry client: one HTTP client per process, shared by every registry it talks to,
//! with the scheme and authentication of each registry learned once, tokens cached, retries with backoff, and a
//! bound on the requests in flight.

mod attempt;
mod auth;
pub mod credentials;
mod deadline;
mod reply;
mod resume;
mod retry;
mod store;
mod transport;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use tokio::sync::{Mutex, OnceCell, Semaphore};

use self::auth::{Authorization, Challenge, TokenCache, challenge_of, with_authorization};
pub use self::credentials::{Credential, CredentialError, CredentialSource};
pub use self::deadline::{StageDeadline, TimeLimit, Timeouts};
pub(crate) use self::reply::{Reply, WholeBody};
pub use self::retry::{RetryPolicy, is_retryable};
pub use self::store::RegistryStore;
pub use self::transport::is_loopback;
use self::transport::{authority, is_untrusted_certificate};
use super::error::StoreError;

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
            // Stages keep this many busy: against a registry 40 ms away, 64 in flight is 1,600 requests a
            // second, and a connection each costs little.
            max_in_flight: 64,
            retry: RetryPolicy::default(),
            chunk_size: 16 * 1024 * 1024,
            timeouts: Timeouts::default(),
        }
    }
}

/// Upload bodies are gathered in memory before they are sent (a chunk, or a small blob whole); all uploads
/// together hold at most this many KiB, so many concurrent copies of large layers stay in bounded memory: two
/// large uploads at a time, each holding two chunks (16 MiB by default).
const UPLOAD_BUFFER_KIB: usize = 96 * 1024;

/// What the client learned about a registry host from `GET /v2/`.
#[derive(Debug, Clone)]
struct Host {
    /// `https://host` or `http://host`.
    base_url: String,
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
    /// Read a successful answer's body whole as part of the request, so that a body that breaks off is asked
    /// for again like any failed attempt.
    pub whole: Option<WholeBody>,
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
    /// Kibibytes of upload bodies held in memory at once (see [`UPLOAD_BUFFER_KIB`]).
    upload_buffers: Semaphore,
    /// Held while learning whether a host has the referrers API, so that one request asks, not one per caller.
    referrers_probe: Mutex<()>,
    requests: AtomicU64,
}

impl RegistryClient {
    pub fn new(settings: ClientSettings) -> Result<Self, StoreError> {
        let idle = settings.timeouts.attempt_limit();
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
            upload_buffers: Semaphore::new(UPLOAD_BUFFER_KIB),
            referrers_probe: Mutex::default(),
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
                .send_with_retries(
                    client,
                    &Method::GET,
                    &url,
                    attempts,
                    deadline,
                    None,
                    |request| request,
                )
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

    /// Sends an authenticated request: answers a 401 challenge once (token or basic credentials), retries
    /// transient failures, and returns whatever final answer the registry gave. Credentials go only to the
    /// registry itself: an absolute target (an upload `Location`) on another scheme, host or port gets none.
    pub(crate) async fn send(&self, request: &Request<'_>) -> Result<Reply, StoreError> {
        let host = self.host(request.host).await?;
        let absolute =
            request.target.starts_with("http://") || request.target.starts_with("https://");
        let (url, own_origin, client) = if absolute {
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
            // TLS is checked by the rule of the host the URL names, not the registry's.
            let client = self.client_for(&authority(&parsed));
            (request.target.clone(), own_origin, client)
        } else {
            let client = self.client_for(request.host);
            (format!("{}{}", host.base_url, request.target), true, client)
        };
        let attempts = self.settings.retry.attempts;
        let body_bytes = request.body.as_ref().map_or(0, |body| body.len() as u64);
        let (method, whole) = (&request.method, request.whole);
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
                self.transmit(builder, body_bytes, &mut deadline).await
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
                .after_attempt(method, &url, attempt, attempts, deadline, sent)
                .await?
            {
                let finished = self
                    .finish(response, method, &url, attempt, attempts, deadline, whole)
                    .await?;
                if let Some(reply) = finished {
                    return Ok(reply);
                }
            }
        }
    }

    /// Room for `bytes` of upload body, held until the upload ends.
    async fn upload_buffer(
        &self,
        bytes: usize,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, tokio::sync::AcquireError> {
        let kib = bytes.div_ceil(1024).clamp(1, UPLOAD_BUFFER_KIB);
        self.upload_buffers
            .acquire_many(u32::try_from(kib).unwrap_or(u32::MAX))
            .await
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
