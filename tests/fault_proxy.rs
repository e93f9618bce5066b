//! Proves the fault-injecting proxy (`tests/common/proxy.rs`) against a real registry: faults come in order and
//! only on matching paths, everything else passes through unchanged, and uploads keep pointing at the proxy; broken
//! answers break where they say (cut short, reset, lost after the registry acted, stalled); a seeded plan replays
//! the same faults and lets a retrying client through.

mod common;

use std::net::TcpStream;

use common::Registry;
use common::proxy::{Fault, FaultProxy, ProxiedRequest};
use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};
use sha2::{Digest as _, Sha256};

const DIGEST_HEADER: &str = "Docker-Content-Digest";

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .build()
        .expect("building an HTTP client")
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn seen(method: &str, path: &str, status: Option<u16>, fault: bool) -> ProxiedRequest {
    ProxiedRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        status,
        fault,
    }
}

#[tokio::test]
async fn faults_come_in_order_then_requests_pass_through() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry.host(),
        "",
        vec![
            Fault::Status(503),
            Fault::TooManyRequests {
                retry_after_seconds: 1,
            },
            Fault::Reset,
        ],
    );
    let client = client();
    let url = format!("{}/v2/", proxy.url());

    let response = client.get(&url).send().await.expect("first GET");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["connection"], "close");
    assert_eq!(response.bytes().await.expect("503 body").len(), 0);

    let response = client.get(&url).send().await.expect("second GET");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[RETRY_AFTER], "1");

    let error = client
        .get(&url)
        .send()
        .await
        .expect_err("the third GET's connection is closed without an answer");
    assert!(error.is_request() || error.is_connect(), "{error:?}");

    let response = client.get(&url).send().await.expect("fourth GET");
    assert_eq!(response.status(), StatusCode::OK, "{}", registry.log());
    assert_eq!(
        response.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(response.headers()["connection"], "close");

    assert_eq!(
        proxy.requests(),
        vec![
            seen("GET", "/v2/", Some(503), true),
            seen("GET", "/v2/", Some(429), true),
            seen("GET", "/v2/", None, true),
            seen("GET", "/v2/", Some(200), false),
        ]
    );
    assert_eq!(proxy.faults_left(), 0);
}

#[tokio::test]
async fn faults_apply_only_to_matching_paths() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host(), "/manifests/", vec![Fault::Status(500)]);
    let client = client();
    let base = proxy.url();

    let root = client
        .get(format!("{base}/v2/"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(root.status(), StatusCode::OK);
    let manifest_url = format!("{base}/v2/fault-proxy/filter/manifests/latest");
    let faulted = client
        .get(&manifest_url)
        .send()
        .await
        .expect("first manifest GET");
    assert_eq!(faulted.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let real = client
        .get(&manifest_url)
        .send()
        .await
        .expect("second manifest GET");
    assert_eq!(
        real.status(),
        StatusCode::NOT_FOUND,
        "the registry's own answer"
    );
    let body = real.text().await.expect("404 body");
    assert!(body.contains("MANIFEST_UNKNOWN"), "{body}");

    assert_eq!(
        proxy.requests(),
        vec![
            seen("GET", "/v2/", Some(200), false),
            seen(
                "GET",
                "/v2/fault-proxy/filter/manifests/latest",
                Some(500),
                true
            ),
            seen(
                "GET",
                "/v2/fault-proxy/filter/manifests/latest",
                Some(404),
                false
            ),
        ]
    );
}

/// `POST …/blobs/uploads/`, then `PUT <Location>&digest=…`, through the proxy; the returned `Location` and the
/// blob's `Location` point at the proxy, because the registry builds them from the unchanged `Host` header.
async fn upload_through(proxy: &FaultProxy, repository: &str, blob: &[u8], chunked: bool) {
    let client = client();
    let base = Url::parse(&proxy.url()).expect("proxy URL");
    let digest = sha256_digest(blob);

    let started = client
        .post(
            base.join(&format!("/v2/{repository}/blobs/uploads/"))
                .expect("upload URL"),
        )
        .send()
        .await
        .expect("starting an upload");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()[LOCATION]
        .to_str()
        .expect("Location header")
        .to_owned();
    let mut upload = base.join(&location).expect("upload location");
    assert_eq!(
        upload.port(),
        base.port(),
        "the upload Location `{location}` points at the proxy"
    );

    upload.query_pairs_mut().append_pair("digest", &digest);
    let put = client
        .put(upload)
        .header(CONTENT_TYPE, "application/octet-stream");
    let put = if chunked {
        // A streamed body of unknown length goes out with `Transfer-Encoding: chunked`.
        let parts: Vec<Result<Vec<u8>, std::io::Error>> =
            blob.chunks(7).map(|part| Ok(part.to_vec())).collect();
        put.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
    } else {
        put.body(blob.to_vec())
    };
    let finished = put.send().await.expect("finishing the upload");
    assert_eq!(finished.status(), StatusCode::CREATED);
    assert_eq!(finished.headers()[DIGEST_HEADER], digest.as_str());
    let blob_location = finished.headers()[LOCATION]
        .to_str()
        .expect("blob Location");
    assert_eq!(
        base.join(blob_location).expect("blob URL"),
        base.join(&format!("/v2/{repository}/blobs/{digest}"))
            .expect("blob URL")
    );

    let pulled = client
        .get(
            base.join(&format!("/v2/{repository}/blobs/{digest}"))
                .expect("blob URL"),
        )
        .send()
        .await
        .expect("pulling the blob");
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(pulled.bytes().await.expect("blob bytes").as_ref(), blob);
}

#[tokio::test]
async fn a_monolithic_upload_passes_through_and_keeps_pointing_at_the_proxy() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host(), "", Vec::new());
    let blob = b"a layer that goes through the fault proxy".repeat(1000);
    upload_through(&proxy, "fault-proxy/upload", &blob, false).await;

    let requests = proxy.requests();
    let summary: Vec<(&str, u16)> = requests
        .iter()
        .map(|request| (request.method.as_str(), request.status.unwrap_or_default()))
        .collect();
    assert_eq!(summary, [("POST", 202), ("PUT", 201), ("GET", 200)]);
    assert_eq!(requests[0].path, "/v2/fault-proxy/upload/blobs/uploads/");
    assert!(
        requests[1]
            .path
            .starts_with("/v2/fault-proxy/upload/blobs/uploads/")
            && requests[1].path.contains("digest=sha256%3A"),
        "{:?}",
        requests[1]
    );
    assert!(requests.iter().all(|request| !request.fault));
}

