//! A Docker token server (the `realm` of a `WWW-Authenticate: Bearer …` challenge) on a free loopback port,
//! for a registry started with token auth (see [`super::Registry::start_with_token_auth`]).
//!
//! It speaks plain HTTP/1.1 with std threads, one request per connection, and implements both token flows:
//! - `GET /token?service=…&scope=…` with optional HTTP Basic credentials (the Docker registry token
//!   protocol); `offline_token=true` adds a refresh token.
//! - `POST /token` with a form body: `grant_type=password` (`username`, `password`) or
//!   `grant_type=refresh_token` (`refresh_token`), plus `service` and `scope` (the OAuth 2 flow of docker and
//!   containerd); `access_type=offline` adds a refresh token.
//!
//! Tokens are RS256 JWTs signed with a fresh RSA key by `openssl dgst -sha256 -sign`, carrying the signing
//! certificate in `x5c`; the registry trusts that certificate through `rootcertbundle`. What distribution 2.8
//! checks (`registry/auth/token/token.go`, `accesscontroller.go`): `iss` is the configured issuer, `aud` the
//! configured service as a single string (2.8.2 refuses a JSON array as a malformed token), `nbf`/`exp` hold
//! now give or take 60 s, and the first `x5c` entry (standard padded base64 DER, unlike the base64url JWT
//! segments) chains to a certificate in the bundle; `kid` is consulted only without `x5c`. Then `access` must
//! hold every action the request needs.
//!
//! Every request is recorded ([`TokenServer::requests`]) without its password.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::commands::{require, run};
use super::credentials::Credentials;

/// The `service` the registry names in its challenges, and the `aud` of every token.
pub const SERVICE: &str = "imagepipe-test";
/// The `iss` of every token, which the registry is configured to trust.
pub const ISSUER: &str = "imagepipe-test-issuer";
/// Seconds a token lives (`expires_in`).
pub const EXPIRES_IN: u64 = 300;

/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A larger request is refused: token requests are a few hundred bytes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What the server does with a `GET /token` that carries no credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// A token with an empty `access` list, as Docker Hub gives an anonymous client for a repository it may
    /// not read: valid, grants nothing.
    EmptyAccess,
    /// `401 Unauthorized`.
    Refused,
}

/// One request the server answered. Passwords are never recorded: a `password` field reads `[redacted]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub method: String,
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Decoded `application/x-www-form-urlencoded` body fields of a `POST`, in order.
    pub form: Vec<(String, String)>,
    /// Whether the request had an `Authorization: Basic …` header.
    pub basic_auth: bool,
    /// The user named by Basic auth or by a `username` form field.
    pub user: Option<String>,
    /// The status the server answered with.
    pub status: u16,
}

impl TokenRequest {
    /// The first value of `name` in the query, then in the form.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .chain(&self.form)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every requested scope (`scope` parameters, each split at spaces), from the query and the form.
    pub fn scopes(&self) -> Vec<String> {
        scopes(self.query.iter().chain(&self.form))
    }

    /// Whether the server issued a token for this request.
    pub fn issued_token(&self) -> bool {
        self.status == 200
    }
}

/// A running token server. Dropping it stops the server; its key and certificate live in its temp dir.
pub struct TokenServer {
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    cert_path: PathBuf,
    _directory: TempDir,
}

