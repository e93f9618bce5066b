//! Where registry credentials come from: explicit credentials given on the command line, then Docker's
//! `config.json` as written by `docker login`, docker/login-action and the Azure Docker@2 task.
//!
//! Docker's own order (docker/cli `cli/config/configfile/file.go`, `GetCredentialsStore` and
//! `getConfiguredCredentialStore`; `cli/config/credentials/native_store.go`), followed here:
//! 1. `credHelpers[server]` names a helper for this registry: its answer is final. An empty name there means
//!    "no helper for this registry": `auths` is used even when `credsStore` is set.
//! 2. else `credsStore` names the helper for every registry: its answer is final, and `auths` is **not**
//!    consulted for secrets (Docker keeps only e-mail addresses there once a store is configured).
//! 3. else `auths`: the entry under the exact server key, else one whose key converts to the same host.
//!
//! A helper that answers "credentials not found" means anonymous access, as in Docker. Where Docker silently
//! falls back to anonymous access on any other helper failure, this module returns the error: a release
//! pipeline should stop rather than push anonymously and fail later with a less useful message.
//!
//! The server Docker asks for is the registry host (`host[:port]`), except Docker Hub, whose key is
//! `https://index.docker.io/v1/`. Differences from Docker, all more lenient: `credHelpers` and `auths` keys
//! are matched by host (case-insensitive, scheme and path ignored, Docker Hub's aliases folded together),
//! not only by exact key; a helper that knows nothing under `host` is asked again under `https://host`, the
//! form some older tools stored.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// The key `docker login` uses for Docker Hub, in `auths` and towards helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";
/// Host names that all mean Docker Hub; the first is the normalized form.
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// The user name a helper answers with when its secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// What a helper built on docker-credential-helpers prints (to stdout) when it has nothing for a server.
const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";
const HELPER_PREFIX: &str = "docker-credential-";
/// A helper waiting for a passphrase prompt nobody sees would otherwise hang a CI job forever.
const HELPER_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of a failing helper's stderr an error message carries.
const STDERR_LIMIT: usize = 2000;
/// Spawning a script another thread has just written can fail with "text file busy" for a moment.
const SPAWN_ATTEMPTS: u32 = 3;

/// A secret for one registry. Debug prints `<redacted>` for every secret field.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or personal access token).
    Basic { username: String, password: String },
    /// A refresh token (docker config `identitytoken`, or a helper answering with user name `<token>`),
    /// exchanged at the token endpoint with grant_type=refresh_token.
    IdentityToken(String),
}

impl Credential {
    /// The user name, for error messages; never the secret.
    pub fn username(&self) -> Option<&str> {
        match self {
            Self::Basic { username, .. } => Some(username),
            Self::IdentityToken(_) => None,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &Redacted)
                .finish(),
            Self::IdentityToken(_) => f.debug_tuple("IdentityToken").field(&Redacted).finish(),
        }
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why no credential could be determined. No variant carries a secret: not the `auth` value, not a helper's
/// stdout (which holds secrets on success).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the Docker config `{}`", path.display())]
    ConfigUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the Docker config `{}` is not valid JSON", path.display())]
    ConfigSyntax {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("in the Docker config `{}`, `{key}` must be {expected}", path.display())]
    ConfigInvalid {
        path: PathBuf,
        /// Where in the JSON, such as `auths["ghcr.io"].auth`.
        key: String,
        expected: &'static str,
    },
    #[error("in the Docker config `{}`, `{key}` is not {problem}", path.display())]
    InvalidAuth {
        path: PathBuf,
        key: String,
        problem: &'static str,
    },
    #[error(
        "the credential helper `{program}` (from `{setting}` in `{}`) was not found: it must be on PATH",
        config.display()
    )]
    HelperMissing {
        program: String,
        /// `credsStore` or `credHelpers["host"]`.
        setting: String,
        config: PathBuf,
    },
    #[error("cannot run the credential helper `{}`", program.display())]
    HelperStart {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the credential helper `{program}` failed for `{server}` ({}){}", exit_text(*.code), stderr_text(.stderr))]
    HelperFailed {
        program: String,
        server: String,
        /// None when a signal ended it.
        code: Option<i32>,
        /// Its stderr, trimmed and shortened. Its stdout is never shown.
        stderr: String,
    },
    #[error("the credential helper `{program}` did not answer for `{server}` within {} s", HELPER_TIMEOUT.as_secs())]
    HelperTimedOut { program: String, server: String },
    #[error("the credential helper `{program}` answered `{server}` with invalid JSON: {problem}")]
    HelperInvalidAnswer {
        program: String,
        server: String,
        problem: String,
    },
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit code {code}"),
        None => "ended by a signal".to_owned(),
    }
}

