//! Every secret is masked on the CI host before it is used, and appears nowhere else in the log (issue #8 item
//! 10): the key password (`COSIGN_PASSWORD`), a private key given as `env://VAR`, and the registry password or
//! identity token read from Docker's `config.json` when the registry is first reached.
//!
//! The binary runs as GitHub Actions (`GITHUB_ACTIONS=true`) and Azure Pipelines (`TF_BUILD=True`) run it,
//! with `--verbose`, its stdout and stderr in one file in the order written. "Before first use" is checked
//! where the credential is used: the token server looks at that file when the credential reaches it, and the
//! mask must be there already.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::images::{TestImage, write_fragment};
use common::token_server::{Anonymous, TokenServer};
use common::{Credentials, Imagepipe, Registry, path, stages};
use imagepipe::store::registry::{ClientSettings, CredentialSource, RegistryClient, RegistryStore};
use serde_json::json;

const REPOSITORY: &str = "acme/secrets";
const USER: &str = "ci-robot";
const REGISTRY_PASSWORD: &str = "Registry-Pa55-7f3a91";
const KEY_PASSWORD: &str = "Cosign-Pa55-c41d07";
/// The variable a CI step puts the private key in, for `--key env://SIGNING_KEY`.
const KEY_VARIABLE: &str = "SIGNING_KEY";

/// The CI hosts, each with the mask command it must print first.
#[derive(Debug, Clone, Copy)]
enum Host {
    GitHub,
    Azure,
}

impl Host {
    const ALL: [Self; 2] = [Self::GitHub, Self::Azure];

    fn mask_command(self, secret_line: &str) -> String {
        match self {
            Self::GitHub => format!("::add-mask::{secret_line}"),
            Self::Azure => format!("##vso[task.setsecret]{secret_line}"),
        }
    }

    fn is_mask(self, line: &str) -> bool {
        match self {
            Self::GitHub => line.starts_with("::add-mask::"),
            Self::Azure => line.starts_with("##vso[task.setsecret]"),
        }
    }

    /// The environment the runner or agent gives a step, with its files in `folder`.
    fn environment(self, folder: &Path) -> Vec<(&'static str, PathBuf)> {
        match self {
            Self::GitHub => vec![
                ("GITHUB_ACTIONS", PathBuf::from("true")),
                ("GITHUB_OUTPUT", folder.join("github-output")),
                ("GITHUB_STEP_SUMMARY", folder.join("github-summary")),
            ],
            Self::Azure => vec![
                ("TF_BUILD", PathBuf::from("True")),
                ("AGENT_TEMPDIRECTORY", folder.to_owned()),
            ],
        }
    }
}

/// A staging registry holding two platform images, an image-info ready for `sign`, and a key pair.
struct Staging {
    folder: tempfile::TempDir,
    info: PathBuf,
    /// The encrypted private key's PEM text, given to `sign` in [`KEY_VARIABLE`].
    key_text: String,
    host: String,
    /// `--ca-cert` for a TLS registry.
    ca_cert: Option<PathBuf>,
}

impl Staging {
    async fn prepare(host: String, ca_cert: Option<PathBuf>, docker_config: &Path) -> Self {
        let folder = tempfile::tempdir().expect("temp dir");
        let settings = ClientSettings {
            ca_certificates: ca_cert.iter().cloned().collect(),
            credentials: CredentialSource::with_docker_config(docker_config.to_owned()),
            ..ClientSettings::default()
        };
        let store = RegistryStore::new(
            Arc::new(RegistryClient::new(settings).expect("client")),
            &host,
        );
        let public = "registry.example.com";
        let mut images = Vec::new();
        for (index, architecture) in ["amd64", "arm64"].iter().enumerate() {
            let image = TestImage::new("linux", architecture, None, "secrets");
            image.push(&store, REPOSITORY, None).await;
            write_fragment(
                &folder.path().join(format!("fragments/{architecture}.json")),
                REPOSITORY,
                vec![image.platform_entry(public, REPOSITORY, &format!("src/{architecture}"), &[])],
            );
            images.push(json!({"platforms": [{"dockerfile": format!("src/{architecture}"), "os": "linux",
                "osVersion": "bookworm", "architecture": architecture, "tags": {format!("{index}"): {}}}]}));
        }
        let manifest = folder.path().join("manifest.json");
        let declaration =
            json!({"registry": public, "repos": [{"name": REPOSITORY, "images": images}]});
        std::fs::write(&manifest, declaration.to_string()).expect("writes");
        let info = stages::post_build(
            &manifest,
            &folder.path().join("fragments"),
            &folder.path().join("image-info.json"),
        );
        let mut create_manifest =
            stages::create_manifest(&manifest, &info, &host).env("DOCKER_CONFIG", docker_config);
        if let Some(ca_cert) = &ca_cert {
            create_manifest = create_manifest.arg("--ca-cert").arg(ca_cert);
        }
        create_manifest.run().succeeded();
        let prefix = folder.path().join("release");
        Imagepipe::new()
            .args(["generate-key", "--output-prefix", &path(&prefix)])
            .env("COSIGN_PASSWORD", KEY_PASSWORD)
            .run()
            .succeeded();
        let key_text = std::fs::read_to_string(folder.path().join("release.key")).expect("reads");
        Self {
            folder,
            info,
            key_text,
            host,
            ca_cert,
        }
    }

