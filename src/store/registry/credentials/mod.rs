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

mod docker_config;
mod helper;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use self::docker_config::{DockerConfig, Registry, normalize_host};
use self::helper::HELPER_TIMEOUT;

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
    /// What must never reach a log: the password, and `base64(user:password)` as it travels in a Basic
    /// `Authorization` header and stands in a Docker config's `auth`; or the identity token.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Self::Basic { username, password } => vec![
                password.clone(),
                STANDARD.encode(format!("{username}:{password}")),
            ],
            Self::IdentityToken(token) => vec![token.clone()],
        }
    }

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

/// Told each secret a lookup read from Docker's config (an `auths` entry or a helper's answer) before the
/// lookup returns it, so before it is used: the caller hides it from the log (a CI host's masking, wired up in
/// dispatch; this module knows no CI host). Explicit credentials are announced by whoever gave them.
#[derive(Clone)]
pub struct SecretAnnouncer(Arc<dyn Fn(&str) + Send + Sync>);

impl SecretAnnouncer {
    pub fn new(announce: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self(Arc::new(announce))
    }

    fn announce(&self, credential: &Credential) {
        for secret in credential.secrets() {
            (self.0)(&secret);
        }
    }
}

impl fmt::Debug for SecretAnnouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretAnnouncer")
    }
}

/// The folder of Docker's `config.json`: `DOCKER_CONFIG`, else `$HOME/.docker`; external tools that read the same
/// file (buildah's `--authfile`) are pointed at it too.
pub fn docker_config_folder() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    let home = non_empty("HOME").or_else(|| non_empty("USERPROFILE"));
    non_empty("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| home.map(|home| PathBuf::from(home).join(".docker")))
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
    /// Told each secret read from Docker's config before it is returned.
    announcer: Option<SecretAnnouncer>,
}

