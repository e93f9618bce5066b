//! Registry authentication: the `WWW-Authenticate` challenge, what a request sends to answer it (basic
//! credentials or a bearer token fetched from the realm it names), and tokens cached per registry, repository
//! and scope.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};

use super::credentials::Credential;
use super::transport::authority;
use super::{Host, RegistryClient, WholeBody};
use crate::store::error::StoreError;

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="…",service="…",scope="repository:a:pull,push"`; quoted values
/// may hold commas.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let parameters = parse_parameters(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: parameters.get("realm")?.clone(),
            service: parameters.get("service").cloned(),
            scope: parameters.get("scope").cloned(),
        }),
        _ => None,
    }
}

fn parse_parameters(text: &str) -> BTreeMap<String, String> {
    let mut parameters = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let name = name
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        parameters.insert(name, value.to_owned());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    parameters
}

/// The scope of a repository operation, as token servers expect it.
pub fn repository_scope(repository: &str, push: bool) -> String {
    let actions = if push { "pull,push" } else { "pull" };
    format!("repository:{repository}:{actions}")
}

/// A token server's answer; registries use either field name.
#[derive(Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self.token.or(self.access_token)?;
        // The token spec's default lifetime is 60 s; renew a little early so a token never expires in flight.
        let lifetime = Duration::from_secs(self.expires_in.unwrap_or(60).max(10));
        Some((token, lifetime.mul_f64(0.9)))
    }
}

/// Tokens by (registry, scope): a scope names its repository, so one token serves every request of that
/// repository and operation until it nears expiry.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl TokenCache {
    pub async fn get(&self, registry: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().await;
        let (token, expires) = tokens.get(&(registry.to_owned(), scope.to_owned()))?;
        (Instant::now() < *expires).then(|| token.clone())
    }

    pub async fn put(&self, registry: &str, scope: &str, token: String, lifetime: Duration) {
        let expires = Instant::now() + lifetime;
        self.tokens
            .lock()
            .await
            .insert((registry.to_owned(), scope.to_owned()), (token, expires));
    }
}

/// How a request proves who it is.
#[derive(Clone)]
pub enum Authorization {
    Anonymous,
    Basic(Credential),
    Bearer(String),
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic(credential) => write!(f, "Basic({credential:?})"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// A token server's answer is a small JSON object, read as part of its request so that one that breaks off is
/// asked for again.
const TOKEN_ANSWER: WholeBody = WholeBody {
    limit: 64 * 1024,
    what: "a token",
};

impl RegistryClient {
    /// What to send with a request: basic credentials, a cached or newly fetched bearer token, or nothing.
    /// `fresh_challenge` (from a 401) forces a new token for the scope it names.
    pub(super) async fn authorization(
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
                    Some(TOKEN_ANSWER),
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
                    Some(TOKEN_ANSWER),
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
        let body = reply.bytes(TOKEN_ANSWER.limit, TOKEN_ANSWER.what).await?;
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
}

/// `builder` carrying `authorization`.
pub(super) fn with_authorization(
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

/// The challenge of a 401 answer, if it names one this client can answer.
pub(super) fn challenge_of(response: &Response) -> Option<Challenge> {
    if response.status() != StatusCode::UNAUTHORIZED {
        return None;
    }
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(parse_challenge)
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges_of_real_registries() {
        let docker_hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#;
        assert_eq!(
            parse_challenge(docker_hub),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:samalba/my-app:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://ghcr.io/token", service="ghcr.io""#),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "a bearer challenge needs a realm"
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[tokio::test]
    async fn tokens_are_cached_per_registry_and_scope_until_they_near_expiry() {
        let cache = TokenCache::default();
        cache
            .put(
                "r",
                "repository:a:pull",
                "t1".into(),
                Duration::from_secs(60),
            )
            .await;
        cache
            .put("r", "repository:b:pull", "t2".into(), Duration::ZERO)
            .await;
        assert_eq!(
            cache.get("r", "repository:a:pull").await.as_deref(),
            Some("t1")
        );
        assert_eq!(cache.get("r", "repository:a:pull,push").await, None);
        assert_eq!(cache.get("other", "repository:a:pull").await, None);
        assert_eq!(cache.get("r", "repository:b:pull").await, None, "expired");
        let response: TokenResponse =
            serde_json::from_str(r#"{"access_token":"x","expires_in":300}"#).expect("parses");
        assert_eq!(
            response.into_token(),
            Some(("x".into(), Duration::from_secs(270)))
        );
    }
}
