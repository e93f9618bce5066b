//! A real registry (distribution 2.8) with bearer-token auth, and the token server it trusts: the challenge,
//! both token flows (Basic-auth `GET`, OAuth 2 `POST` with password and refresh-token grants), scopes that
//! bind a token to one repository, and tokens the registry must refuse.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::token_server::{self, Anonymous, TokenServer, decode_jwt};
use common::{Credentials, Registry};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Client, Method, Response, StatusCode, Url};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const USER: &str = "alice";
const PASSWORD: &str = "t0ken-pass";
const REPOSITORY: &str = "acme/app";
const PUSH_PULL: &str = "repository:acme/app:pull,push";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len() })
}

/// A one-layer image: (layer, config, manifest).
fn image(label: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let layer = format!("layer of {label}\n").into_bytes();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&layer)] },
    })
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    })
    .to_string()
    .into_bytes();
    (layer, config, manifest)
}

/// Registry calls with `Authorization: Bearer <token>` (or none).
struct Session<'a> {
    client: Client,
    registry: &'a Registry,
    token: Option<String>,
}

impl<'a> Session<'a> {
    fn new(registry: &'a Registry, token: Option<&str>) -> Self {
        Self {
            client: Client::new(),
            registry,
            token: token.map(str::to_owned),
        }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&self.registry.url())
            .and_then(|base| base.join(path))
            .expect("registry URL")
    }

    async fn send(&self, method: Method, url: Url, body: Option<(&str, &[u8])>) -> Response {
        let mut request = self.client.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        // distribution 2.8 answers 404 for an OCI manifest to a client that does not accept the type.
        request = request.header(ACCEPT, OCI_MANIFEST);
        if let Some((content_type, bytes)) = body {
            request = request
                .header(CONTENT_TYPE, content_type)
                .body(bytes.to_vec());
        }
        request.send().await.expect("a registry request")
    }

    async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, self.url(path), None).await
    }

    async fn start_upload(&self, repository: &str) -> Response {
        let url = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        self.send(Method::POST, url, None).await
    }

    /// `POST …/blobs/uploads/` then a monolithic `PUT <Location>?digest=…`; asserts both succeed.
    async fn push_blob(&self, repository: &str, bytes: &[u8]) {
        let started = self.start_upload(repository).await;
        assert_eq!(
            started.status(),
            StatusCode::ACCEPTED,
            "starting an upload to {repository}; registry log:\n{}",
            self.registry.log()
        );
        let location = started.headers()[LOCATION]
            .to_str()
            .expect("Location header");
        let mut upload = self.url(location);
        upload
            .query_pairs_mut()
            .append_pair("digest", &sha256_digest(bytes));
        let finished = self
            .send(
                Method::PUT,
                upload,
                Some(("application/octet-stream", bytes)),
            )
            .await;
        assert_eq!(
            finished.status(),
            StatusCode::CREATED,
            "finishing an upload"
        );
    }

    async fn put_manifest(&self, repository: &str, tag: &str, manifest: &[u8]) -> Response {
        let url = self.url(&format!("/v2/{repository}/manifests/{tag}"));
        self.send(Method::PUT, url, Some((OCI_MANIFEST, manifest)))
            .await
    }

    /// Pushes [`image`]`(repository)` as `repository:v1` and reads the manifest back.
    async fn push_image(&self, repository: &str) {
        let (layer, config, manifest) = image(repository);
        self.push_blob(repository, &layer).await;
        self.push_blob(repository, &config).await;
        let pushed = self.put_manifest(repository, "v1", &manifest).await;
        assert_eq!(pushed.status(), StatusCode::CREATED, "pushing the manifest");
        let pulled = self.get(&format!("/v2/{repository}/manifests/v1")).await;
        assert_eq!(pulled.status(), StatusCode::OK, "pulling the manifest");
        assert_eq!(pulled.bytes().await.expect("manifest body"), manifest);
    }
}