#[tokio::test]
async fn a_chunked_request_body_passes_through() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host(), "", Vec::new());
    let blob = b"streamed in small chunks".repeat(100);
    upload_through(&proxy, "fault-proxy/chunked", &blob, true).await;
    assert_eq!(proxy.requests().len(), 3);
}

#[tokio::test]
async fn a_fault_on_an_upload_answers_before_the_registry_sees_it() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host(), "/blobs/uploads/", vec![Fault::Reset]);
    let client = client();
    let url = format!("{}/v2/fault-proxy/reset/blobs/uploads/", proxy.url());
    client
        .post(&url)
        .body(vec![0_u8; 10_000])
        .send()
        .await
        .expect_err("a reset upload");
    let retried = client.post(&url).send().await.expect("the retried upload");
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
}

#[test]
fn dropping_the_proxy_closes_its_port() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry.host(), "", Vec::new());
    let host = proxy.host();
    // A connection that never sends a request must not keep the proxy alive.
    let idle = TcpStream::connect(&host).expect("connecting to the proxy");
    drop(proxy);
    assert!(
        TcpStream::connect(&host).is_err(),
        "`{host}` still accepts connections"
    );
    drop(idle);
}

/// A raw HTTP/1.1 exchange with the proxy: what came back before the connection ended, and how it ended.
fn raw_exchange(proxy: &FaultProxy, request: &str) -> (Vec<u8>, std::io::Result<()>) {
    use std::io::{Read as _, Write as _};
    let mut stream = TcpStream::connect(proxy.host()).expect("connecting to the proxy");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    stream.write_all(request.as_bytes()).expect("sending");
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (received, Ok(())),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) => return (received, Err(error)),
        }
    }
}

fn header_end(answer: &[u8]) -> usize {
    answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|start| start + 4)
        .expect("a whole head")
}

#[tokio::test]
async fn broken_answers_break_where_they_say() {
    let registry = Registry::start();
    let direct = FaultProxy::start(&registry.host(), "", Vec::new());
    let blob = b"a blob whose answers the proxy breaks".repeat(100);
    upload_through(&direct, "fault-proxy/broken", &blob, false).await;
    let digest = sha256_digest(&blob);
    let proxy = FaultProxy::start(
        &registry.host(),
        "/blobs/sha256:",
        vec![Fault::TruncatedBody, Fault::ResetMidBody],
    );
    let get = format!(
        "GET /v2/fault-proxy/broken/blobs/{digest} HTTP/1.1\r\nHost: {}\r\n\r\n",
        proxy.host()
    );

    let (truncated, ended) = raw_exchange(&proxy, &get);
    assert!(ended.is_ok(), "a truncated body ends with FIN: {ended:?}");
    let head = String::from_utf8_lossy(&truncated[..header_end(&truncated)]).to_lowercase();
    assert!(
        head.contains(&format!("content-length: {}", blob.len())),
        "{head}"
    );
    assert_eq!(truncated.len() - header_end(&truncated), blob.len() / 2);

    let (reset, ended) = raw_exchange(&proxy, &get);
    assert_eq!(
        ended.expect_err("a reset").kind(),
        std::io::ErrorKind::ConnectionReset
    );
    assert!(
        reset.len() < header_end(&reset) + blob.len(),
        "cut part-way: {} bytes",
        reset.len()
    );

    let (whole, ended) = raw_exchange(&proxy, &get);
    assert!(ended.is_ok());
    assert_eq!(&whole[header_end(&whole)..], &blob[..]);
    let faults: Vec<Fault> = proxy
        .applied()
        .into_iter()
        .map(|applied| applied.fault)
        .collect();
    assert_eq!(faults, [Fault::TruncatedBody, Fault::ResetMidBody]);
}