fn stderr_text(stderr: &str) -> String {
    if stderr.is_empty() {
        String::from(", no stderr")
    } else {
        format!(": {stderr}")
    }
}

/// Where credentials are looked up, in order: explicit credentials given for a host, then Docker's config.
#[derive(Debug, Clone, Default)]
pub struct CredentialSource {
    /// Keyed by normalized host (see [`normalize_host`]).
    explicit: BTreeMap<String, Credential>,
    /// The folder holding `config.json`.
    docker_config: Option<PathBuf>,
    /// Where helper programs are searched; None means the process's `PATH`. Tests set it, because they must
    /// not change the environment of a process whose other threads run other tests.
    helper_path: Option<OsString>,
}

impl CredentialSource {
    /// Docker's config folder from `DOCKER_CONFIG`, else `$HOME/.docker`.
    pub fn from_environment() -> Self {
        let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let home = non_empty("HOME").or_else(|| non_empty("USERPROFILE"));
        let docker_config = non_empty("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home.map(|home| PathBuf::from(home).join(".docker")));
        Self {
            docker_config,
            ..Self::default()
        }
    }

    /// Docker's config in `folder` (holding config.json); for tests.
    pub fn with_docker_config(folder: PathBuf) -> Self {
        Self {
            docker_config: Some(folder),
            ..Self::default()
        }
    }

    /// Adds explicit credentials for one registry host (from `--username` and `--password-stdin`/`IMAGEPIPE_PASSWORD`).
    pub fn with_explicit(mut self, host: &str, credential: Credential) -> Self {
        self.explicit.insert(normalize_host(host), credential);
        self
    }

    #[cfg(test)]
    fn with_helper_path(mut self, path: impl Into<OsString>) -> Self {
        self.helper_path = Some(path.into());
        self
    }

    /// The credential for a registry host (`host[:port]`), or None for anonymous access.
    pub async fn lookup(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        let registry = Registry::new(host);
        if let Some(credential) = self.explicit.get(&registry.host) {
            tracing::debug!(registry = %registry.host, "using the credentials given explicitly");
            return Ok(Some(credential.clone()));
        }
        let Some(folder) = &self.docker_config else {
            return Ok(None);
        };
        let path = folder.join("config.json");
        let Some(config) = DockerConfig::load(&path).await? else {
            tracing::debug!(config = %path.display(), "no Docker config, so no credentials");
            return Ok(None);
        };

        let helper = match config.helper_for(&registry) {
            Some((key, name)) => Some((format!("credHelpers[{key:?}]"), name)),
            None => config
                .creds_store
                .as_deref()
                .filter(|name| !name.is_empty())
                .map(|name| ("credsStore".to_owned(), name)),
        };
        // An empty helper name (possible only in `credHelpers`) sends this registry to `auths`.
        if let Some((setting, name)) = helper.filter(|(_, name)| !name.is_empty()) {
            return self.ask_helper(name, &setting, &path, &registry).await;
        }
        let credential = config.auth_for(&registry, &path)?;
        tracing::debug!(
            registry = %registry.host,
            found = credential.is_some(),
            config = %path.display(),
            "looked up `auths`"
        );
        Ok(credential)
    }

    async fn ask_helper(
        &self,
        name: &str,
        setting: &str,
        config: &Path,
        registry: &Registry,
    ) -> Result<Option<Credential>, CredentialError> {
        let program = format!("{HELPER_PREFIX}{name}");
        let executable =
            self.find_helper(&program)
                .ok_or_else(|| CredentialError::HelperMissing {
                    program: program.clone(),
                    setting: setting.to_owned(),
                    config: config.to_owned(),
                })?;
        for server in registry.helper_servers() {
            if let Some(credential) = run_helper(&executable, &program, &server).await? {
                tracing::debug!(registry = %registry.host, %program, %server, "using a credential helper's answer");
                return Ok(credential);
            }
        }
        tracing::debug!(registry = %registry.host, %program, "the credential helper has no credentials");
        Ok(None)
    }

    fn find_helper(&self, program: &str) -> Option<PathBuf> {
        let search_path = match &self.helper_path {
            Some(path) => path.clone(),
            None => std::env::var_os("PATH")?,
        };
        let names: Vec<String> = if cfg!(windows) {
            vec![format!("{program}.exe"), program.to_owned()]
        } else {
            vec![program.to_owned()]
        };
        std::env::split_paths(&search_path)
            .flat_map(|folder| names.iter().map(move |name| folder.join(name)))
            .find(|candidate| is_executable(candidate))
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// A registry as this module matches it.
struct Registry {
    /// Normalized: lower case, no scheme or path, Docker Hub's aliases as `docker.io`.
    host: String,
}

impl Registry {
    fn new(host: &str) -> Self {
        Self {
            host: normalize_host(host),
        }
    }

    fn is_docker_hub(&self) -> bool {
        self.host == DOCKER_HUB_HOSTS[0]
    }

    /// The key Docker uses for this registry in `auths`, `credHelpers` and towards helpers.
    fn server_key(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_SERVER
        } else {
            &self.host
        }
    }

    /// The server names a helper is asked for, in order.
    fn helper_servers(&self) -> Vec<String> {
        if self.is_docker_hub() {
            vec![DOCKER_HUB_SERVER.to_owned()]
        } else {
            vec![self.host.clone(), format!("https://{}", self.host)]
        }
    }

    /// Whether a config key (`host`, `https://host/v1/`, …) names this registry.
    fn matches(&self, key: &str) -> bool {
        normalize_host(key) == self.host
    }
}

/// The host (and port) of a registry name or URL, as docker/cli's `ConvertToHostname` finds it, lower-cased,
/// with Docker Hub's aliases folded into `docker.io`.
fn normalize_host(name: &str) -> String {
    let name = name.trim();
    let without_scheme = name.split_once("://").map_or(name, |(_, rest)| rest);
    let authority = without_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_ascii_lowercase();
    if DOCKER_HUB_HOSTS.contains(&host.as_str()) {
        DOCKER_HUB_HOSTS[0].to_owned()
    } else {
        host
    }
}

/// The parts of Docker's `config.json` that hold credentials. Other keys are ignored.
struct DockerConfig {
    auths: BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
}

/// One `auths` entry, secrets still encoded.
#[derive(Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identity_token: Option<String>,
}

impl DockerConfig {
    /// The config at `path`, or None when there is none.
    async fn load(path: &Path) -> Result<Option<Self>, CredentialError> {
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CredentialError::ConfigUnreadable {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        // Parsed into a `Value` first: a syntax error names a line and column only, whereas a typed parse
        // would quote the offending value, which may be a secret.
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|source| CredentialError::ConfigSyntax {
                path: path.to_owned(),
                source,
            })?;
        Self::from_value(&value, path).map(Some)
    }