/// `GET <realm>?service=…&scope=…` with optional Basic credentials.
async fn get_token(
    server: &TokenServer,
    scopes: &[&str],
    credentials: Option<&Credentials>,
    extra: &[(&str, &str)],
) -> Response {
    let mut url = Url::parse(&server.realm()).expect("realm URL");
    url.query_pairs_mut()
        .append_pair("service", token_server::SERVICE);
    for scope in scopes {
        url.query_pairs_mut().append_pair("scope", scope);
    }
    for (key, value) in extra {
        url.query_pairs_mut().append_pair(key, value);
    }
    let mut request = Client::new().get(url);
    if let Some(credentials) = credentials {
        request = request.basic_auth(&credentials.user, Some(&credentials.password));
    }
    request.send().await.expect("a token request")
}

/// `POST <realm>` with a form body.
async fn post_token(server: &TokenServer, form: &[(&str, &str)]) -> Response {
    Client::new()
        .post(server.realm())
        .form(form)
        .send()
        .await
        .expect("a token request")
}

async fn json_body(response: Response) -> Value {
    let body = response.bytes().await.expect("response body");
    serde_json::from_slice(&body)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(&body)))
}

/// The token of a successful token response, after checking the response's shape.
async fn token_of(response: Response) -> (String, Value) {
    assert_eq!(response.status(), StatusCode::OK, "a token response");
    let body = json_body(response).await;
    let token = body["token"].as_str().expect("a token").to_owned();
    assert_eq!(body["access_token"], token.as_str(), "{body}");
    assert_eq!(body["expires_in"], 300, "{body}");
    let issued_at = body["issued_at"].as_str().expect("issued_at");
    humantime::parse_rfc3339(issued_at).expect("issued_at is RFC 3339");
    (token, body)
}

/// The parameters of a `WWW-Authenticate: Bearer k="v",…` challenge (values may hold commas).
fn challenge(response: &Response) -> BTreeMap<String, String> {
    let header = response.headers()[WWW_AUTHENTICATE]
        .to_str()
        .expect("WWW-Authenticate is text");
    let params = header
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a Bearer challenge: {header}"));
    let mut parsed = BTreeMap::new();
    let mut rest = params;
    while let Some((key, after)) = rest.split_once("=\"") {
        let (value, after) = after
            .split_once('"')
            .unwrap_or_else(|| panic!("unterminated value in {header}"));
        parsed.insert(
            key.trim_start_matches(',').trim().to_owned(),
            value.to_owned(),
        );
        rest = after;
    }
    parsed
}

/// A scope's actions in a stable order: the registry lists them in map order.
fn scope_actions(scope: &str) -> (String, Vec<String>) {
    let (resource, actions) = scope.rsplit_once(':').expect("TYPE:NAME:ACTIONS");
    let mut actions: Vec<String> = actions.split(',').map(str::to_owned).collect();
    actions.sort();
    (resource.to_owned(), actions)
}

fn expect_challenge(response: &Response, scope: Option<&str>, error: Option<&str>) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let params = challenge(response);
    let realm = params.get("realm").expect("realm").as_str();
    assert!(realm.ends_with("/token"), "realm {realm}");
    assert_eq!(params["service"], token_server::SERVICE);
    assert_eq!(
        params.get("scope").map(|scope| scope_actions(scope)),
        scope.map(scope_actions),
        "{params:?}"
    );
    assert_eq!(params.get("error").map(String::as_str), error, "{params:?}");
}

#[tokio::test]
async fn registry_challenges_for_a_bearer_token() {
    let registry = Registry::start_with_token_auth(USER, PASSWORD);
    let server = registry.token_server();
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    assert_eq!(
        server.realm(),
        format!("http://127.0.0.1:{}/token", server.port())
    );
    let anonymous = Session::new(&registry, None);

    let version_check = anonymous.get("/v2/").await;
    assert_eq!(version_check.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        version_check.headers()[WWW_AUTHENTICATE],
        format!(
            r#"Bearer realm="{}",service="imagepipe-test""#,
            server.realm()
        )
        .as_str()
    );

    let pull = anonymous.get("/v2/acme/app/tags/list").await;
    expect_challenge(&pull, Some("repository:acme/app:pull"), None);
    let push = anonymous.start_upload(REPOSITORY).await;
    expect_challenge(&push, Some(PUSH_PULL), None);

    assert_eq!(
        server.requests(),
        [],
        "the registry itself never calls the token server"
    );
}

