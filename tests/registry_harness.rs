//! Proves the test harness against the real registry: images pushed over plain HTTP and over TLS with
//! htpasswd auth read back byte for byte, under their digests.

mod common;

use std::process::Command;

use common::commands::run;
use common::{Registry, tools};
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Certificate, Client, RequestBuilder, StatusCode, Url};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const DIGEST_HEADER: &str = "Docker-Content-Digest";

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Just enough of the distribution API to push and pull one image; the product's client is tested elsewhere.
struct Session {
    client: Client,
    base: Url,
    credentials: Option<common::Credentials>,
}

impl Session {
    fn new(client: Client, registry: &Registry) -> Self {
        Self {
            client,
            base: Url::parse(&registry.url()).expect("registry URL"),
            credentials: None,
        }
    }

    fn with_credentials(mut self, credentials: &common::Credentials) -> Self {
        self.credentials = Some(credentials.clone());
        self
    }

    fn request(&self, method: reqwest::Method, url: Url) -> RequestBuilder {
        let request = self.client.request(method, url);
        match &self.credentials {
            Some(credentials) => request.basic_auth(&credentials.user, Some(&credentials.password)),
            None => request,
        }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("registry path")
    }

    /// A monolithic upload: `POST …/blobs/uploads/`, then `PUT <Location>?digest=…` with the bytes.
    /// Returns the response to the `PUT`.
    async fn upload_blob(&self, repository: &str, bytes: &[u8], digest: &str) -> reqwest::Response {
        let started = self
            .request(
                reqwest::Method::POST,
                self.url(&format!("/v2/{repository}/blobs/uploads/")),
            )
            .send()
            .await
            .expect("starting an upload");
        assert_eq!(started.status(), StatusCode::ACCEPTED, "starting an upload");
        let location = started.headers()[LOCATION]
            .to_str()
            .expect("Location header");
        let mut upload = self.base.join(location).expect("upload location");
        upload.query_pairs_mut().append_pair("digest", digest);
        self.request(reqwest::Method::PUT, upload)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("finishing an upload")
    }

    async fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let response = self.upload_blob(repository, bytes, &digest).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "pushing blob {digest}"
        );
        assert_eq!(response.headers()[DIGEST_HEADER], digest.as_str());
        let location = response.headers()[LOCATION]
            .to_str()
            .expect("Location header");
        assert_eq!(
            self.base.join(location).expect("blob location"),
            self.url(&format!("/v2/{repository}/blobs/{digest}"))
        );
        digest
    }

    async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &[u8],
    ) -> reqwest::Response {
        self.request(
            reqwest::Method::PUT,
            self.url(&format!("/v2/{repository}/manifests/{reference}")),
        )
        .header(CONTENT_TYPE, OCI_MANIFEST)
        .body(manifest.to_vec())
        .send()
        .await
        .expect("pushing a manifest")
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, self.url(path))
            .header(ACCEPT, OCI_MANIFEST)
            .send()
            .await
            .expect("GET")
    }
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len() })
}

fn config_for(layer: &[u8]) -> Vec<u8> {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [sha256_digest(layer)] },
    })
    .to_string()
    .into_bytes()
}

