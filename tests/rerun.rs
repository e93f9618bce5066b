//! Re-runs on unchanged input: from any stage, nothing is written to a registry twice. Counted at a proxy in
//! front of real registries, on the example of `examples/post-build`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::proxy::FaultProxy;
use common::{Imagepipe, Registry, read_json};
use imagepipe::model::reference::DigestReference;
use imagepipe::store::copy::Copier;
use imagepipe::store::layout::LayoutStore;
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/post-build");
const PASSWORD: &str = "re-run password";

/// The requests that change a registry's content, seen by `proxy` after the first `since`.
fn writes_since(proxy: &FaultProxy, since: usize) -> Vec<String> {
    requests_since(proxy, since)
        .into_iter()
        .filter(|request| {
            ["PUT ", "POST ", "PATCH ", "DELETE "]
                .iter()
                .any(|method| request.starts_with(method))
        })
        .collect()
}

/// The requests `proxy` saw after the first `since`, as `METHOD path`.
fn requests_since(proxy: &FaultProxy, since: usize) -> Vec<String> {
    proxy
        .requests()
        .into_iter()
        .skip(since)
        .map(|request| format!("{} {}", request.method, request.path))
        .collect()
}

/// Runs `stage` and returns the write requests it made through `proxy`.
fn writes_of(proxy: &FaultProxy, stage: Imagepipe) -> Vec<String> {
    let before = proxy.requests().len();
    stage.env("COSIGN_PASSWORD", PASSWORD).run().succeeded();
    writes_since(proxy, before)
}

fn post_build(output: &Path) -> PathBuf {
    common::stages::post_build(
        &Path::new(EXAMPLE).join("manifest.json"),
        &Path::new(EXAMPLE).join("fragments"),
        output,
    )
}

/// Copies the example's platform images from its layout into `registry`, by digest as build legs push them.
async fn push_example_images(info: &Path, registry: &str) {
    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let source = LayoutStore::new(Path::new(EXAMPLE).join("staging"));
    let target = RegistryStore::new(client, registry);
    let copier = Copier {
        source: &source,
        from: "acme/app",
        target: &target,
        to: "acme/app",
        same_store: false,
        listing: None,
        memory: None,
    };
    let info = read_json(info);
    for image in info["repos"][0]["images"].as_array().expect("images") {
        for platform in image["platforms"].as_array().expect("platforms") {
            let reference: DigestReference = platform["digest"]
                .as_str()
                .expect("digest")
                .parse()
                .expect("a digest reference");
            copier
                .copy_manifest(&reference.digest)
                .await
                .expect("copies an example image");
        }
    }
}