impl TokenServer {
    /// Starts a server that knows one user, `credentials`, and treats anonymous `GET`s as `anonymous` says.
    /// The listener is bound before this returns, so there is no port race.
    pub fn start(credentials: Credentials, anonymous: Anonymous) -> Self {
        let directory = tempfile::Builder::new()
            .prefix("imagepipe-token-server-")
            .tempdir()
            .expect("creating the token server's temp dir");
        let signer = Signer::generate(directory.path());
        let cert_path = signer.cert_path.clone();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("binding the token server to a loopback port");
        let port = listener
            .local_addr()
            .expect("the token server's address")
            .port();
        let shared = Arc::new(Shared {
            credentials,
            anonymous,
            signer,
            state: Mutex::default(),
            witness: Mutex::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name(format!("token-server-{port}"))
                .spawn(move || accept_loop(&listener, &shared, &stop))
                .expect("starting the token server thread")
        };
        Self {
            port,
            shared,
            stop,
            acceptor: Some(acceptor),
            cert_path,
            _directory: directory,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/token`: the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The PEM certificate that signs tokens: the registry's `rootcertbundle`.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The one user the server accepts.
    pub fn credentials(&self) -> &Credentials {
        &self.shared.credentials
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.state().requests.clone()
    }

    /// How many tokens the server has issued.
    pub fn tokens_issued(&self) -> usize {
        self.shared
            .state()
            .requests
            .iter()
            .filter(|request| request.issued_token())
            .count()
    }

    /// Calls `witness` with each request from now on, after it is read and before it is answered, while the
    /// client waits: for a test that checks what the client had done by the time its credentials arrived.
    /// Replaces an earlier witness.
    pub fn witness(&self, witness: impl Fn(&TokenRequest) + Send + Sync + 'static) {
        *self
            .shared
            .witness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Box::new(witness));
    }

    /// Forgets the requests recorded so far (refresh tokens stay valid).
    pub fn clear_requests(&self) {
        self.shared.state().requests.clear();
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking `accept` so the thread sees the flag.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_secs(1),
        );
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The header and claims of a JWT, decoded without checking the signature: for assertions.
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = |name: &str| -> Value {
        let encoded = parts
            .next()
            .unwrap_or_else(|| panic!("the JWT has no {name}: {token}"));
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .unwrap_or_else(|error| panic!("the JWT {name} is not base64url: {error}"));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|error| panic!("the JWT {name} is not JSON: {error}"))
    };
    let header = part("header");
    let claims = part("claims");
    assert_eq!(
        token.split('.').count(),
        3,
        "a JWT has three parts: {token}"
    );
    (header, claims)
}

/// See [`TokenServer::witness`].
type Witness = Box<dyn Fn(&TokenRequest) + Send + Sync>;

struct Shared {
    credentials: Credentials,
    anonymous: Anonymous,
    signer: Signer,
    state: Mutex<State>,
    witness: Mutex<Option<Witness>>,
}

impl Shared {
    /// A panicking connection thread must not hide the log from the test.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    requests: Vec<TokenRequest>,
    /// Refresh token → the user it was issued to.
    refresh_tokens: HashMap<String, String>,
    next_jti: u64,
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(shared);
        let _ = thread::Builder::new()
            .name("token-server-connection".to_owned())
            .spawn(move || serve_connection(stream, &shared));
    }
}

/// Answers one request and closes the connection.
fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Some(request) = read_request(&stream) else {
        return;
    };
    let response = answer(&request, shared);
    let record = request.record(response.status);
    if let Some(witness) = shared
        .witness
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
    {
        witness(&record);
    }
    shared.state().requests.push(record);
    let _ = stream.write_all(&response.to_bytes());
    let _ = stream.flush();
}

/// A parsed HTTP request; the raw `Authorization` header never leaves this module.
struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn form(&self) -> Vec<(String, String)> {
        let is_form = self.header("content-type").is_some_and(|content_type| {
            content_type
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        if is_form {
            parse_urlencoded(&String::from_utf8_lossy(&self.body))
        } else {
            Vec::new()
        }
    }

    fn basic_auth(&self) -> BasicAuth {
        let Some((scheme, encoded)) = self
            .header("authorization")
            .and_then(|value| value.trim().split_once(' '))
        else {
            return BasicAuth::Absent;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return BasicAuth::Absent;
        }
        STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(user, password)| BasicAuth::Present {
                        user: user.to_owned(),
                        password: password.to_owned(),
                    })
            })
            .unwrap_or(BasicAuth::Malformed)
    }

    fn record(&self, status: u16) -> TokenRequest {
        let redact = |pairs: Vec<(String, String)>| -> Vec<(String, String)> {
            pairs
                .into_iter()
                .map(|(key, value)| {
                    let value = if key == "password" {
                        "[redacted]".to_owned()
                    } else {
                        value
                    };
                    (key, value)
                })
                .collect()
        };
        let form = redact(self.form());
        let basic = self.basic_auth();
        let basic_user = match &basic {
            BasicAuth::Present { user, .. } => Some(user.clone()),
            BasicAuth::Absent | BasicAuth::Malformed => None,
        };
        let user = basic_user.or_else(|| {
            form.iter()
                .find(|(key, _)| key == "username")
                .map(|(_, value)| value.clone())
        });
        TokenRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: redact(self.query.clone()),
            form,
            basic_auth: basic != BasicAuth::Absent,
            user,
            status,
        }
    }
}

/// The `Authorization: Basic …` header of a request.
#[derive(PartialEq, Eq)]
enum BasicAuth {
    Absent,
    /// Not `base64(user:password)`.
    Malformed,
    Present {
        user: String,
        password: String,
    },
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    let mut total = line.len();
    loop {
        let mut header = String::new();
        let read = reader.read_line(&mut header).ok()?;
        total += read;
        if read == 0 || total > MAX_REQUEST_BYTES {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(Some(0), |(_, value)| value.parse::<usize>().ok())?;
    if length > MAX_REQUEST_BYTES {
        return None;
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Request {
        method,
        path: path.to_owned(),
        query: parse_urlencoded(query),
        headers,
        body,
    })
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

impl Response {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// A distribution-style error envelope.
    fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            json!({ "errors": [{ "code": code, "message": message }] }),
        )
    }

    fn unauthorized(message: &str) -> Self {
        let mut response = Self::error(401, "UNAUTHORIZED", message);
        response.headers.push((
            "WWW-Authenticate",
            format!(r#"Basic realm="{SERVICE} token server""#),
        ));
        response
    }

    /// An OAuth 2 error (RFC 6749 §5.2), for the `POST` flow.
    fn oauth_error(status: u16, error: &str, description: &str) -> Self {
        Self::json(
            status,
            json!({ "error": error, "error_description": description }),
        )
    }

    fn to_bytes(&self) -> Vec<u8> {
        let body = self.body.to_string();
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Internal Server Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }
}

/// Who a token is for.
enum Subject {
    User(String),
    Anonymous,
}

fn answer(request: &Request, shared: &Shared) -> Response {
    if request.path != "/token" {
        return Response::error(404, "NOT_FOUND", "only /token is served here");
    }
    let result = match request.method.as_str() {
        "GET" => answer_get(request, shared),
        "POST" => answer_post(request, shared),
        _ => return Response::error(405, "UNSUPPORTED", "use GET or POST"),
    };
    result.unwrap_or_else(|problem| Response::error(500, "UNKNOWN", &problem))
}

/// The Docker registry token protocol: Basic credentials or none, parameters in the query.
fn answer_get(request: &Request, shared: &Shared) -> Result<Response, String> {
    let subject = match request.basic_auth() {
        BasicAuth::Present { user, password } if accepts(&shared.credentials, &user, &password) => {
            Subject::User(user)
        }
        BasicAuth::Present { .. } | BasicAuth::Malformed => {
            return Ok(Response::unauthorized("incorrect username or password"));
        }
        BasicAuth::Absent if shared.anonymous == Anonymous::Refused => {
            return Ok(Response::unauthorized("authentication required"));
        }
        BasicAuth::Absent => Subject::Anonymous,
    };
    if let Err(response) = check_service(request.query.iter()) {
        return Ok(response);
    }
    let offline = param(&request.query, "offline_token") == Some("true");
    let refresh_token = match (&subject, offline) {
        (Subject::User(user), true) => Some(shared.new_refresh_token(user)),
        _ => None,
    };
    shared.token_response(&subject, &scopes(&request.query), refresh_token)
}

/// The OAuth 2 flow: `grant_type=password` or `grant_type=refresh_token` in a form body.
fn answer_post(request: &Request, shared: &Shared) -> Result<Response, String> {
    let form = request.form();
    if form.is_empty() {
        return Ok(Response::oauth_error(
            400,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        ));
    }
    if let Err(response) = check_service(form.iter()) {
        return Ok(response);
    }
    let offline = param(&form, "access_type") == Some("offline");
    let (user, refresh_token) = match param(&form, "grant_type") {
        Some("password") => {
            let user = param(&form, "username").unwrap_or_default();
            let password = param(&form, "password").unwrap_or_default();
            if !accepts(&shared.credentials, user, password) {
                return Ok(Response::oauth_error(
                    401,
                    "invalid_grant",
                    "incorrect username or password",
                ));
            }
            let refresh_token = offline.then(|| shared.new_refresh_token(user));
            (user.to_owned(), refresh_token)
        }
        Some("refresh_token") => {
            let presented = param(&form, "refresh_token").unwrap_or_default();
            let Some(user) = shared.state().refresh_tokens.get(presented).cloned() else {
                return Ok(Response::oauth_error(
                    401,
                    "invalid_grant",
                    "unknown refresh token",
                ));
            };
            (user, offline.then(|| presented.to_owned()))
        }
        Some(other) => {
            return Ok(Response::oauth_error(
                400,
                "unsupported_grant_type",
                &format!("grant_type {other:?} is not supported"),
            ));
        }
        None => {
            return Ok(Response::oauth_error(
                400,
                "invalid_request",
                "grant_type is required",
            ));
        }
    };
    shared.token_response(&Subject::User(user), &scopes(&form), refresh_token)
}

/// The `service` must name this server's registry; a token for another audience would only fail later.
fn check_service<'a>(
    mut pairs: impl Iterator<Item = &'a (String, String)>,
) -> Result<(), Response> {
    match pairs.find(|(key, _)| key == "service") {
        Some((_, service)) if service == SERVICE => Ok(()),
        Some((_, service)) => Err(Response::error(
            400,
            "INVALID_SERVICE",
            &format!("unknown service {service:?}, expected {SERVICE:?}"),
        )),
        None => Err(Response::error(
            400,
            "INVALID_SERVICE",
            "the service parameter is required",
        )),
    }
}

impl Shared {
    fn new_refresh_token(&self, user: &str) -> String {
        let token = format!("{:032x}", fastrand::u128(..));
        self.state()
            .refresh_tokens
            .insert(token.clone(), user.to_owned());
        token
    }

    fn token_response(
        &self,
        subject: &Subject,
        scopes: &[String],
        refresh_token: Option<String>,
    ) -> Result<Response, String> {
        let now = SystemTime::now();
        let seconds = now
            .duration_since(UNIX_EPOCH)
            .map_err(|error| error.to_string())?
            .as_secs();
        let jti = {
            let mut state = self.state();
            state.next_jti += 1;
            format!("{}-{}", state.next_jti, fastrand::u64(..))
        };
        let (sub, access) = match subject {
            Subject::User(user) => (user.clone(), grant(scopes)),
            Subject::Anonymous => (String::new(), Vec::new()),
        };
        let claims = json!({
            "iss": ISSUER,
            "sub": sub,
            "aud": SERVICE,
            "exp": seconds + EXPIRES_IN,
            "nbf": seconds,
            "iat": seconds,
            "jti": jti,
            "access": access,
        });
        let token = self.signer.sign(&claims)?;
        let mut body = json!({
            "token": token,
            "access_token": token,
            "expires_in": EXPIRES_IN,
            "issued_at": humantime::format_rfc3339_seconds(now).to_string(),
        });
        if let Some(refresh_token) = refresh_token {
            body["refresh_token"] = Value::from(refresh_token);
        }
        Ok(Response::json(200, body))
    }
}

/// An authenticated user gets every action each scope asks for. A scope is `TYPE:NAME:ACTIONS`, where the
/// name may itself hold colons (`repository:host:5000/app:pull`) and actions are comma-separated.
fn grant(scopes: &[String]) -> Vec<Value> {
    scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|action| !action.is_empty())
                .collect();
            Some(json!({ "type": kind, "name": name, "actions": actions }))
        })
        .collect()
}

fn accepts(credentials: &Credentials, user: &str, password: &str) -> bool {
    credentials.user == user && credentials.password == password
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn scopes<'a>(pairs: impl IntoIterator<Item = &'a (String, String)>) -> Vec<String> {
    pairs
        .into_iter()
        .filter(|(key, _)| key == "scope")
        .flat_map(|(_, value)| value.split_whitespace().map(str::to_owned))
        .collect()
}

/// `application/x-www-form-urlencoded` (and query string) decoding: `+` is a space, `%XX` a byte.
fn parse_urlencoded(text: &str) -> Vec<(String, String)> {
    let decode = |part: &str| -> String {
        let bytes = part.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut index = 0;
        while index < bytes.len() {
            let byte = bytes[index];
            let escaped = (byte == b'%')
                .then(|| part.get(index + 1..index + 3))
                .flatten()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            if let Some(escaped) = escaped {
                decoded.push(escaped);
                index += 3;
            } else {
                decoded.push(if byte == b'+' { b' ' } else { byte });
                index += 1;
            }
        }
        String::from_utf8_lossy(&decoded).into_owned()
    };
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// The RSA key and self-signed certificate that sign tokens, made by the `openssl` CLI.
struct Signer {
    openssl: PathBuf,
    key_path: PathBuf,
    cert_path: PathBuf,
    /// The JWT header, already base64url-encoded: it is the same for every token.
    encoded_header: String,
}

impl Signer {
    fn generate(directory: &Path) -> Self {
        let openssl = require("openssl");
        let key_path = directory.join("token-signing.key");
        let cert_path = directory.join("token-signing.pem");
        run(Command::new(&openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=imagepipe test token signer"])
            .arg("-keyout")
            .arg(&key_path)
            .arg("-out")
            .arg(&cert_path));
        let der = run(Command::new(&openssl)
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert_path))
        .stdout;
        // x5c holds standard, padded base64 (RFC 7515 §4.1.6), unlike the rest of the JWT.
        let header = json!({ "typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(&der)] });
        let encoded_header = URL_SAFE_NO_PAD.encode(header.to_string());
        Self {
            openssl,
            key_path,
            cert_path,
            encoded_header,
        }
    }

    /// `base64url(header).base64url(claims).base64url(RSASSA-PKCS1-v1_5 SHA-256 signature)`.
    fn sign(&self, claims: &Value) -> Result<String, String> {
        let signing_input = format!(
            "{}.{}",
            self.encoded_header,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut child = Command::new(&self.openssl)
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run openssl: {error}"))?;
        child
            .stdin
            .take()
            .ok_or("openssl has no stdin")?
            .write_all(signing_input.as_bytes())
            .map_err(|error| format!("writing to openssl: {error}"))?;
        let output = child
            .wait_with_output()
            .map_err(|error| format!("waiting for openssl: {error}"))?;
        if !output.status.success() || output.stdout.is_empty() {
            return Err(format!(
                "openssl dgst -sign failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(&output.stdout)
        ))
    }
}