    fn from_value(value: &Value, path: &Path) -> Result<Self, CredentialError> {
        let invalid = |key: String, expected: &'static str| CredentialError::ConfigInvalid {
            path: path.to_owned(),
            key,
            expected,
        };
        let root = value
            .as_object()
            .ok_or_else(|| invalid("(the whole file)".to_owned(), "an object"))?;

        let mut auths = BTreeMap::new();
        for (server, entry) in optional_object(root, "auths", "auths", &invalid)? {
            let key = format!("auths[{server:?}]");
            let entry = match entry {
                Value::Null => Map::new(),
                Value::Object(entry) => entry.clone(),
                _ => return Err(invalid(key, "an object")),
            };
            let field = |name: &str| optional_string(&entry, name, &key, &invalid);
            auths.insert(
                server.clone(),
                AuthEntry {
                    auth: field("auth")?,
                    username: field("username")?,
                    password: field("password")?,
                    identity_token: field("identitytoken")?,
                },
            );
        }

        let creds_store = optional_string(root, "credsStore", "", &invalid)?;

        let mut cred_helpers = BTreeMap::new();
        for (server, helper) in optional_object(root, "credHelpers", "credHelpers", &invalid)? {
            let helper = match helper {
                Value::String(helper) => helper.clone(),
                Value::Null => String::new(),
                _ => return Err(invalid(format!("credHelpers[{server:?}]"), "a string")),
            };
            cred_helpers.insert(server.clone(), helper);
        }

        Ok(Self {
            auths,
            creds_store,
            cred_helpers,
        })
    }

    /// The `credHelpers` key and helper name for this registry: the exact server key first, else the first
    /// key (in sorted order) that names the same host.
    fn helper_for(&self, registry: &Registry) -> Option<(&str, &str)> {
        if let Some((key, helper)) = self.cred_helpers.get_key_value(registry.server_key()) {
            return Some((key, helper));
        }
        self.cred_helpers
            .iter()
            .find(|(key, _)| registry.matches(key))
            .map(|(key, helper)| (key.as_str(), helper.as_str()))
    }

