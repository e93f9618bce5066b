//! Running `docker-credential-NAME` helper programs (the docker-credential-helpers protocol: `get` as the
//! argument, the server name on stdin, a JSON answer on stdout), with a timeout, and without ever showing their
//! stdout, which holds secrets on success.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use super::docker_config::Registry;
use super::{Credential, CredentialError};

/// The user name a helper answers with when its secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// What a helper built on docker-credential-helpers prints (to stdout) when it has nothing for a server.
const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";
pub(super) const HELPER_PREFIX: &str = "docker-credential-";
/// A helper waiting for a passphrase prompt nobody sees would otherwise hang a CI job forever.
pub(super) const HELPER_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of a failing helper's stderr an error message carries.
const STDERR_LIMIT: usize = 2000;

/// Asks the helper `docker-credential-NAME` (found in `helper_path`, else on `PATH`) for the registry's
/// credential. `setting` and `config` name where the helper was configured, for the error when it is missing.
pub(super) async fn ask(
    helper_path: Option<&OsStr>,
    name: &str,
    setting: &str,
    config: &Path,
    registry: &Registry,
) -> Result<Option<Credential>, CredentialError> {
    let program = format!("{HELPER_PREFIX}{name}");
    let executable = find(&program, helper_path).ok_or_else(|| CredentialError::HelperMissing {
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

/// The helper program in `helper_path`, else on `PATH`.
fn find(program: &str, helper_path: Option<&OsStr>) -> Option<PathBuf> {
    let search_path = match helper_path {
        Some(path) => path.to_owned(),
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
    crate::process::spawn(
        Command::new(executable)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true),
    )
    .await
    .map_err(|source| CredentialError::HelperStart {
        program: executable.to_owned(),
        source,
    })
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
    use serde_json::json;

    use super::super::tests::{Fixture, NOT_FOUND, SECRET, answering, basic};
    use super::*;

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
}
