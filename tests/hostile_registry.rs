//! What a registry that misbehaves on purpose cannot do to a stage (SECURITY.md): pull a credential to another
//! host, crash the process with a header, make it read without bound, or make it wait without end. The fakes in
//! `common::hostile` do what a real registry will not; the TLS case uses the real one.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::hostile::{Answer, HostileRegistry, Seen, owned};
use common::{Registry, stages};
use imagepipe::model::reference::Digest;
use imagepipe::store::registry::{
    ClientSettings, Credential, CredentialSource, RegistryClient, RegistryStore, RetryPolicy,
    StageDeadline, TimeLimit, Timeouts,
};
use imagepipe::store::{ManifestReference, Store, StoreError, media_type};

const USER: &str = "ci-user";
const PASSWORD: &str = "hostile-test-password";
const TOKEN: &str = "hostile-test-token";

/// No test here may wait longer than this for an answer that the client must give up on much sooner.
const PATIENCE: Duration = Duration::from_secs(90);

fn store(host: &str, settings: ClientSettings) -> RegistryStore {
    RegistryStore::new(
        Arc::new(RegistryClient::new(settings).expect("client")),
        host,
    )
}

fn with_password(host: &str) -> ClientSettings {
    ClientSettings {
        credentials: CredentialSource::default().with_explicit(
            host,
            Credential::Basic {
                username: USER.to_owned(),
                password: PASSWORD.to_owned(),
            },
        ),
        ..ClientSettings::default()
    }
}

/// Fast limits and retries, so that giving up takes seconds.
fn impatient() -> ClientSettings {
    ClientSettings {
        timeouts: Timeouts {
            attempt: Duration::from_secs(1),
            request: Duration::from_secs(3),
            ..Timeouts::default()
        },
        retry: RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
        ..ClientSettings::default()
    }
}

/// Runs `operation`, failing the test instead of waiting past [`PATIENCE`].
async fn within_patience<T>(operation: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(PATIENCE, operation)
        .await
        .expect("the client gave up within its limits");
    (result, started.elapsed())
}

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/post-build")
}

/// The example's post-build result in `folder`, ready for create-manifest: the stage that talks to a registry.
fn example_image_info(folder: &std::path::Path) -> std::path::PathBuf {
    stages::post_build(
        &example().join("manifest.json"),
        &example().join("fragments"),
        &folder.join("image-info.json"),
    )
}

fn carries_credentials(seen: &Seen) -> bool {
    seen.header("authorization").is_some()
}