#[tokio::test]
async fn unchanged_re_runs_of_every_stage_write_nothing() {
    let staging = Registry::start();
    let public = Registry::start();
    let staging_proxy = FaultProxy::start(&staging.host(), "", Vec::new());
    let public_proxy = FaultProxy::start(&public.host(), "", Vec::new());
    let work = tempfile::tempdir().expect("temp dir");
    let manifest = Path::new(EXAMPLE).join("manifest.json");
    let info = post_build(&work.path().join("image-info.json"));
    push_example_images(&info, &staging.host()).await;

    let key = common::stages::generate_key(&work.path().join("cosign"), PASSWORD);
    let create_manifest =
        |info: &Path| common::stages::create_manifest(&manifest, info, &staging_proxy.host());
    let sign = |info: &Path| {
        Imagepipe::new()
            .arg("sign")
            .arg("--image-info")
            .arg(info)
            .arg("--key")
            .arg(&key)
            .args(["--staging-registry", &staging_proxy.host()])
    };
    let final_info = work.path().join("final-image-info.json");
    let publish = |info: &Path| {
        Imagepipe::new()
            .arg("publish")
            .arg("--image-info")
            .arg(info)
            .args(["--staging-registry", &staging_proxy.host()])
            .args(["--registry-override", &public_proxy.host()])
            .arg("--output")
            .arg(&final_info)
    };

    let first = writes_of(&staging_proxy, create_manifest(&info));
    assert_eq!(
        first
            .iter()
            .filter(|write| write.starts_with("PUT "))
            .count(),
        3,
        "the index under its three shared tags: {first:?}"
    );
    let recorded = read_json(&info)["repos"][0]["images"].clone();
    let mark = staging_proxy.requests().len();
    assert_eq!(
        writes_of(&staging_proxy, create_manifest(&info)),
        Vec::<String>::new(),
        "create-manifest again"
    );
    let index = recorded[0]["manifest"]["digest"]
        .as_str()
        .and_then(|reference| reference.split_once('@'))
        .map(|(_, digest)| format!("GET /v2/acme/app/manifests/{digest}"))
        .expect("an index digest");
    let asked = requests_since(&staging_proxy, mark);
    assert!(
        asked.iter().all(|request| request == "GET /v2/"
            || *request == index
            || request.starts_with("HEAD /v2/acme/app/manifests/1.4")
            || request.starts_with("HEAD /v2/acme/app/manifests/latest")),
        "an unchanged create-manifest reads the recorded index and its tags, no child: {asked:?}"
    );
    assert!(!writes_of(&staging_proxy, sign(&info)).is_empty());
    let mark = staging_proxy.requests().len();
    assert_eq!(
        writes_of(&staging_proxy, sign(&info)),
        Vec::<String>::new(),
        "sign again"
    );
    let asked = requests_since(&staging_proxy, mark);
    assert!(
        asked.iter().all(|request| request == "GET /v2/"
            || request.ends_with("/tags/list?n=1000")
            || request.contains("/manifests/sha256-")),
        "an unchanged sign reads the tag lists and the signatures, nothing else: {asked:?}"
    );
    let signed = read_json(&info);
    assert_eq!(
        writes_of(&staging_proxy, create_manifest(&info)),
        Vec::<String>::new(),
        "create-manifest after sign"
    );
    assert_eq!(
        read_json(&info)["repos"],
        signed["repos"],
        "create-manifest after sign keeps every record as sign wrote it"
    );
    let shared_tags = &signed["repos"][0]["images"][0]["manifest"]["sharedTags"];
    assert_eq!(
        shared_tags,
        &serde_json::json!(["1.4.2", "1.4", "latest"]),
        "the manifest's order"
    );

    // A re-run from post-build: a new image-info, the same content in staging.
    let again = post_build(&work.path().join("image-info-again.json"));
    assert_eq!(
        writes_of(&staging_proxy, create_manifest(&again)),
        Vec::<String>::new(),
        "create-manifest after a new post-build"
    );
    assert_eq!(
        read_json(&again)["repos"][0]["images"][0]["manifest"]["digest"],
        recorded[0]["manifest"]["digest"]
    );
    assert_eq!(
        writes_of(&staging_proxy, sign(&again)),
        Vec::<String>::new(),
        "sign after a new post-build"
    );

    let marks = (
        staging_proxy.requests().len(),
        public_proxy.requests().len(),
    );
    assert!(!writes_of(&public_proxy, publish(&info)).is_empty());
    let heads = |proxy: &FaultProxy, since: usize| -> Vec<String> {
        requests_since(proxy, since)
            .into_iter()
            .filter(|request| request.starts_with("HEAD "))
            .collect()
    };
    assert_eq!(
        heads(&public_proxy, marks.1),
        Vec::<String>::new(),
        "the first publish to a repository with no tags asks it about nothing it writes"
    );
    assert_eq!(
        heads(&staging_proxy, marks.0),
        Vec::<String>::new(),
        "publish learns which digests are signed from staging's tag list"
    );
    let uploaded: Vec<String> = requests_since(&public_proxy, marks.1)
        .into_iter()
        .filter(|request| request.starts_with("PUT ") && request.contains("/blobs/uploads/"))
        .filter_map(|request| Some(request.split_once("digest=")?.1.to_owned()))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = uploaded.iter().collect();
    eprintln!(
        "{} blob uploads, {} distinct",
        uploaded.len(),
        distinct.len()
    );
    assert_eq!(
        uploaded.len(),
        distinct.len(),
        "a blob several images hold is uploaded once"
    );
    let marks = (
        staging_proxy.requests().len(),
        public_proxy.requests().len(),
    );
    assert_eq!(
        writes_of(&public_proxy, publish(&info)),
        Vec::<String>::new(),
        "publish again"
    );
    let staging_asked = requests_since(&staging_proxy, marks.0);
    assert!(
        staging_asked.iter().all(|request| request == "GET /v2/"
            || request.ends_with("/tags/list?n=1000")
            || request.contains("/referrers/")),
        "an unchanged publish reads only staging's tag lists: {staging_asked:?}"
    );
    assert!(
        staging_asked
            .iter()
            .filter(|request| request.contains("/referrers/"))
            .count()
            <= 1,
        "whether staging has the referrers API is asked once: {staging_asked:?}"
    );
    let public_asked = requests_since(&public_proxy, marks.1);
    assert!(
        public_asked.iter().all(|request| request == "GET /v2/"
            || request.ends_with("/tags/list?n=1000")
            || (request.starts_with("HEAD ") && !request.contains("/manifests/sha256:"))),
        "an unchanged publish asks the target about its tags only, not about each digest: {public_asked:?}"
    );
    assert_eq!(
        writes_since(&staging_proxy, 0)
            .iter()
            .filter(|write| write.contains("/manifests/1.4"))
            .count(),
        2,
        "each shared tag in staging was written once"
    );
}
