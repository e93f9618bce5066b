//! Reading Docker's `config.json`: the `auths`, `credHelpers` and `credsStore` keys, the base64 `auth` field,
//! and matching config keys to a registry by host. The order in which these are consulted is described in the
//! parent module.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Map, Value};

use super::{Credential, CredentialError};

/// The key `docker login` uses for Docker Hub, in `auths` and towards helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";
/// Host names that all mean Docker Hub; the first is the normalized form.
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A registry as this module matches it.
pub(super) struct Registry {
    /// Normalized: lower case, no scheme or path, Docker Hub's aliases as `docker.io`.
    pub(super) host: String,
}

impl Registry {
    pub(super) fn new(host: &str) -> Self {
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
    pub(super) fn helper_servers(&self) -> Vec<String> {
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
pub(super) fn normalize_host(name: &str) -> String {
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
pub(super) struct DockerConfig {
    auths: BTreeMap<String, AuthEntry>,
    pub(super) creds_store: Option<String>,
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
    pub(super) async fn load(path: &Path) -> Result<Option<Self>, CredentialError> {
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
    pub(super) fn helper_for(&self, registry: &Registry) -> Option<(&str, &str)> {
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
    pub(super) fn auth_for(
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{Fixture, SECRET, answering, basic, encode};
    use super::*;

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
