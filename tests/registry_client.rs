//! The registry client against real registries (plain, bearer-token) and, for what a real one cannot do, a
//! hostile fake that serves content under the wrong digest.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::Arc;

use bytes::Bytes;
use common::Registry;
use common::images::TestImage;
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{ClientSettings, CredentialSource, RegistryClient, RegistryStore};
use imagepipe::store::{ErrorCode, ManifestReference, Store, StoreError, media_type};

fn store_with(host: &str, settings: ClientSettings) -> (Arc<RegistryClient>, RegistryStore) {
    let client = Arc::new(RegistryClient::new(settings).expect("client"));
    (client.clone(), RegistryStore::new(client, host))
}

fn store(host: &str) -> RegistryStore {
    store_with(host, ClientSettings::default()).1
}

#[tokio::test]
async fn large_blobs_are_uploaded_in_chunks() {
    let registry = Registry::start();
    let settings = ClientSettings {
        chunk_size: 1000,
        ..ClientSettings::default()
    };
    let (client, store) = store_with(&registry.host(), settings);
    let blob = Bytes::from(
        (0..4500u32)
            .map(|index| (index % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let digest = Digest::of(&blob);
    let before = client.request_count();
    store
        .put_blob("acme/chunks", &digest, blob.clone())
        .await
        .expect("uploads");
    // POST, five PATCHes of at most 1000 bytes, PUT (plus the /v2/ discovery on first use).
    assert_eq!(client.request_count() - before, 7 + 2);
    assert_eq!(
        store
            .blob_size("acme/chunks", &digest)
            .await
            .expect("heads"),
        Some(4500)
    );
    assert_eq!(
        store.get_blob("acme/chunks", &digest).await.expect("reads"),
        blob
    );
}

#[tokio::test]
async fn blobs_are_mounted_across_repositories() {
    let registry = Registry::start();
    let store = store(&registry.host());
    let image = TestImage::new("linux", "amd64", None, "mount");
    image.push(&store, "acme/source", None).await;
    let layer = Digest::of(&image.layer);
    assert_eq!(
        store.blob_size("acme/target", &layer).await.expect("heads"),
        None
    );
    assert!(
        store
            .mount_blob("acme/target", "acme/source", &layer)
            .await
            .expect("mounts")
    );
    assert_eq!(
        store.blob_size("acme/target", &layer).await.expect("heads"),
        Some(image.layer.len() as u64)
    );
    let missing = Digest::of(b"never pushed");
    assert!(
        !store
            .mount_blob("acme/target", "acme/source", &missing)
            .await
            .expect("answers")
    );
}

#[tokio::test]
async fn tags_and_missing_things() {
    let registry = Registry::start();
    let store = store(&registry.host());
    assert_eq!(
        store.list_tags("acme/none").await.expect("lists"),
        Vec::<String>::new()
    );
    let image = TestImage::new("linux", "amd64", None, "tags");
    image.push(&store, "acme/tags", Some("v1")).await;
    image.push(&store, "acme/tags", Some("v2")).await;
    assert_eq!(
        store.list_tags("acme/tags").await.expect("lists"),
        ["v1", "v2"]
    );
    let described = store
        .head_manifest("acme/tags", ManifestReference::Tag("v2"))
        .await
        .expect("heads")
        .expect("exists");
    assert_eq!(described.digest().to_string(), image.digest().to_string());
    assert_eq!(described.size(), image.manifest.bytes.len() as u64);
    assert!(
        store
            .head_manifest("acme/tags", ManifestReference::Tag("v3"))
            .await
            .expect("heads")
            .is_none()
    );
    assert!(
        store
            .get_manifest("acme/none", ManifestReference::Tag("v1"))
            .await
            .expect("gets")
            .is_none()
    );
    let error = store
        .get_blob("acme/tags", &Digest::of(b"nothing"))
        .await
        .expect_err("missing");
    assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
}

#[tokio::test]
async fn registry_errors_carry_their_oci_code() {
    let registry = Registry::start();
    let store = store(&registry.host());
    let orphan = TestImage::new("linux", "amd64", None, "orphan");
    let error = store
        .put_manifest("acme/app", ManifestReference::Tag("v1"), &orphan.manifest)
        .await
        .expect_err("its blobs were never pushed");
    match &error {
        StoreError::Status { status, code, .. } => {
            assert_eq!(*status, 400);
            assert_eq!(
                code.as_ref(),
                Some(&ErrorCode::ManifestBlobUnknown),
                "{error}"
            );
        }
        other => panic!("expected a status error, got {other}"),
    }
    assert!(
        error.to_string().contains("MANIFEST_BLOB_UNKNOWN"),
        "{error}"
    );
}

#[tokio::test]
async fn bearer_tokens_are_fetched_once_per_scope_and_reused() {
    let registry = Registry::start_with_token_auth("ci-user", "token-pass-7");
    let folder = tempfile::tempdir().expect("temp dir");
    let config = registry
        .credentials()
        .write_docker_config(folder.path(), &registry.host());
    let settings = ClientSettings {
        credentials: CredentialSource::with_docker_config(config),
        ..ClientSettings::default()
    };
    let (_, store) = store_with(&registry.host(), settings);
    let images: Vec<TestImage> = (0..3)
        .map(|seed| TestImage::new("linux", "amd64", None, &seed.to_string()))
        .collect();
    for image in &images {
        image.push(&store, "acme/app", None).await;
    }
    for image in &images {
        let read = store
            .get_manifest("acme/app", ManifestReference::Digest(&image.digest()))
            .await
            .expect("reads")
            .expect("exists");
        assert_eq!(read.bytes, image.manifest.bytes);
    }
    let tokens: Vec<String> = registry
        .token_server()
        .requests()
        .iter()
        .filter(|request| request.status == 200)
        .flat_map(|request| request.scopes())
        .collect();
    // One token for pushing to acme/app and one for reading it, however many requests used them.
    assert_eq!(
        tokens,
        ["repository:acme/app:pull,push", "repository:acme/app:pull"],
        "{tokens:?}"
    );

    let wrong = tempfile::tempdir().expect("temp dir");
    let config = common::Credentials::new("ci-user", "nope")
        .write_docker_config(wrong.path(), &registry.host());
    let (_, refused) = store_with(
        &registry.host(),
        ClientSettings {
            credentials: CredentialSource::with_docker_config(config),
            ..ClientSettings::default()
        },
    );
    let error = refused
        .list_tags("acme/app")
        .await
        .expect_err("wrong password");
    assert!(matches!(error, StoreError::Unauthorized { .. }), "{error}");
    assert!(!format!("{error} {error:?}").contains("nope"), "{error:?}");
}

/// A registry that answers every manifest and blob request with content that does not match the digest.
fn hostile_registry() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let host = listener.local_addr().expect("address").to_string();
    let server = std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clones"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() || !request_line.starts_with("GET ") {
                continue; // a TLS probe, or nothing
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                line.clear();
            }
            let body: &[u8] = if request_line.contains("/manifests/") {
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#
            } else {
                b"not what you asked for"
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                media_type::OCI_MANIFEST,
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(body));
        }
    });
    (host, server)
}