impl CredentialSource {
    /// Docker's config folder from `DOCKER_CONFIG`, else `$HOME/.docker`.
    pub fn from_environment() -> Self {
        Self {
            docker_config: docker_config_folder(),
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

    /// Announces every secret read from Docker's config to `announcer` before a lookup returns it.
    pub fn announcing_secrets_to(mut self, announcer: SecretAnnouncer) -> Self {
        self.announcer = Some(announcer);
        self
    }

    #[cfg(test)]
    fn with_helper_path(mut self, path: impl Into<OsString>) -> Self {
        self.helper_path = Some(path.into());
        self
    }

    /// The credential for a registry host (`host[:port]`), or None for anonymous access. Docker's config is read
    /// on each call: callers look a host up once, when they first reach it.
    pub async fn lookup(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        let registry = Registry::new(host);
        if let Some(credential) = self.explicit.get(&registry.host) {
            tracing::debug!(registry = %registry.host, "using the credentials given explicitly");
            return Ok(Some(credential.clone()));
        }
        let credential = self.lookup_docker_config(&registry).await?;
        if let (Some(credential), Some(announcer)) = (&credential, &self.announcer) {
            announcer.announce(credential);
        }
        Ok(credential)
    }

    async fn lookup_docker_config(
        &self,
        registry: &Registry,
    ) -> Result<Option<Credential>, CredentialError> {
        let Some(folder) = &self.docker_config else {
            return Ok(None);
        };
        let path = folder.join("config.json");
        let Some(config) = DockerConfig::load(&path).await? else {
            tracing::debug!(config = %path.display(), "no Docker config, so no credentials");
            return Ok(None);
        };

        let helper = match config.helper_for(registry) {
            Some((key, name)) => Some((format!("credHelpers[{key:?}]"), name)),
            None => config
                .creds_store
                .as_deref()
                .filter(|name| !name.is_empty())
                .map(|name| ("credsStore".to_owned(), name)),
        };
        // An empty helper name (possible only in `credHelpers`) sends this registry to `auths`.
        if let Some((setting, name)) = helper.filter(|(_, name)| !name.is_empty()) {
            return helper::ask(self.helper_path.as_deref(), name, &setting, &path, registry).await;
        }
        let credential = config.auth_for(registry, &path)?;
        tracing::debug!(
            registry = %registry.host,
            found = credential.is_some(),
            config = %path.display(),
            "looked up `auths`"
        );
        Ok(credential)
    }
}

/// The fixture and helpers here are shared with the tests of `docker_config` and `helper`, which all go
/// through [`CredentialSource::lookup`].
#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::{Value, json};
    use tempfile::TempDir;

    use super::helper::HELPER_PREFIX;
    use super::*;

    pub(super) const SECRET: &str = "s3cr3t-Pa55word";

    pub(super) fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    pub(super) fn encode(text: &str) -> String {
        STANDARD.encode(text)
    }

    /// A temp folder with `config.json` holding `config`, and a `bin` folder for fake helpers.
    pub(super) struct Fixture {
        folder: TempDir,
    }

    impl Fixture {
        pub(super) fn new(config: &Value) -> Self {
            let fixture = Self::empty();
            fixture.write_config(&config.to_string());
            fixture
        }

        pub(super) fn empty() -> Self {
            let folder = tempfile::tempdir().expect("creating a temp dir");
            fs::create_dir(folder.path().join("bin")).expect("creating the helper folder");
            Self { folder }
        }

        pub(super) fn write_config(&self, text: &str) {
            fs::write(self.config_path(), text).expect("writing config.json");
        }

        pub(super) fn config_path(&self) -> PathBuf {
            self.folder.path().join("config.json")
        }

        /// Writes `bin/docker-credential-NAME`, a shell script with `body`; `$server` holds its stdin.
        pub(super) fn helper(&self, name: &str, body: &str) -> &Self {
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

        pub(super) fn source(&self) -> CredentialSource {
            CredentialSource::with_docker_config(self.folder.path().to_owned())
                .with_helper_path(self.folder.path().join("bin"))
        }

        pub(super) async fn lookup(&self, host: &str) -> Option<Credential> {
            self.source()
                .lookup(host)
                .await
                .unwrap_or_else(|error| panic!("looking up `{host}`: {error}"))
        }

        pub(super) async fn error(&self, host: &str) -> CredentialError {
            match self.source().lookup(host).await {
                Ok(found) => panic!("expected an error for `{host}`, got {found:?}"),
                Err(error) => error,
            }
        }
    }

    /// A helper answering `USER`/`SECRET` for any server, and echoing the server it was asked for as the user
    /// name when USER is `$server`.
    pub(super) fn answering(username: &str, secret: &str) -> String {
        format!(
            "printf '{{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}}' \"$server\" \"{username}\" \"{secret}\""
        )
    }

    pub(super) const NOT_FOUND: &str = "echo 'credentials not found in native keychain'; exit 1";

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
    async fn secrets_read_from_the_docker_config_are_announced_before_they_are_returned() {
        let fixture = Fixture::new(&json!({
            "auths": {
                "basic.example": { "auth": encode(&format!("alice:{SECRET}")) },
                "token.example": { "identitytoken": "refresh-0123456789" },
                "explicit.example": { "auth": encode("config:p") },
            },
            "credHelpers": { "helped.example": "store" },
        }));
        fixture.helper("store", &answering("bob", "helper-secret-42"));
        let announced = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let source = {
            let announced = Arc::clone(&announced);
            fixture
                .source()
                .with_explicit("explicit.example", basic("carol", "given-explicitly"))
                .announcing_secrets_to(SecretAnnouncer::new(move |secret| {
                    announced.lock().expect("lock").push(secret.to_owned());
                }))
        };
        let take = || std::mem::take(&mut *announced.lock().expect("lock"));
        assert_eq!(
            source.lookup("basic.example").await.expect("lookup"),
            Some(basic("alice", SECRET))
        );
        assert_eq!(
            take(),
            [SECRET.to_owned(), encode(&format!("alice:{SECRET}"))]
        );
        assert!(
            source
                .lookup("token.example")
                .await
                .expect("lookup")
                .is_some()
        );
        assert_eq!(take(), ["refresh-0123456789"]);
        assert!(
            source
                .lookup("helped.example")
                .await
                .expect("lookup")
                .is_some()
        );
        assert_eq!(
            take(),
            [
                "helper-secret-42".to_owned(),
                encode("bob:helper-secret-42")
            ]
        );
        // Explicit credentials are announced by whoever gave them; anonymous access has nothing to announce.
        assert!(
            source
                .lookup("explicit.example")
                .await
                .expect("lookup")
                .is_some()
        );
        assert!(
            source
                .lookup("anonymous.example")
                .await
                .expect("lookup")
                .is_none()
        );
        assert_eq!(take(), Vec::<String>::new());
        assert!(!format!("{source:?}").contains(SECRET));
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
}