    /// The credential in `auths` for this registry: the entry under the exact server key first, else the
    /// entries whose keys name the same host, in sorted order; the first that holds a credential.
    fn auth_for(
        &self,
        registry: &Registry,
        path: &Path,
    ) -> Result<Option<Credential>, CredentialError> {
        let exact = self.auths.get_key_value(registry.server_key());
        let others = self
            .auths
            .iter()
            .filter(|(key, _)| key.as_str() != registry.server_key() && registry.matches(key));
        for (key, entry) in exact.into_iter().chain(others) {
            if let Some(credential) = entry.credential(key, path)? {
                return Ok(Some(credential));
            }
        }
        Ok(None)
    }
}

impl AuthEntry {
    /// As Docker reads an entry: `identitytoken` wins (Azure's `az acr login` writes it next to an `auth`
    /// with a placeholder user), then `auth` (which overrides `username`/`password`), then those two.
    fn credential(&self, key: &str, path: &Path) -> Result<Option<Credential>, CredentialError> {
        let present = |value: &Option<String>| value.clone().filter(|value| !value.is_empty());
        if let Some(token) = present(&self.identity_token) {
            return Ok(Some(Credential::IdentityToken(token)));
        }
        if let Some(auth) = present(&self.auth) {
            let invalid = |problem| CredentialError::InvalidAuth {
                path: path.to_owned(),
                key: format!("auths[{key:?}].auth"),
                problem,
            };
            let (username, password) = decode_auth(&auth).map_err(invalid)?;
            return Ok(Some(Credential::Basic { username, password }));
        }
        match (present(&self.username), present(&self.password)) {
            (None, None) => Ok(None),
            (username, password) => Ok(Some(Credential::Basic {
                username: username.unwrap_or_default(),
                password: password.unwrap_or_default(),
            })),
        }
    }
}

/// `base64(user:password)`, split at the first colon. Like Go's decoder, line breaks are skipped; unlike it,
/// missing padding is accepted. The error says what is wrong without quoting any of the value.
fn decode_auth(auth: &str) -> Result<(String, String), &'static str> {
    let compact: String = auth.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let bytes = STANDARD
        .decode(compact.trim())
        .or_else(|_| STANDARD_NO_PAD.decode(compact.trim()))
        .map_err(|_| "valid base64")?;
    let text = String::from_utf8(bytes).map_err(|_| "base64 of UTF-8 text")?;
    match text.split_once(':') {
        Some((username, password)) if !username.is_empty() => {
            Ok((username.to_owned(), password.trim_matches('\0').to_owned()))
        }
        _ => Err("base64 of `user:password` with a non-empty user"),
    }
}

fn optional_object<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    key: &str,
    invalid: &impl Fn(String, &'static str) -> CredentialError,
) -> Result<impl Iterator<Item = (&'a String, &'a Value)>, CredentialError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None.into_iter().flatten()),
        Some(Value::Object(map)) => Ok(Some(map.iter()).into_iter().flatten()),
        Some(_) => Err(invalid(key.to_owned(), "an object")),
    }
}

/// A string field; null and absent are None. `parent` is the JSON path of `object` ("" for the root).
fn optional_string(
    object: &Map<String, Value>,
    name: &str,
    parent: &str,
    invalid: &impl Fn(String, &'static str) -> CredentialError,
) -> Result<Option<String>, CredentialError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => {
            let key = if parent.is_empty() {
                name.to_owned()
            } else {
                format!("{parent}.{name}")
            };
            Err(invalid(key, "a string"))
        }
    }
}

/// Runs `PROGRAM get` with `server` on stdin (the docker-credential-helpers protocol). Some(None) is an
/// empty answer, None is "not found", so the caller may ask again under another server name.
async fn run_helper(
    executable: &Path,
    program: &str,
    server: &str,
) -> Result<Option<Option<Credential>>, CredentialError> {
    let mut child = spawn_helper(executable).await?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit without reading stdin; its exit status then tells what happened.
        let _ = stdin.write_all(server.as_bytes()).await;
        drop(stdin);
    }
    let output = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| CredentialError::HelperTimedOut {
            program: program.to_owned(),
            server: server.to_owned(),
        })?
        .map_err(|source| CredentialError::HelperStart {
            program: executable.to_owned(),
            source,
        })?;

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // Helpers print their errors to stdout; comparing it with the one known message is safe, showing
        // it is not (the brief of this module: never stdout).
        if stdout.trim() == NOT_FOUND_MESSAGE || stderr.contains(NOT_FOUND_MESSAGE) {
            return Ok(None);
        }
        return Err(CredentialError::HelperFailed {
            program: program.to_owned(),
            server: server.to_owned(),
            code: output.status.code(),
            stderr: shorten(stderr.trim()),
        });
    }
    parse_helper_answer(&stdout)
        .map(Some)
        .map_err(|problem| CredentialError::HelperInvalidAnswer {
            program: program.to_owned(),
            server: server.to_owned(),
            problem,
        })
}