#[tokio::test]
async fn content_under_the_wrong_digest_is_refused() {
    let (host, _server) = hostile_registry();
    let store = store(&host);
    let expected = Digest::of(b"the real content");
    let manifest = store
        .get_manifest("acme/app", ManifestReference::Digest(&expected))
        .await
        .expect_err("wrong manifest");
    assert!(
        matches!(manifest, StoreError::DigestMismatch { .. }),
        "{manifest}"
    );
    assert!(
        manifest.to_string().contains(expected.as_str()),
        "{manifest}"
    );
    let blob = store
        .get_blob("acme/app", &expected)
        .await
        .expect_err("wrong blob");
    assert!(matches!(blob, StoreError::DigestMismatch { .. }), "{blob}");
}

#[tokio::test]
async fn blobs_are_copied_between_registries_as_streams() {
    let source = Registry::start();
    let target = Registry::start();
    let settings = ClientSettings {
        chunk_size: 1024 * 1024,
        ..ClientSettings::default()
    };
    let (client, from) = store_with(&source.host(), settings.clone());
    let to = RegistryStore::new(client.clone(), &target.host());
    // 5 MiB and a bit: six chunks of at most 1 MiB, none of which is the whole blob.
    let blob = Bytes::from(
        (0..5 * 1024 * 1024 + 17u32)
            .map(|index| (index % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    let digest = Digest::of(&blob);
    from.put_blob("acme/big", &digest, blob.clone())
        .await
        .expect("uploads");
    let before = client.request_count();
    let stream = from.open_blob("acme/big", &digest).await.expect("opens");
    assert_eq!(stream.size, Some(blob.len() as u64));
    to.put_blob_stream("acme/big", &digest, stream)
        .await
        .expect("streams");
    // GET, then POST, six PATCHes and PUT (plus the target's /v2/ discovery).
    assert_eq!(client.request_count() - before, 1 + 8 + 2);
    assert_eq!(to.get_blob("acme/big", &digest).await.expect("reads"), blob);
}