fn manifest_for(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers.iter().map(|layer| descriptor(OCI_LAYER, layer)).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

/// Pushes a one-layer image as `repository:v1`, reads everything back and returns the manifest.
async fn push_and_read_back(session: &Session, repository: &str) -> Vec<u8> {
    let layer = format!("layer of {repository}\n").into_bytes();
    let config = config_for(&layer);
    let manifest = manifest_for(&config, &[&layer]);
    let manifest_digest = sha256_digest(&manifest);

    let layer_digest = session.push_blob(repository, &layer).await;
    session.push_blob(repository, &config).await;
    let pushed = session.put_manifest(repository, "v1", &manifest).await;
    assert_eq!(pushed.status(), StatusCode::CREATED, "pushing the manifest");
    assert_eq!(pushed.headers()[DIGEST_HEADER], manifest_digest.as_str());

    let blob = session
        .get(&format!("/v2/{repository}/blobs/{layer_digest}"))
        .await;
    assert_eq!(blob.status(), StatusCode::OK);
    assert_eq!(blob.headers()[DIGEST_HEADER], layer_digest.as_str());
    assert_eq!(blob.bytes().await.expect("blob body"), layer);

    for reference in ["v1", manifest_digest.as_str()] {
        let pulled = session
            .get(&format!("/v2/{repository}/manifests/{reference}"))
            .await;
        assert_eq!(pulled.status(), StatusCode::OK, "manifest {reference}");
        assert_eq!(pulled.headers()[CONTENT_TYPE], OCI_MANIFEST);
        assert_eq!(pulled.headers()[DIGEST_HEADER], manifest_digest.as_str());
        assert_eq!(pulled.bytes().await.expect("manifest body"), manifest);
    }

    let tags = json_body(session.get(&format!("/v2/{repository}/tags/list")).await).await;
    assert_eq!(tags, json!({ "name": repository, "tags": ["v1"] }));
    manifest
}

async fn json_body(response: reqwest::Response) -> Value {
    let body = response.bytes().await.expect("response body");
    serde_json::from_slice(&body).expect("a JSON body")
}

/// The first error code of an OCI error envelope `{"errors":[{"code":…}]}`.
async fn error_code(response: reqwest::Response) -> String {
    let envelope = json_body(response).await;
    envelope["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn plain_registry_stores_and_serves_an_image() {
    let registry = Registry::start();
    assert_eq!(registry.url(), format!("http://{}", registry.host()));

    let session = Session::new(Client::new(), &registry);
    let version_check = session.get("/v2/").await;
    assert_eq!(version_check.status(), StatusCode::OK);
    assert_eq!(
        version_check.headers()["Docker-Distribution-API-Version"],
        "registry/2.0"
    );

    push_and_read_back(&session, "harness/plain").await;
}

#[tokio::test]
async fn plain_registry_rejects_wrong_digests_and_missing_blobs() {
    let registry = Registry::start();
    let session = Session::new(Client::new(), &registry);
    let repository = "harness/rejects";

    let wrong = session
        .upload_blob(repository, b"some bytes", &sha256_digest(b"other bytes"))
        .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(wrong).await, "DIGEST_INVALID");

    let config = config_for(b"never pushed");
    session.push_blob(repository, &config).await;
    let manifest = manifest_for(&config, &[b"never pushed"]);
    let dangling = session.put_manifest(repository, "v1", &manifest).await;
    assert_eq!(dangling.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(dangling).await, "MANIFEST_BLOB_UNKNOWN");

    let missing = session.get(&format!("/v2/{repository}/manifests/v1")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tls_registry_requires_basic_auth_and_serves_an_image() {
    let registry = Registry::start_tls_with_htpasswd("alice", "s3cret-pass");
    assert_eq!(registry.url(), format!("https://{}", registry.host()));
    let ca = std::fs::read(registry.ca_cert()).expect("reading the CA certificate");
    let client = Client::builder()
        .add_root_certificate(Certificate::from_pem(&ca).expect("CA certificate"))
        .build()
        .expect("HTTPS client");

    let anonymous = Session::new(client.clone(), &registry);
    let challenge = anonymous.get("/v2/").await;
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.headers()[WWW_AUTHENTICATE],
        r#"Basic realm="imagepipe-test""#
    );

    let wrong_password = common::Credentials::new("alice", "wrong");
    let intruder = Session::new(client.clone(), &registry).with_credentials(&wrong_password);
    assert_eq!(
        intruder.get("/v2/").await.status(),
        StatusCode::UNAUTHORIZED
    );

    let session = Session::new(client, &registry).with_credentials(registry.credentials());
    assert_eq!(session.get("/v2/").await.status(), StatusCode::OK);
    push_and_read_back(&session, "harness/tls").await;

    // Without the CA, the certificate is not trusted.
    let untrusting =
        Session::new(Client::new(), &registry).with_credentials(registry.credentials());
    let refused = untrusting
        .request(reqwest::Method::GET, untrusting.url("/v2/"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a client without the CA connected: {refused:?}"
    );
}

#[tokio::test]
async fn external_tools_read_what_the_harness_pushed() {
    let registry = Registry::start();
    let repository = "harness/tools";
    let manifest = push_and_read_back(&Session::new(Client::new(), &registry), repository).await;
    let digest = sha256_digest(&manifest);
    let reference = format!("{}/{repository}:v1", registry.host());
    let transport_reference = format!("docker://{reference}");
    let stdout = |command: &mut Command| String::from_utf8_lossy(&run(command).stdout).into_owned();

    let raw = stdout(Command::new(tools::skopeo_1_18()).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &transport_reference,
    ]));
    assert_eq!(raw.as_bytes(), manifest);
    let inspected = stdout(Command::new(tools::skopeo()).args([
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &transport_reference,
    ]));
    assert_eq!(inspected.trim(), digest);
    let fetched =
        stdout(Command::new(tools::oras()).args(["manifest", "fetch", "--plain-http", &reference]));
    assert_eq!(fetched.as_bytes(), manifest);
    // Where cosign would put the image's signature: the tag scheme, `sha256-<hex>.sig`.
    let signature = stdout(Command::new(tools::cosign()).args([
        "triangulate",
        "--allow-http-registry",
        &reference,
    ]));
    assert_eq!(
        signature.trim(),
        format!(
            "{}/{repository}:{}.sig",
            registry.host(),
            digest.replace(':', "-")
        )
    );
}

#[test]
fn docker_config_holds_the_registry_credentials() {
    let registry = Registry::start_tls_with_htpasswd("bob", "pa:ss");
    let directory = registry.docker_config_dir();
    let config: Value = serde_json::from_slice(
        &std::fs::read(directory.join("config.json")).expect("reading config.json"),
    )
    .expect("config.json is JSON");
    // base64("bob:pa:ss")
    assert_eq!(
        config,
        json!({ "auths": { registry.host(): { "auth": "Ym9iOnBhOnNz" } } })
    );
}