    /// `imagepipe --verbose sign` with the key in [`KEY_VARIABLE`], as `host` runs a step, credentials from
    /// `docker_config`; stdout and stderr go to `log` in the order written. Returns the exit code.
    fn sign(&self, host: Host, docker_config: &Path, log: &Path) -> Option<i32> {
        let step = self.folder.path().join(format!("{host:?}"));
        std::fs::create_dir_all(&step).expect("creates");
        let mut sign = Imagepipe::new()
            .args([
                "--verbose",
                "sign",
                "--image-info",
                &path(&self.info),
                "--output",
            ])
            .arg(step.join("signed.json"))
            .args([
                "--key",
                &format!("env://{KEY_VARIABLE}"),
                "--staging-registry",
                &self.host,
            ])
            .env(KEY_VARIABLE, &self.key_text)
            .env("COSIGN_PASSWORD", KEY_PASSWORD)
            .env("DOCKER_CONFIG", docker_config)
            .envs(host.environment(&step));
        if let Some(ca_cert) = &self.ca_cert {
            sign = sign.arg("--ca-cert").arg(ca_cert);
        }
        let output = File::create(log).expect("creates the log");
        sign.command()
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clones the handle"))
            .stderr(output)
            .status()
            .expect("the binary runs")
            .code()
    }

    /// The step's files other than the log that a CI host shows: outputs and summaries.
    fn host_files(&self, host: Host) -> String {
        let step = self.folder.path().join(format!("{host:?}"));
        let mut text = String::new();
        for entry in std::fs::read_dir(&step).expect("lists") {
            let file = entry.expect("entry").path();
            if file.extension().is_none_or(|extension| extension != "json") {
                text += &std::fs::read_to_string(&file).unwrap_or_default();
            }
        }
        text
    }