#[tokio::test]
async fn basic_auth_token_pushes_to_its_repository_only() {
    let registry = Registry::start_with_token_auth(USER, PASSWORD);
    let server = registry.token_server();
    assert_eq!(registry.credentials(), &Credentials::new(USER, PASSWORD));

    let response = get_token(server, &[PUSH_PULL], Some(registry.credentials()), &[]).await;
    let (token, body) = token_of(response).await;
    assert_eq!(body.get("refresh_token"), None, "no offline_token asked");

    let (header, claims) = decode_jwt(&token);
    let pem = std::fs::read_to_string(server.cert_path()).expect("reading the signing certificate");
    let pem_base64: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    assert_eq!(
        header,
        json!({ "typ": "JWT", "alg": "RS256", "x5c": [pem_base64] })
    );
    assert_eq!(claims["iss"], token_server::ISSUER);
    assert_eq!(claims["aud"], token_server::SERVICE);
    assert_eq!(claims["sub"], USER);
    assert_eq!(
        claims["access"],
        json!([{ "type": "repository", "name": REPOSITORY, "actions": ["pull", "push"] }])
    );
    let iat = claims["iat"].as_u64().expect("iat");
    assert_eq!(claims["nbf"].as_u64(), Some(iat));
    assert_eq!(claims["exp"].as_u64(), Some(iat + 300));
    assert!(!claims["jti"].as_str().expect("jti").is_empty());

    let session = Session::new(&registry, Some(&token));
    assert_eq!(session.get("/v2/").await.status(), StatusCode::OK);
    session.push_image(REPOSITORY).await;
    let tags = json_body(session.get("/v2/acme/app/tags/list").await).await;
    assert_eq!(tags, json!({ "name": REPOSITORY, "tags": ["v1"] }));

    // The same token cannot touch another repository: the registry names what it would need.
    let push_elsewhere = session.start_upload("acme/other").await;
    expect_challenge(
        &push_elsewhere,
        Some("repository:acme/other:pull,push"),
        Some("insufficient_scope"),
    );
    let (_, _, manifest) = image("acme/other");
    let manifest_elsewhere = session.put_manifest("acme/other", "v1", &manifest).await;
    expect_challenge(
        &manifest_elsewhere,
        Some("repository:acme/other:pull,push"),
        Some("insufficient_scope"),
    );
    let pull_elsewhere = session.get("/v2/acme/other/manifests/v1").await;
    expect_challenge(
        &pull_elsewhere,
        Some("repository:acme/other:pull"),
        Some("insufficient_scope"),
    );

    // One token, fetched once, served every call; the log names the user but holds no password.
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/token")
    );
    assert!(request.basic_auth);
    assert_eq!(request.user.as_deref(), Some(USER));
    assert_eq!(request.param("service"), Some(token_server::SERVICE));
    assert_eq!(request.scopes(), [PUSH_PULL]);
    assert_eq!(server.tokens_issued(), 1);
    assert!(!format!("{requests:?}").contains(PASSWORD));
}