#[tokio::test]
async fn a_lost_answer_took_effect_and_a_stall_did_not() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry.host(),
        "/manifests/",
        vec![Fault::AnswerLost, Fault::Stall],
    );
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let put = |tag: &str| {
        format!(
            "PUT /v2/fault-proxy/lost/manifests/{tag} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\n\r\n{}",
            proxy.host(),
            index.len(),
            String::from_utf8_lossy(index)
        )
    };
    let (lost, ended) = raw_exchange(&proxy, &put("lost"));
    assert!(lost.is_empty() && ended.is_ok(), "{lost:?} {ended:?}");

    // The stalled request gets nothing, however long the client waits; it gives up here after 300 ms.
    let stalled = {
        use std::io::{Read as _, Write as _};
        let mut stream = TcpStream::connect(proxy.host()).expect("connecting");
        stream
            .write_all(put("stalled").as_bytes())
            .expect("sending");
        stream
            .set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .expect("read timeout");
        let mut buffer = [0_u8; 16];
        stream.read(&mut buffer).map_err(|error| error.kind())
    };
    assert!(
        matches!(
            stalled,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "{stalled:?}"
    );
    assert!(proxy.wait_for_requests(2, std::time::Duration::from_secs(10)));
    assert!(
        proxy
            .requests()
            .iter()
            .all(|request| request.fault && request.status.is_none())
    );
    let faults: Vec<Fault> = proxy
        .applied()
        .into_iter()
        .map(|applied| applied.fault)
        .collect();
    assert_eq!(faults, [Fault::AnswerLost, Fault::Stall]);

    // The lost answer's request reached the registry; the stalled one did not.
    let client = client();
    for (tag, status) in [("lost", StatusCode::OK), ("stalled", StatusCode::NOT_FOUND)] {
        let answer = client
            .head(format!(
                "{}/v2/fault-proxy/lost/manifests/{tag}",
                registry.url()
            ))
            .header("Accept", "application/vnd.oci.image.index.v1+json")
            .send()
            .await
            .expect("HEAD");
        assert_eq!(answer.status(), status, "{tag}");
    }
}

#[tokio::test]
async fn a_seeded_plan_replays_and_lets_retries_through() {
    let registry = Registry::start();
    let plan = |seed| common::proxy::RandomFaults {
        seed,
        rate: 0.5,
        kinds: vec![Fault::Status(500), Fault::Status(503)],
        most_per_request: 2,
        most_stalls: 0,
        cover_every_kind: false,
    };
    let client = client();
    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        let proxy = FaultProxy::start_random(&registry.host(), "", plan(seed));
        for path in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            for _ in 0..3 {
                client
                    .get(format!("{}/v2/fault-proxy/{path}/tags/list", proxy.url()))
                    .send()
                    .await
                    .expect("an answer");
            }
        }
        let requests = proxy.requests();
        // No path is faulted more than twice, so the third request of each got through.
        for third in requests.chunks(3) {
            assert!(
                !third[2].fault || !third[1].fault || !third[0].fault,
                "{third:?}"
            );
        }
        runs.push(proxy.applied());
    }
    assert_eq!(runs[0], runs[1], "the same seed, the same faults");
    assert_ne!(runs[0], runs[2], "another seed, other faults");
    assert!(!runs[0].is_empty());
}

#[tokio::test]
async fn a_plan_covering_every_kind_puts_each_once_where_it_tells() {
    let registry = Registry::start();
    let proxy = FaultProxy::start_random(
        &registry.host(),
        "",
        common::proxy::RandomFaults {
            seed: 1,
            rate: 0.0,
            kinds: vec![Fault::ResetMidBody, Fault::Status(500)],
            most_per_request: 1,
            most_stalls: 0,
            cover_every_kind: true,
        },
    );
    let client = client();
    let tags = format!("{}/v2/fault-proxy/cover/tags/list", proxy.url());
    // A HEAD has no body to break; the API probe gets no covering fault; the GET of tags has a body.
    for (method, url) in [
        (reqwest::Method::HEAD, tags.clone()),
        (reqwest::Method::GET, format!("{}/v2/", proxy.url())),
        (reqwest::Method::GET, tags.clone()),
        (reqwest::Method::GET, tags),
    ] {
        let _ = client.request(method, url).send().await;
    }
    let applied: Vec<(String, Fault)> = proxy
        .applied()
        .into_iter()
        .map(|applied| (applied.method, applied.fault))
        .collect();
    assert_eq!(
        applied,
        [
            ("HEAD".to_owned(), Fault::Status(500)),
            ("GET".to_owned(), Fault::ResetMidBody)
        ]
    );
    assert_eq!(proxy.uncovered(), []);
    assert_eq!(proxy.requests().len(), 4);
}