    /// The key's secret lines: every non-empty line of its PEM text.
    fn key_lines(&self) -> Vec<String> {
        self.key_text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Checks that each secret in `secrets` (each a single line) is masked, and appears nowhere but in its mask
/// command, in the log or in the host's other files (outputs, summaries).
fn assert_masked(host: Host, log: &str, other_files: &str, secrets: &[String]) {
    let lines: Vec<&str> = log.lines().collect();
    for secret in secrets {
        let mask = host.mask_command(secret);
        assert!(
            lines.contains(&mask.as_str()),
            "{host:?}: `{mask}` is missing:\n{log}"
        );
        for (number, line) in lines.iter().enumerate() {
            assert!(
                host.is_mask(line) || !line.contains(secret.as_str()),
                "{host:?}: a secret appears unmasked on line {number}:\n{log}"
            );
        }
        assert!(
            !other_files.contains(secret.as_str()),
            "{host:?}: a secret is in the step's outputs or summary:\n{other_files}"
        );
    }
    assert!(!log.contains("panicked"), "{log}");
}

/// Checks that the masks of `secrets` come before the first line that names `registry`: before anything is
/// done at all.
fn assert_masked_first(host: Host, log: &str, secrets: &[String], registry: &str) {
    let lines: Vec<&str> = log.lines().collect();
    let first_registry_line = lines
        .iter()
        .position(|line| !host.is_mask(line) && line.contains(registry))
        .unwrap_or_else(|| panic!("the verbose log never names `{registry}`:\n{log}"));
    for secret in secrets {
        let mask = host.mask_command(secret);
        let masked_at = lines.iter().position(|line| *line == mask);
        assert!(
            masked_at.is_some_and(|masked_at| masked_at < first_registry_line),
            "{host:?}: `{mask}` is not printed before the registry is reached (line {first_registry_line}):\n{log}"
        );
    }
}

#[tokio::test]
async fn secrets_from_docker_config_the_key_and_its_password_are_masked_before_use() {
    let registry = Registry::start_tls_with_htpasswd(USER, REGISTRY_PASSWORD);
    let docker_config = registry.docker_config_dir();
    let staging = Staging::prepare(
        registry.host(),
        Some(registry.ca_cert().to_owned()),
        &docker_config,
    )
    .await;
    // Read from the environment at the start: masked before anything else happens.
    let mut given = vec![KEY_PASSWORD.to_owned()];
    given.extend(staging.key_lines());
    // Read from config.json when the registry is first reached; when they are first used is checked in
    // `config_json_credentials_are_masked_before_they_reach_the_token_server`.
    let found = vec![
        REGISTRY_PASSWORD.to_owned(),
        // The `auth` value of config.json, and of every Basic `Authorization` header.
        Credentials::new(USER, REGISTRY_PASSWORD).basic_token(),
    ];
    for host in Host::ALL {
        let log_file = staging.folder.path().join(format!("{host:?}.log"));
        let code = staging.sign(host, &docker_config, &log_file);
        let log = std::fs::read_to_string(&log_file).expect("reads the log");
        assert_eq!(code, Some(0), "{host:?}:\n{log}");
        assert_masked_first(host, &log, &given, &registry.host());
        let secrets: Vec<String> = given.iter().chain(&found).cloned().collect();
        assert_masked(host, &log, &staging.host_files(host), &secrets);
    }
}

/// The token server sees each credential from config.json (the password with Basic auth, the identity token as
/// a refresh-token grant) only after the binary printed its mask: it reads the log when the request arrives,
/// before answering, while the binary waits for the answer.
#[tokio::test]
async fn config_json_credentials_are_masked_before_they_reach_the_token_server() {
    let token_server = TokenServer::start(
        Credentials::new(USER, REGISTRY_PASSWORD),
        Anonymous::EmptyAccess,
    );
    let refresh_token = refresh_token_of(&token_server).await;
    let registry = Registry::start_with_token_server(token_server);
    let folder = tempfile::tempdir().expect("temp dir");
    let with_password = registry.docker_config_dir();
    let with_identity_token = folder.path().join("identity-token-config");
    std::fs::create_dir_all(&with_identity_token).expect("creates");
    std::fs::write(
        with_identity_token.join("config.json"),
        json!({"auths": {registry.host(): {"identitytoken": refresh_token}}}).to_string(),
    )
    .expect("writes");
    let staging = Staging::prepare(registry.host(), None, &with_password).await;

    for host in Host::ALL {
        for (docker_config, secret) in [
            (&with_password, REGISTRY_PASSWORD.to_owned()),
            (&with_identity_token, refresh_token.clone()),
        ] {
            let log_file = folder.path().join(format!("{host:?}-{}.log", secret.len()));
            let seen: Arc<Mutex<Vec<bool>>> = Arc::default();
            {
                let (seen, log_file, mask) = (
                    Arc::clone(&seen),
                    log_file.clone(),
                    host.mask_command(&secret),
                );
                registry.token_server().witness(move |request| {
                    if request.basic_auth || request.param("refresh_token").is_some() {
                        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
                        seen.lock()
                            .expect("lock")
                            .push(log.lines().any(|line| line == mask));
                    }
                });
            }
            let code = staging.sign(host, docker_config, &log_file);
            let log = std::fs::read_to_string(&log_file).expect("reads the log");
            assert_eq!(code, Some(0), "{host:?}:\n{log}");
            let seen = seen.lock().expect("lock").clone();
            assert!(
                !seen.is_empty(),
                "{host:?}: the credential never reached the token server:\n{log}"
            );
            assert!(
                seen.iter().all(|masked| *masked),
                "{host:?}: the credential reached the token server before its mask was printed \
                 ({seen:?}):\n{log}"
            );
            assert_masked(host, &log, &staging.host_files(host), &[secret]);
        }
    }
}

/// A refresh token for [`USER`], as `docker login` stores one in `identitytoken`.
async fn refresh_token_of(server: &TokenServer) -> String {
    let answer = reqwest::Client::new()
        .get(server.realm())
        .query(&[
            ("service", common::token_server::SERVICE),
            ("scope", &format!("repository:{REPOSITORY}:pull,push")),
            ("offline_token", "true"),
        ])
        .header(
            "Authorization",
            format!(
                "Basic {}",
                STANDARD.encode(format!("{USER}:{REGISTRY_PASSWORD}"))
            ),
        )
        .send()
        .await
        .expect("the token server answers")
        .bytes()
        .await
        .expect("an answer");
    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
    answer["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}