#[tokio::test]
async fn token_server_refuses_wrong_passwords() {
    let registry = Registry::start_with_token_auth(USER, PASSWORD);
    let server = registry.token_server();
    let wrong = Credentials::new(USER, "not-the-password");

    let refused = get_token(server, &[PUSH_PULL], Some(&wrong), &[]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body = json_body(refused).await;
    assert_eq!(body.get("token"), None, "{body}");

    let unknown_user = Credentials::new("mallory", PASSWORD);
    let refused = get_token(server, &[PUSH_PULL], Some(&unknown_user), &[]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let refused = post_token(
        server,
        &[
            ("grant_type", "password"),
            ("username", USER),
            ("password", &wrong.password),
            ("service", token_server::SERVICE),
            ("scope", PUSH_PULL),
        ],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_body(refused).await["error"], "invalid_grant");

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(server.tokens_issued(), 0);
    assert!(requests.iter().all(|request| request.status == 401));
    assert_eq!(requests[2].param("password"), Some("[redacted]"));
    let log = format!("{requests:?}");
    assert!(
        !log.contains(&wrong.password) && !log.contains(PASSWORD),
        "{log}"
    );
}

#[tokio::test]
async fn anonymous_tokens_grant_nothing() {
    let registry = Registry::start_with_token_auth(USER, PASSWORD);
    let server = registry.token_server();

    let response = get_token(server, &["repository:acme/app:pull"], None, &[]).await;
    let (token, _) = token_of(response).await;
    let (_, claims) = decode_jwt(&token);
    assert_eq!(claims["access"], json!([]));
    assert_eq!(claims["sub"], "");

    // A valid token with no access passes the version check, which needs no scope, and nothing else.
    let session = Session::new(&registry, Some(&token));
    assert_eq!(session.get("/v2/").await.status(), StatusCode::OK);
    let pull = session.get("/v2/acme/app/tags/list").await;
    expect_challenge(
        &pull,
        Some("repository:acme/app:pull"),
        Some("insufficient_scope"),
    );
    let requests = server.requests();
    assert!(!requests[0].basic_auth && requests[0].user.is_none());

    // A server started to refuse anonymous clients answers 401 instead, and still serves its user.
    let strict = TokenServer::start(Credentials::new(USER, PASSWORD), Anonymous::Refused);
    let refused = get_token(&strict, &["repository:acme/app:pull"], None, &[]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().contains_key(WWW_AUTHENTICATE));
    let allowed = get_token(
        &strict,
        &["repository:acme/app:pull"],
        Some(strict.credentials()),
        &[],
    )
    .await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(strict.tokens_issued(), 1);
}

#[tokio::test]
async fn refresh_tokens_issue_access_tokens_that_push() {
    let registry = Registry::start_with_token_auth(USER, PASSWORD);
    let server = registry.token_server();
    let password_grant = |offline: bool| {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", USER),
            ("password", PASSWORD),
            ("service", token_server::SERVICE),
            ("scope", PUSH_PULL),
            ("client_id", "imagepipe-test"),
        ];
        if offline {
            form.push(("access_type", "offline"));
        }
        form
    };

    let (_, online) = token_of(post_token(server, &password_grant(false)).await).await;
    assert_eq!(online.get("refresh_token"), None, "{online}");

    let (token, offline) = token_of(post_token(server, &password_grant(true)).await).await;
    let refresh_token = offline["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    assert_eq!(decode_jwt(&token).1["sub"], USER);

    let refreshed = post_token(
        server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("service", token_server::SERVICE),
            ("scope", PUSH_PULL),
            ("client_id", "imagepipe-test"),
        ],
    )
    .await;
    let (refreshed_token, refreshed_body) = token_of(refreshed).await;
    assert_eq!(refreshed_body.get("refresh_token"), None);
    assert_ne!(refreshed_token, token, "each token has its own jti");
    let (_, claims) = decode_jwt(&refreshed_token);
    assert_eq!(claims["sub"], USER);
    assert_eq!(
        claims["access"],
        json!([{ "type": "repository", "name": REPOSITORY, "actions": ["pull", "push"] }])
    );
    Session::new(&registry, Some(&refreshed_token))
        .push_image(REPOSITORY)
        .await;

    let unknown = post_token(
        server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not-a-refresh-token"),
            ("service", token_server::SERVICE),
            ("scope", PUSH_PULL),
        ],
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unsupported = post_token(
        server,
        &[
            ("grant_type", "client_credentials"),
            ("service", token_server::SERVICE),
        ],
    )
    .await;
    assert_eq!(unsupported.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_body(unsupported).await["error"],
        "unsupported_grant_type"
    );

    // The Docker `GET` flow's equivalent of `access_type=offline`.
    let (_, body) = token_of(
        get_token(
            server,
            &[PUSH_PULL],
            Some(registry.credentials()),
            &[("offline_token", "true"), ("client_id", "imagepipe-test")],
        )
        .await,
    )
    .await;
    assert!(body["refresh_token"].is_string(), "{body}");

    let requests = server.requests();
    let grants: Vec<_> = requests
        .iter()
        .map(|request| {
            (
                request.method.as_str(),
                request.param("grant_type"),
                request.status,
            )
        })
        .collect();
    assert_eq!(
        grants,
        [
            ("POST", Some("password"), 200),
            ("POST", Some("password"), 200),
            ("POST", Some("refresh_token"), 200),
            ("POST", Some("refresh_token"), 401),
            ("POST", Some("client_credentials"), 400),
            ("GET", None, 200),
        ]
    );
    assert_eq!(requests[0].param("password"), Some("[redacted]"));
    assert!(!format!("{requests:?}").contains(PASSWORD));
}

#[tokio::test]
async fn one_token_carries_several_scopes() {
    let registry = Registry::start_with_token_auth(USER, PASSWORD);
    let server = registry.token_server();
    let base = "repository:acme/base:pull";
    let response = get_token(
        server,
        &[PUSH_PULL, base],
        Some(registry.credentials()),
        &[],
    )
    .await;
    let (token, _) = token_of(response).await;
    assert_eq!(
        decode_jwt(&token).1["access"],
        json!([
            { "type": "repository", "name": REPOSITORY, "actions": ["pull", "push"] },
            { "type": "repository", "name": "acme/base", "actions": ["pull"] },
        ])
    );
    assert_eq!(server.requests()[0].scopes(), [PUSH_PULL, base]);

    let session = Session::new(&registry, Some(&token));
    session.push_image(REPOSITORY).await;
    // Pull on acme/base is granted: the registry gets as far as finding no such manifest.
    let pull = session.get("/v2/acme/base/manifests/v1").await;
    assert_eq!(pull.status(), StatusCode::NOT_FOUND);
    // Push on acme/base is not.
    let push = session.start_upload("acme/base").await;
    expect_challenge(
        &push,
        Some("repository:acme/base:pull,push"),
        Some("insufficient_scope"),
    );
}

#[tokio::test]
async fn registry_refuses_tokens_it_does_not_trust() {
    let registry = Registry::start_with_token_auth(USER, PASSWORD);

    // Same issuer, service and claims, signed by a key whose certificate is not in the rootcertbundle.
    let stranger = TokenServer::start(Credentials::new(USER, PASSWORD), Anonymous::Refused);
    let response = get_token(&stranger, &[PUSH_PULL], Some(stranger.credentials()), &[]).await;
    let (foreign, _) = token_of(response).await;
    let refused = Session::new(&registry, Some(&foreign))
        .start_upload(REPOSITORY)
        .await;
    expect_challenge(&refused, Some(PUSH_PULL), Some("invalid_token"));

    // A trusted token whose claims were edited after signing.
    let response = get_token(
        registry.token_server(),
        &["repository:acme/app:pull"],
        Some(registry.credentials()),
        &[],
    )
    .await;
    let (token, _) = token_of(response).await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let (_, mut claims) = decode_jwt(&token);
    claims["access"][0]["actions"] = json!(["pull", "push"]);
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = parts.join(".");
    let refused = Session::new(&registry, Some(&tampered))
        .start_upload(REPOSITORY)
        .await;
    expect_challenge(&refused, Some(PUSH_PULL), Some("invalid_token"));

    // Not a JWT at all.
    let refused = Session::new(&registry, Some("not-a-jwt")).get("/v2/").await;
    expect_challenge(&refused, None, Some("invalid_token"));
    // Basic credentials mean nothing to a token-auth registry.
    let basic = Client::new()
        .get(format!("{}/v2/", registry.url()))
        .header(
            AUTHORIZATION,
            format!("Basic {}", registry.credentials().basic_token()),
        )
        .send()
        .await
        .expect("a registry request");
    expect_challenge(&basic, None, None);
}