/// An upload session whose `Location` is on another port of the same address must not receive the registry's
/// password (basic) or token (bearer): the origin differs.
#[tokio::test]
async fn credentials_stay_with_their_registry_when_an_upload_location_points_elsewhere() {
    for scheme in ["basic", "bearer"] {
        let foreign = HostileRegistry::start(|seen| match seen.method.as_str() {
            "PUT" => Answer::status(201),
            _ => Answer::with_headers(202, &[("Location", "/upload/next")]),
        });
        let foreign_location = format!("http://{}/upload/1", foreign.host());
        let registry = HostileRegistry::start(move |seen| {
            let authorized = match seen.header("authorization") {
                Some(value) if scheme == "basic" => value.starts_with("Basic "),
                Some(value) => value == format!("Bearer {TOKEN}"),
                None => false,
            };
            if seen.path.starts_with("/token") {
                return Answer::body(
                    "application/json",
                    format!(r#"{{"token":"{TOKEN}"}}"#).as_bytes(),
                );
            }
            if !authorized {
                let challenge = if scheme == "basic" {
                    r#"Basic realm="hostile""#.to_owned()
                } else {
                    format!(
                        r#"Bearer realm="http://{}/token",service="hostile""#,
                        seen.header("host").unwrap_or_default()
                    )
                };
                return Answer::with_headers(401, &[("WWW-Authenticate", &challenge)]);
            }
            match seen.method.as_str() {
                "POST" => Answer::with_headers(202, &[("Location", &foreign_location)]),
                "HEAD" => Answer::status(404),
                _ => Answer::status(200),
            }
        });
        let store = store(&registry.host(), with_password(&registry.host()));
        let blob = Bytes::from_static(b"a layer the registry sends elsewhere");
        store
            .put_blob("acme/app", &Digest::of(&blob), blob.clone())
            .await
            .expect("the upload completes at the foreign location");

        let uploads = foreign.seen();
        assert!(
            !uploads.is_empty(),
            "{scheme}: the upload went to the foreign location"
        );
        assert!(
            !uploads.iter().any(carries_credentials),
            "{scheme}: the foreign host received credentials: {uploads:#?}"
        );
        assert!(
            registry
                .seen()
                .iter()
                .any(|seen| seen.method == "POST" && carries_credentials(seen)),
            "{scheme}: the registry itself was sent credentials"
        );
    }
}

/// A plain-HTTP upload location on a host that is not loopback is refused before anything is sent there.
#[tokio::test]
async fn a_plain_http_upload_location_off_loopback_is_refused() {
    let registry = HostileRegistry::start(|seen| match seen.method.as_str() {
        "POST" => Answer::with_headers(
            202,
            &[("Location", "http://uploads.imagepipe.invalid/upload/1")],
        ),
        _ => Answer::status(200),
    });
    let store = store(&registry.host(), ClientSettings::default());
    let blob = Bytes::from_static(b"content");
    let error = store
        .put_blob("acme/app", &Digest::of(&blob), blob.clone())
        .await
        .expect_err("refused");
    assert!(
        matches!(
            error,
            StoreError::PlainHttp {
                what: "upload location",
                ..
            }
        ),
        "{error}"
    );
}

/// `Content-Length` values that once aborted the process (a failed 4 EiB allocation) or panicked ("capacity
/// overflow") end as errors: no buffer is sized from a peer's number.
#[tokio::test]
async fn absurd_content_lengths_are_errors_not_crashes() {
    for length in ["4611686018427387904", "18446744073709551610"] {
        let registry = HostileRegistry::start(move |seen| {
            if seen.path.contains("/blobs/") {
                Answer::Whole {
                    status: 200,
                    headers: owned(&[("Content-Length", length)]),
                    body: b"{}".to_vec(),
                }
            } else {
                Answer::status(200)
            }
        });
        let store = store(&registry.host(), ClientSettings::default());
        let digest = Digest::of(b"a config");
        let (whole, _) = within_patience(store.get_blob("acme/app", &digest)).await;
        assert!(
            matches!(whole, Err(StoreError::TooLarge { .. })),
            "{length}: {whole:?}"
        );

        let stream = store.open_blob("acme/app", &digest).await.expect("opens");
        let (read, _) = within_patience(futures_util::TryStreamExt::try_collect::<Vec<Bytes>>(
            stream.chunks,
        ))
        .await;
        assert!(
            read.is_err(),
            "{length}: a two-byte body under that announcement is an error"
        );
    }
}

/// A manifest body larger than the 4 MiB cap is refused before it is read when its length is announced, and as
/// soon as the cap is passed when it is not: the fake cannot hand over its 100 MiB.
#[tokio::test]
async fn manifests_are_bounded_before_they_are_read() {
    const BODY: u64 = 100 * 1024 * 1024;
    for announced in [true, false] {
        let registry = HostileRegistry::start(move |seen| {
            if !seen.path.contains("/manifests/") {
                return Answer::status(200);
            }
            let mut headers = vec![("Content-Type", media_type::OCI_MANIFEST)];
            let length = BODY.to_string();
            if announced {
                headers.push(("Content-Length", &length));
            }
            Answer::Endless {
                status: 200,
                headers: owned(&headers),
                body_bytes: BODY,
            }
        });
        let store = store(&registry.host(), ClientSettings::default());
        let digest = Digest::of(b"a manifest");
        let (result, _) =
            within_patience(store.get_manifest("acme/app", ManifestReference::Digest(&digest)))
                .await;
        assert!(
            matches!(result, Err(StoreError::TooLarge { limit, .. }) if limit == 4 * 1024 * 1024),
            "announced {announced}: {result:?}"
        );
        drop(store);
        // What the kernel's socket buffers take after the client stops reading is all that leaves the fake.
        let sent = registry.body_bytes_sent();
        assert!(
            sent < 32 * 1024 * 1024,
            "announced {announced}: the fake sent {sent} bytes"
        );
    }
}

/// A token realm in plain HTTP on a host that is not loopback (`0.0.0.0` reaches this machine, but is not a
/// loopback name) gets no password: the client refuses it before sending anything.
#[tokio::test]
async fn a_plain_http_token_realm_off_loopback_gets_no_password() {
    let realm = HostileRegistry::start(|_| {
        Answer::body(
            "application/json",
            format!(r#"{{"token":"{TOKEN}"}}"#).as_bytes(),
        )
    });
    let realm_url = format!("http://0.0.0.0:{}/token", realm.port());
    let registry = HostileRegistry::start(move |seen| {
        if seen.header("authorization").is_some() {
            return Answer::body("application/json", br#"{"name":"acme/app","tags":[]}"#);
        }
        let challenge = format!(r#"Bearer realm="{realm_url}",service="hostile""#);
        Answer::with_headers(401, &[("WWW-Authenticate", &challenge)])
    });
    let store = store(&registry.host(), with_password(&registry.host()));
    let error = store.list_tags("acme/app").await.expect_err("refused");
    assert!(
        matches!(
            error,
            StoreError::PlainHttp {
                what: "token realm",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("0.0.0.0"), "{error}");
    assert!(!error.to_string().contains(PASSWORD), "{error}");
    assert!(
        realm.seen().is_empty(),
        "the realm was asked: {:#?}",
        realm.seen()
    );
}

/// A registry that reads requests and never answers, or answers a byte at a time, is given up on within the
/// request's limit (every attempt and every wait between them counted), not after 5 × 120 s.
#[tokio::test]
async fn stalled_and_dribbling_registries_are_cut_off() {
    let stalled = HostileRegistry::start(|_| Answer::Stall);
    let store_of_stalled = store(&stalled.host(), impatient());
    let digest = Digest::of(b"a manifest");
    let (result, took) = within_patience(
        store_of_stalled.get_manifest("acme/app", ManifestReference::Digest(&digest)),
    )
    .await;
    let error = result.expect_err("stalled");
    assert!(
        matches!(
            error,
            StoreError::TimedOut {
                limit: TimeLimit::Request(_),
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("/v2/"),
        "names the pending request: {error}"
    );
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");

    let dribbling = HostileRegistry::start(|seen| {
        if seen.path.contains("/manifests/") {
            Answer::Dribble {
                status: 200,
                headers: owned(&[("Content-Type", media_type::OCI_MANIFEST)]),
                body: vec![b' '; 1000],
                every: Duration::from_millis(200),
            }
        } else {
            Answer::status(200)
        }
    });
    let store_of_dribbling = store(&dribbling.host(), impatient());
    let (result, took) = within_patience(
        store_of_dribbling.get_manifest("acme/app", ManifestReference::Digest(&digest)),
    )
    .await;
    let error = result.expect_err("dribbled");
    assert!(matches!(error, StoreError::TimedOut { .. }), "{error}");
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");
    assert!(
        dribbling.body_bytes_sent() < 1000,
        "the whole body never arrived"
    );
}

/// The stage's deadline caps every request, whatever the request's own limit: the error says so.
#[tokio::test]
async fn the_stage_deadline_caps_every_request() {
    let stalled = HostileRegistry::start(|_| Answer::Stall);
    let settings = ClientSettings {
        timeouts: Timeouts {
            stage: Some(StageDeadline::after(Duration::from_secs(2))),
            ..Timeouts::default()
        },
        ..ClientSettings::default()
    };
    let store = store(&stalled.host(), settings);
    let (result, took) = within_patience(store.list_tags("acme/app")).await;
    let error = result.expect_err("stalled");
    assert!(
        matches!(
            error,
            StoreError::TimedOut {
                limit: TimeLimit::Stage(_),
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("--timeout"), "{error}");
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");
}

/// The real binary, as a user runs it: a stage against a registry that never answers ends with exit code 1 at
/// `--timeout`, naming the request that was pending.
#[test]
fn a_stage_against_a_stalling_registry_ends_at_its_timeout() {
    let stalled = HostileRegistry::start(|_| Answer::Stall);
    let work = tempfile::tempdir().expect("temp dir");
    let image_info = example_image_info(work.path());
    let started = Instant::now();
    let ran = stages::create_manifest(
        &example().join("manifest.json"),
        &image_info,
        &stalled.host(),
    )
    .args(["--timeout", "3s"])
    .run();
    let took = started.elapsed();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&stalled.host()),
        "names the pending request: {}",
        ran.stderr
    );
    assert!(ran.stderr.contains("--timeout"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    assert!(took < PATIENCE, "took {took:?}");
}

/// A loopback registry that speaks TLS with a certificate from a CA that was not given is reported as such, not
/// as the "400 Client sent an HTTP request to an HTTPS server" of a fallback to plain HTTP.
#[test]
fn a_loopback_tls_registry_without_its_ca_is_reported_as_untrusted() {
    let registry = Registry::start_tls_with_htpasswd(USER, PASSWORD);
    let work = tempfile::tempdir().expect("temp dir");
    let image_info = example_image_info(work.path());
    let ran = stages::create_manifest(
        &example().join("manifest.json"),
        &image_info,
        &registry.host(),
    )
    .run();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("TLS certificate"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("--ca-cert"),
        "the hint names the flag: {}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains("HTTP request to an HTTPS server"),
        "{}",
        ran.stderr
    );
}

/// A tag list whose `Link` leads back to a page it gave, or on without end, is an error, not a loop that holds
/// the stage until its timeout while the tags fill memory.
#[tokio::test]
async fn a_tag_list_that_links_in_circles_or_without_end_is_cut_off() {
    let page = |link: String| {
        let tags: Vec<String> = (0..1000).map(|number| format!("t{number}")).collect();
        Answer::Whole {
            status: 200,
            headers: vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("Link".to_owned(), format!("<{link}>; rel=\"next\"")),
            ],
            body: serde_json::json!({"name": "acme/app", "tags": tags})
                .to_string()
                .into_bytes(),
        }
    };
    let circle = HostileRegistry::start(move |seen| {
        if seen.path.contains("/tags/list") {
            page("/v2/acme/app/tags/list?n=1000".to_owned())
        } else {
            Answer::status(200)
        }
    });
    let pages = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&pages);
    let endless = HostileRegistry::start(move |seen| {
        if seen.path.contains("/tags/list") {
            let next = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            page(format!("/v2/acme/app/tags/list?n=1000&last=t{next}"))
        } else {
            Answer::status(200)
        }
    });
    for (registry, expected) in [
        (&circle, "links back to a page it already gave"),
        (&endless, "goes on past 1000000 tags"),
    ] {
        let store = store(&registry.host(), ClientSettings::default());
        let (listed, _) = within_patience(store.list_tags("acme/app")).await;
        let error = listed.expect_err("cut off").to_string();
        assert!(error.contains(expected), "{error}");
    }
    assert!(
        pages.load(std::sync::atomic::Ordering::SeqCst) <= 1002,
        "the endless list was followed for {} pages",
        pages.load(std::sync::atomic::Ordering::SeqCst)
    );
}