async fn spawn_helper(executable: &Path) -> Result<tokio::process::Child, CredentialError> {
    let mut attempt = 1;
    loop {
        let spawned = Command::new(executable)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(child) => return Ok(child),
            Err(error)
                if error.kind() == io::ErrorKind::ExecutableFileBusy
                    && attempt < SPAWN_ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(source) => {
                return Err(CredentialError::HelperStart {
                    program: executable.to_owned(),
                    source,
                });
            }
        }
    }
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(STDERR_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// `{"ServerURL":…,"Username":…,"Secret":…}`; user name `<token>` marks an identity token. Problems are
/// described without quoting the answer, which may hold a secret.
fn parse_helper_answer(stdout: &str) -> Result<Option<Credential>, String> {
    let value: Value =
        serde_json::from_str(stdout).map_err(|error| format!("not JSON ({error})"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "not a JSON object".to_owned())?;
    let field = |name: &str| match object.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(value)) => Ok(value.clone()),
        Some(_) => Err(format!("`{name}` is not a string")),
    };
    let username = field("Username")?;
    let secret = field("Secret")?;
    Ok(match (username.as_str(), secret.is_empty()) {
        (TOKEN_USERNAME, true) | ("", true) => None,
        (TOKEN_USERNAME, false) => Some(Credential::IdentityToken(secret)),
        _ => Some(Credential::Basic {
            username,
            password: secret,
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use serde_json::json;
    use tempfile::TempDir;

    use super::*;

    const SECRET: &str = "s3cr3t-Pa55word";

    fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    fn encode(text: &str) -> String {
        STANDARD.encode(text)
    }

    /// A temp folder with `config.json` holding `config`, and a `bin` folder for fake helpers.
    struct Fixture {
        folder: TempDir,
    }

    impl Fixture {
        fn new(config: &Value) -> Self {
            let fixture = Self::empty();
            fixture.write_config(&config.to_string());
            fixture
        }

        fn empty() -> Self {
            let folder = tempfile::tempdir().expect("creating a temp dir");
            fs::create_dir(folder.path().join("bin")).expect("creating the helper folder");
            Self { folder }
        }

        fn write_config(&self, text: &str) {
            fs::write(self.config_path(), text).expect("writing config.json");
        }

        fn config_path(&self) -> PathBuf {
            self.folder.path().join("config.json")
        }

        /// Writes `bin/docker-credential-NAME`, a shell script with `body`; `$server` holds its stdin.
        fn helper(&self, name: &str, body: &str) -> &Self {
            let path = self
                .folder
                .path()
                .join("bin")
                .join(format!("{HELPER_PREFIX}{name}"));
            let script = format!(
                "#!/bin/sh\n[ \"$1\" = get ] || {{ echo \"unexpected action $1\" >&2; exit 9; }}\nserver=$(cat)\n{body}\n"
            );
            fs::write(&path, script).expect("writing a fake helper");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .expect("making the fake helper executable");
            self
        }

        fn source(&self) -> CredentialSource {
            CredentialSource::with_docker_config(self.folder.path().to_owned())
                .with_helper_path(self.folder.path().join("bin"))
        }

        async fn lookup(&self, host: &str) -> Option<Credential> {
            self.source()
                .lookup(host)
                .await
                .unwrap_or_else(|error| panic!("looking up `{host}`: {error}"))
        }

        async fn error(&self, host: &str) -> CredentialError {
            match self.source().lookup(host).await {
                Ok(found) => panic!("expected an error for `{host}`, got {found:?}"),
                Err(error) => error,
            }
        }
    }

    /// A helper answering `USER`/`SECRET` for any server, and echoing the server it was asked for as the user
    /// name when USER is `$server`.
    fn answering(username: &str, secret: &str) -> String {
        format!(
            "printf '{{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}}' \"$server\" \"{username}\" \"{secret}\""
        )
    }

    const NOT_FOUND: &str = "echo 'credentials not found in native keychain'; exit 1";

    #[tokio::test]
    async fn missing_config_means_anonymous() {
        let fixture = Fixture::empty();
        assert_eq!(fixture.lookup("ghcr.io").await, None);
        let nowhere = CredentialSource::with_docker_config(fixture.folder.path().join("absent"));
        assert_eq!(nowhere.lookup("ghcr.io").await.expect("lookup"), None);
        assert_eq!(
            CredentialSource::default()
                .lookup("ghcr.io")
                .await
                .expect("lookup"),
            None
        );
    }

    #[tokio::test]
    async fn auths_entry_forms() {
        let fixture = Fixture::new(&json!({ "auths": {
            "auth.example": { "auth": encode("user:pa:ss:word") },
            "fields.example": { "username": "alice", "password": SECRET },
            "auth-wins.example": { "auth": encode("bob:from-auth"), "username": "x", "password": "y" },
            // `az acr login` writes a placeholder user in `auth` next to the refresh token.
            "acr.example": {
                "auth": encode("00000000-0000-0000-0000-000000000000:"),
                "identitytoken": "refresh-token"
            },
            "empty.example": {},
            "null.example": null,
            "padless.example": { "auth": encode("carol:pw").trim_end_matches('=') },
            "nul.example": { "auth": encode("dave:pw\0\0") },
        }}));
        let table = [
            ("auth.example", Some(basic("user", "pa:ss:word"))),
            ("fields.example", Some(basic("alice", SECRET))),
            ("auth-wins.example", Some(basic("bob", "from-auth"))),
            (
                "acr.example",
                Some(Credential::IdentityToken("refresh-token".to_owned())),
            ),
            ("empty.example", None),
            ("null.example", None),
            ("padless.example", Some(basic("carol", "pw"))),
            ("nul.example", Some(basic("dave", "pw"))),
            ("other.example", None),
        ];
        for (host, expected) in table {
            assert_eq!(fixture.lookup(host).await, expected, "host `{host}`");
        }
    }

    #[tokio::test]
    async fn auths_keys_are_matched_by_host() {
        let table = [
            ("registry.example:5000", "registry.example:5000"),
            ("https://registry.example:5000", "registry.example:5000"),
            ("http://registry.example:5000/", "registry.example:5000"),
            ("https://registry.example:5000/v1/", "registry.example:5000"),
            (
                "https://user@Registry.Example:5000/v2/",
                "registry.example:5000",
            ),
            ("https://index.docker.io/v1/", "docker.io"),
            ("https://index.docker.io/v1/", "index.docker.io"),
            ("https://index.docker.io/v1/", "registry-1.docker.io"),
            ("docker.io", "registry-1.docker.io"),
        ];
        for (key, host) in table {
            let fixture = Fixture::new(&json!({ "auths": { key: { "auth": encode("u:p") } } }));
            assert_eq!(
                fixture.lookup(host).await,
                Some(basic("u", "p")),
                "key `{key}`, host `{host}`"
            );
        }
        let fixture = Fixture::new(
            &json!({ "auths": { "registry.example:5000": { "auth": encode("u:p") } } }),
        );
        assert_eq!(
            fixture.lookup("registry.example").await,
            None,
            "another port"
        );
        assert_eq!(fixture.lookup("registry.example:5001").await, None);
    }

    #[tokio::test]
    async fn exact_auths_key_wins_and_empty_entries_are_skipped() {
        let fixture = Fixture::new(&json!({ "auths": {
            "http://registry.example": { "auth": encode("http:p") },
            "https://registry.example": {},
            "registry.example": { "auth": encode("exact:p") },
        }}));
        assert_eq!(
            fixture.lookup("registry.example").await,
            Some(basic("exact", "p"))
        );
        let fixture = Fixture::new(&json!({ "auths": {
            "http://registry.example": {},
            "https://registry.example": { "auth": encode("https:p") },
        }}));
        assert_eq!(
            fixture.lookup("registry.example").await,
            Some(basic("https", "p"))
        );
    }

    #[tokio::test]
    async fn explicit_credentials_win_over_the_docker_config() {
        let fixture = Fixture::new(&json!({
            "auths": { "registry.example": { "auth": encode("config:p") } },
            "credsStore": "absent",
        }));
        let source = fixture
            .source()
            .with_explicit("registry.example", basic("explicit", SECRET))
            .with_explicit("docker.io", basic("hub", SECRET));
        assert_eq!(
            source.lookup("registry.example").await.expect("lookup"),
            Some(basic("explicit", SECRET))
        );
        assert_eq!(
            source.lookup("registry-1.docker.io").await.expect("lookup"),
            Some(basic("hub", SECRET))
        );
        // Another host goes on to the config, whose missing `credsStore` helper is an error.
        assert!(matches!(
            source.lookup("other.example").await,
            Err(CredentialError::HelperMissing { .. })
        ));
    }

    #[tokio::test]
    async fn cred_helpers_win_over_creds_store_which_wins_over_auths() {
        let fixture = Fixture::new(&json!({
            "auths": {
                "helped.example": { "auth": encode("auths:p") },
                "stored.example": { "auth": encode("auths:p") },
                "excluded.example": { "auth": encode("auths:p") },
            },
            "credsStore": "store",
            "credHelpers": { "helped.example": "special", "excluded.example": "" },
        }));
        fixture
            .helper("store", &answering("from-store", SECRET))
            .helper("special", &answering("from-special", SECRET));
        assert_eq!(
            fixture.lookup("helped.example").await,
            Some(basic("from-special", SECRET))
        );
        assert_eq!(
            fixture.lookup("stored.example").await,
            Some(basic("from-store", SECRET))
        );
        // An empty `credHelpers` entry turns the store off for that registry, as in Docker.
        assert_eq!(
            fixture.lookup("excluded.example").await,
            Some(basic("auths", "p"))
        );
    }

    #[tokio::test]
    async fn a_helper_without_credentials_means_anonymous_not_auths() {
        let fixture = Fixture::new(&json!({
            "auths": { "registry.example": { "auth": encode("auths:p") } },
            "credsStore": "store",
        }));
        fixture.helper("store", NOT_FOUND);
        assert_eq!(fixture.lookup("registry.example").await, None);
    }

    #[tokio::test]
    async fn helpers_are_asked_for_the_server_docker_uses() {
        let fixture = Fixture::new(&json!({ "credsStore": "echo" }));
        fixture.helper("echo", &answering("$server", SECRET));
        let table = [
            ("registry.example:5000", "registry.example:5000"),
            ("https://Registry.Example:5000/", "registry.example:5000"),
            ("docker.io", DOCKER_HUB_SERVER),
            ("registry-1.docker.io", DOCKER_HUB_SERVER),
        ];
        for (host, server) in table {
            assert_eq!(
                fixture.lookup(host).await,
                Some(basic(server, SECRET)),
                "host `{host}`"
            );
        }
    }

    #[tokio::test]
    async fn a_helper_is_asked_again_under_the_https_url() {
        let fixture = Fixture::new(&json!({ "credHelpers": { "registry.example": "old" } }));
        fixture.helper(
            "old",
            &format!(
                "[ \"$server\" = https://registry.example ] || {{ {NOT_FOUND}; }}\n{}",
                answering("$server", SECRET)
            ),
        );
        assert_eq!(
            fixture.lookup("registry.example").await,
            Some(basic("https://registry.example", SECRET))
        );
    }

    #[tokio::test]
    async fn helper_answers() {
        let fixture = Fixture::new(&json!({ "credHelpers": {
            "token.example": "token",
            "empty.example": "empty",
            "nothing.example": "nothing",
        }}));
        fixture
            .helper("token", &answering(TOKEN_USERNAME, "refresh"))
            .helper("empty", &answering("", ""))
            .helper("nothing", NOT_FOUND);
        assert_eq!(
            fixture.lookup("token.example").await,
            Some(Credential::IdentityToken("refresh".to_owned()))
        );
        assert_eq!(fixture.lookup("empty.example").await, None);
        assert_eq!(fixture.lookup("nothing.example").await, None);
    }

    #[tokio::test]
    async fn a_failing_helper_reports_its_exit_code_and_stderr_never_stdout() {
        let fixture = Fixture::new(&json!({ "credsStore": "broken" }));
        fixture.helper(
            "broken",
            &format!("echo 'stdout {SECRET}'; echo 'pass store is locked' >&2; exit 3"),
        );
        let error = fixture.error("registry.example").await;
        let message = error.to_string();
        assert!(
            matches!(&error, CredentialError::HelperFailed { code: Some(3), stderr, .. } if stderr == "pass store is locked"),
            "{error:?}"
        );
        assert_eq!(
            message,
            "the credential helper `docker-credential-broken` failed for `registry.example` (exit code 3): \
             pass store is locked"
        );
        assert!(!message.contains(SECRET) && !format!("{error:?}").contains(SECRET));
    }

    #[tokio::test]
    async fn a_missing_helper_is_named_with_the_setting_and_path() {
        let fixture = Fixture::new(&json!({ "credHelpers": { "registry.example": "nowhere" } }));
        let error = fixture.error("registry.example").await;
        let message = error.to_string();
        assert!(
            matches!(error, CredentialError::HelperMissing { .. }),
            "{error:?}"
        );
        assert!(message.contains("`docker-credential-nowhere`"), "{message}");
        assert!(
            message.contains("credHelpers[\"registry.example\"]"),
            "{message}"
        );
        assert!(message.contains("must be on PATH"), "{message}");
    }

    #[tokio::test]
    async fn a_helper_answering_invalid_json_is_an_error_without_its_output() {
        let fixture = Fixture::new(&json!({ "credHelpers": {
            "garbage.example": "garbage",
            "typed.example": "typed",
        }}));
        fixture
            .helper("garbage", &format!("echo 'Secret={SECRET}'"))
            .helper("typed", "echo '{\"Username\":\"u\",\"Secret\":12345}'");
        for host in ["garbage.example", "typed.example"] {
            let error = fixture.error(host).await;
            assert!(
                matches!(error, CredentialError::HelperInvalidAnswer { .. }),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(
                !message.contains(SECRET) && !message.contains("12345"),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_configs_name_the_file_and_the_key() {
        let fixture = Fixture::empty();
        fixture.write_config("{\"auths\": {");
        let error = fixture.error("registry.example").await;
        assert!(
            matches!(error, CredentialError::ConfigSyntax { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains(&fixture.config_path().display().to_string())
        );

        let table = [
            (json!([]), "(the whole file)", "an object"),
            (json!({ "auths": [] }), "auths", "an object"),
            (
                json!({ "auths": { "r.example": SECRET } }),
                "auths[\"r.example\"]",
                "an object",
            ),
            (
                json!({ "auths": { "r.example": { "password": 12345 } } }),
                "auths[\"r.example\"].password",
                "a string",
            ),
            (json!({ "credsStore": 1 }), "credsStore", "a string"),
            (
                json!({ "credHelpers": { "r.example": 1 } }),
                "credHelpers[\"r.example\"]",
                "a string",
            ),
        ];
        for (config, key, expected) in table {
            fixture.write_config(&config.to_string());
            let error = fixture.error("registry.example").await;
            let message = error.to_string();
            assert_eq!(
                message,
                format!(
                    "in the Docker config `{}`, `{key}` must be {expected}",
                    fixture.config_path().display()
                )
            );
            assert!(!message.contains(SECRET) && !message.contains("12345"));
        }
    }

    #[tokio::test]
    async fn an_invalid_auth_names_the_key_but_not_the_value() {
        let fixture = Fixture::empty();
        let table = [
            (format!("{SECRET}!!"), "valid base64"),
            (
                encode(SECRET),
                "base64 of `user:password` with a non-empty user",
            ),
            (
                encode(&format!(":{SECRET}")),
                "base64 of `user:password` with a non-empty user",
            ),
        ];
        for (auth, problem) in table {
            fixture
                .write_config(&json!({ "auths": { "r.example": { "auth": auth } } }).to_string());
            let error = fixture.error("r.example").await;
            let message = error.to_string();
            assert_eq!(
                message,
                format!(
                    "in the Docker config `{}`, `auths[\"r.example\"].auth` is not {problem}",
                    fixture.config_path().display()
                )
            );
            assert!(!message.contains(SECRET) && !message.contains(&auth));
        }
        // A broken entry for another registry does not stop this one.
        fixture.write_config(
            &json!({ "auths": { "r.example": { "auth": "!!" }, "s.example": { "auth": encode("u:p") } } })
                .to_string(),
        );
        assert_eq!(fixture.lookup("s.example").await, Some(basic("u", "p")));
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let credentials = [
            basic("alice", SECRET),
            Credential::IdentityToken(SECRET.to_owned()),
        ];
        for credential in &credentials {
            let printed = format!("{credential:?} {credential:#?}");
            assert!(!printed.contains(SECRET), "{printed}");
            assert!(printed.contains("<redacted>"), "{printed}");
        }
        assert_eq!(
            format!("{:?}", credentials[0]),
            "Basic { username: \"alice\", password: <redacted> }"
        );
        assert_eq!(format!("{:?}", credentials[1]), "IdentityToken(<redacted>)");
        let source = CredentialSource::default().with_explicit("r.example", basic("alice", SECRET));
        assert!(!format!("{source:?}").contains(SECRET));
    }

    #[test]
    fn username_is_for_messages() {
        assert_eq!(basic("alice", SECRET).username(), Some("alice"));
        assert_eq!(
            Credential::IdentityToken(SECRET.to_owned()).username(),
            None
        );
    }

    #[test]
    fn hosts_are_normalized() {
        let table = [
            ("ghcr.io", "ghcr.io"),
            ("GHCR.io", "ghcr.io"),
            ("https://ghcr.io/v2/", "ghcr.io"),
            ("localhost:5000/path?x#y", "localhost:5000"),
            ("[::1]:5000", "[::1]:5000"),
            ("index.docker.io", "docker.io"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
        ];
        for (name, host) in table {
            assert_eq!(normalize_host(name), host, "`{name}`");
        }
    }
}
