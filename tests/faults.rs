//! The fault suite (issue 12): every stage that talks to a registry, run through the fault proxy
//! (`tests/common/proxy.rs`) in front of real registries on `examples/hello` (two repositories, three platforms
//! each, two indexes), with faults on the requests: 500/502/503, 429 with `Retry-After`, connections closed
//! before the answer, answers lost after the registry acted on the request, bodies reset (RST) or cut short
//! part-way, and stalls before the answer or after its headers.
//!
//! For each stage:
//! - faults that outlast the client's retries (every attempt at some requests fails) end it with exit 1 and one
//!   error line naming the registry, never a panic, and never a verdict (exit 3) drawn from a fault;
//! - faults a seeded plan picks on 15 % of the requests, none more than twice on one request and at most one
//!   stall, are within what the client retries: the stage completes, and nothing is lost (checked afterwards
//!   with `imagepipe test` and `imagepipe verify`, and cosign on what was published);
//! - a re-run without faults completes, and writes nothing where a re-run has nothing to write.
//!
//! Stalls and `Retry-After` are waited out for as long as they say (the attempt limit is an eighth of
//! `--timeout`), a streamed layer whose body breaks off is resumed, and a registry killed during sign and during
//! publish, then restarted, converges on a re-run.
//!
//! Every seeded plan derives from one base seed, printed by each test (a failure shows it): set
//! `IMAGEPIPE_FAULT_SEED=<base>` to replay it. The plans then make the same decisions for the same requests; as a
//! stage's concurrent requests vary a little from run to run, a replay is close, not exact.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::proxy::{AppliedFault, Fault, FaultProxy, RandomFaults, Targeted};
use common::{Imagepipe, Ran, Registry, error_lines, read_json};
use imagepipe::model::reference::{Digest, DigestReference};
use imagepipe::store::registry::{ClientSettings, RegistryClient, RegistryStore};
use imagepipe::store::{ManifestReference, Store, signature_tag};
use serde_json::Value;

const HELLO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello/manifest.json");
const PASSWORD: &str = "fault suite password";
const PREFIX: &str = "staging/12";
/// 2026-01-01T00:00:00Z: builds are repeatable, so a re-run builds the same digests.
const SOURCE_DATE_EPOCH: &str = "1767225600";
/// The time limit of every stage run under faults; the client gives a stalled attempt an eighth of it.
const STAGE_TIMEOUT: &str = "32s";
const ATTEMPT_LIMIT: Duration = Duration::from_secs(4);
/// How long a test waits for a stage it runs in the background to reach a point.
const PATIENCE: Duration = Duration::from_secs(30);

/// The base seed: `IMAGEPIPE_FAULT_SEED`, or a fresh one per test process.
fn base_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("IMAGEPIPE_FAULT_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("IMAGEPIPE_FAULT_SEED=`{text}` is not a number")),
        Err(_) => fastrand::u64(..),
    })
}

/// The seed of one plan, from the base seed and the plan's name; printed with the way to replay it.
fn seed(plan: &str) -> u64 {
    let base = base_seed();
    let seed = plan.bytes().fold(base, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    eprintln!("fault plan `{plan}`: seed {seed} (replay with IMAGEPIPE_FAULT_SEED={base})");
    seed
}

/// Every kind of fault once, then faults of any kind on 15 % of the requests; no request faulted more than
/// twice (the client makes five attempts), and two stalls at most.
fn retryable_faults(plan: &str) -> RandomFaults {
    RandomFaults {
        seed: seed(plan),
        rate: 0.15,
        kinds: Fault::all(),
        most_per_request: 2,
        most_stalls: 2,
        cover_every_kind: true,
    }
}

/// [`retryable_faults`] for a registry that is written to and asked `HEAD`, but whose answers' bodies are
/// seldom read (publish's target): the kinds that break a body are left out, and so one stall is enough.
fn retryable_faults_on_writes(plan: &str) -> RandomFaults {
    RandomFaults {
        kinds: Fault::all()
            .into_iter()
            .filter(|fault| !fault.needs_body())
            .collect(),
        most_stalls: 1,
        ..retryable_faults(plan)
    }
}

/// A fault on every attempt, of a kind drawn each time (stalls and 429 left out: they only cost time).
fn lasting_faults(plan: &str) -> RandomFaults {
    RandomFaults {
        seed: seed(plan),
        rate: 1.0,
        kinds: Fault::all()
            .into_iter()
            .filter(|fault| !fault.is_stall() && !matches!(fault, Fault::TooManyRequests { .. }))
            .collect(),
        most_per_request: u32::MAX,
        most_stalls: 0,
        cover_every_kind: false,
    }
}

/// `examples/hello` released between two real registries, "staging" and "public"; each stage run straight
/// against them or through a proxy a test puts in front.
struct Pipeline {
    staging: Registry,
    public: Registry,
    work: tempfile::TempDir,
    key: PathBuf,
}

impl Pipeline {
    fn new() -> Self {
        let work = tempfile::tempdir().expect("temp dir");
        let key = common::stages::generate_key(&work.path().join("release"), PASSWORD);
        Self {
            staging: Registry::start(),
            public: Registry::start(),
            work,
            key,
        }
    }

    fn fragments(&self) -> PathBuf {
        self.work.path().join("fragments")
    }

    fn info(&self) -> PathBuf {
        self.work.path().join("image-info.json")
    }

    fn final_info(&self) -> PathBuf {
        self.work.path().join("final-image-info.json")
    }

    fn public_key(&self) -> PathBuf {
        self.key.with_extension("pub")
    }

    fn build(&self, staging: &str) -> Imagepipe {
        Imagepipe::new()
            .args(["build", "--manifest", HELLO, "--builder", "native"])
            .args(["--staging-registry", staging, "--staging-prefix", PREFIX])
            .arg("--fragments")
            .arg(self.fragments())
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
    }

    fn post_build(&self) {
        common::stages::post_build(Path::new(HELLO), &self.fragments(), &self.info());
    }

    fn create_manifest(&self, staging: &str) -> Imagepipe {
        common::stages::create_manifest(Path::new(HELLO), &self.info(), staging)
            .args(["--staging-prefix", PREFIX])
    }

    fn sign(&self, staging: &str) -> Imagepipe {
        Imagepipe::new()
            .arg("sign")
            .arg("--image-info")
            .arg(self.info())
            .arg("--key")
            .arg(&self.key)
            .args(["--staging-registry", staging, "--staging-prefix", PREFIX])
            .env("COSIGN_PASSWORD", PASSWORD)
    }

    /// `imagepipe verify` of image-info against `store` under `prefix` (none: the public copies).
    fn verify(&self, store: &str, prefix: Option<&str>) -> Imagepipe {
        Imagepipe::new()
            .arg("verify")
            .arg("--image-info")
            .arg(self.info())
            .arg("--key")
            .arg(self.public_key())
            .args(["--staging-registry", store])
            .args(
                prefix
                    .map(|prefix| ["--staging-prefix", prefix])
                    .into_iter()
                    .flatten(),
            )
    }

    /// `imagepipe test` of image-info against `store` under `prefix` (none: the public copies).
    fn test(&self, store: &str, prefix: Option<&str>) -> Imagepipe {
        Imagepipe::new()
            .args(["test", "--manifest", HELLO])
            .arg("--image-info")
            .arg(self.info())
            .args(["--staging-registry", store])
            .args(
                prefix
                    .map(|prefix| ["--staging-prefix", prefix])
                    .into_iter()
                    .flatten(),
            )
    }

    fn publish(&self, staging: &str, public: &str) -> Imagepipe {
        Imagepipe::new()
            .arg("publish")
            .arg("--image-info")
            .arg(self.info())
            .args(["--staging-registry", staging, "--staging-prefix", PREFIX])
            .args(["--registry-override", public])
            .arg("--output")
            .arg(self.final_info())
    }

    /// The stages before `stage`, without faults, straight to staging.
    fn up_to(&self, stage: &str) {
        let staging = self.staging.host();
        for before in [
            "build",
            "post-build",
            "create-manifest",
            "sign",
            "verify",
            "publish",
        ] {
            if before == stage {
                return;
            }
            match before {
                "build" => self.build(&staging).run().succeeded(),
                "post-build" => {
                    self.post_build();
                    continue;
                }
                "create-manifest" => self.create_manifest(&staging).run().succeeded(),
                "sign" => self.sign(&staging).run().succeeded(),
                _ => self.verify(&staging, Some(PREFIX)).run().succeeded(),
            };
        }
        panic!("no stage `{stage}`");
    }

    /// Nothing lost in staging: it holds what image-info records (`imagepipe test`), every digest carries a
    /// valid signature (`imagepipe verify`), each exactly one.
    fn check_staging(&self) {
        let staging = self.staging.host();
        self.test(&staging, Some(PREFIX)).run().succeeded();
        self.verify(&staging, Some(PREFIX)).run().succeeded();
        let signatures = block_on(signatures_per_digest(&staging, PREFIX, &self.info()));
        assert!(
            signatures.iter().all(|(_, count)| *count == 1),
            "one signature per digest: {signatures:?}"
        );
    }

    /// Nothing lost in the public registry at `public` (the host given as `--registry-override`): every digest
    /// of the final image-info is there with the structure image-info records and a signature that `imagepipe
    /// verify` and cosign accept. The signatures name the manifest's registry, so `verify` and `test` check the
    /// public copies as they check staging: the public host as the store, with no prefix.
    fn check_published(&self, public: &str) {
        let published = read_json(&self.final_info());
        let references = digests(&published);
        assert_eq!(
            references.len(),
            8,
            "6 platforms and 2 indexes: {published}"
        );
        self.verify(public, None).run().succeeded();
        self.test(public, None).run().succeeded();
        for reference in &references {
            assert!(reference.starts_with(public), "{reference}");
            assert_eq!(
                common::verifiers::cosign_verify(&self.public_key(), reference),
                Some(0),
                "cosign verify {reference}"
            );
        }
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new()
        .expect("a Tokio runtime")
        .block_on(future)
}

/// For each digest of image-info, the number of signatures (layers of its `.sig` manifest) in `store`.
async fn signatures_per_digest(store: &str, prefix: &str, info: &Path) -> Vec<(String, usize)> {
    let client = Arc::new(RegistryClient::new(ClientSettings::default()).expect("client"));
    let store = RegistryStore::new(client, store);
    let mut counts = Vec::new();
    for reference in digests(&read_json(info)) {
        let parsed: DigestReference = reference.parse().expect("a digest reference");
        let digest: &Digest = &parsed.digest;
        let repository = format!("{prefix}/{}", parsed.repository());
        let signature = store
            .get_manifest(&repository, ManifestReference::Tag(&signature_tag(digest)))
            .await
            .expect("reading a signature");
        let layers = signature.map_or(0, |manifest| {
            serde_json::from_slice::<Value>(&manifest.bytes).expect("JSON")["layers"]
                .as_array()
                .map_or(0, Vec::len)
        });
        counts.push((reference, layers));
    }
    counts
}

/// Every digest reference of an image-info, indexes first.
fn digests(info: &Value) -> Vec<String> {
    let mut digests = Vec::new();
    for repo in info["repos"].as_array().into_iter().flatten() {
        for image in repo["images"].as_array().into_iter().flatten() {
            digests.extend(image["manifest"]["digest"].as_str().map(str::to_owned));
            for platform in image["platforms"].as_array().into_iter().flatten() {
                digests.extend(platform["digest"].as_str().map(str::to_owned));
            }
        }
    }
    digests
}

/// The digests recorded in every fragment in `folder`, sorted.
fn fragment_digests(folder: &Path) -> Vec<String> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(folder).expect("fragments") {
        all.extend(digests(&read_json(&entry.expect("entry").path())));
    }
    all.sort();
    all
}

/// Runs `stage` within [`STAGE_TIMEOUT`], and says what the faults were.
fn run_faulted(stage: Imagepipe, proxies: &[&FaultProxy]) -> Ran {
    let before: Vec<usize> = proxies.iter().map(|proxy| proxy.applied().len()).collect();
    let started = std::time::Instant::now();
    let ran = stage.args(["--timeout", STAGE_TIMEOUT]).run();
    let took = started.elapsed();
    for (proxy, before) in proxies.iter().zip(before) {
        let applied = proxy.applied();
        eprintln!(
            "through {}: {} faults so far, these in this run:",
            proxy.host(),
            applied.len()
        );
        for AppliedFault {
            method,
            path,
            fault,
        } in &applied[before..]
        {
            eprintln!("  {fault:?} on {method} {path}");
        }
    }
    eprintln!(
        "exit {:?} after {:.1} s; stderr:\n{}",
        ran.code,
        took.as_secs_f64(),
        ran.stderr
    );
    ran
}

/// A run under faults the client retries must complete, having met every kind of fault (at each of
/// `proxies`).
#[track_caller]
fn completed_meeting_every_kind(ran: &Ran, proxies: &[&FaultProxy]) {
    completed(ran);
    for proxy in proxies {
        assert_eq!(
            proxy.uncovered(),
            [],
            "kinds of fault never applied through {}",
            proxy.host()
        );
    }
}

/// A run under faults the client retries must complete.
#[track_caller]
fn completed(ran: &Ran) {
    assert_eq!(
        ran.code,
        Some(0),
        "faults within the retries must not fail the stage (replay with IMAGEPIPE_FAULT_SEED={}): {}",
        base_seed(),
        ran.stderr
    );
}

/// A run under faults that outlast the retries must exit 1 with one error line that names the registry it
/// failed on (one of `hosts`), and no panic.
#[track_caller]
fn failed_clearly(ran: &Ran, hosts: &[String]) {
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let errors = error_lines(&ran.stderr);
    assert_eq!(errors.len(), 1, "one error line: {}", ran.stderr);
    assert!(
        hosts.iter().any(|host| errors[0].contains(host.as_str())),
        "the error names the registry ({hosts:?}): {}",
        errors[0]
    );
    let bare = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]
        .iter()
        .any(|method| errors[0].starts_with(&format!("error: {method} ")));
    assert!(
        !bare,
        "the error says what was being done, not only which request failed: {}",
        errors[0]
    );
}

/// The requests that change a registry's content that `proxy` saw after the first `since`.
fn writes_since(proxy: &FaultProxy, since: usize) -> Vec<String> {
    proxy
        .requests()
        .into_iter()
        .skip(since)
        .filter(|request| is_write(&request.method))
        .map(|request| format!("{} {}", request.method, request.path))
        .collect()
}

/// Runs `stage` through `proxy` with no faults; it must complete and write nothing.
#[track_caller]
fn re_run_writes_nothing(proxy: &FaultProxy, stage: Imagepipe) {
    proxy.calm();
    let before = proxy.requests().len();
    stage.run().succeeded();
    assert_eq!(
        writes_since(proxy, before),
        Vec::<String>::new(),
        "a re-run writes nothing"
    );
}

#[test]
fn build_under_faults_pushes_every_image_and_a_re_run_builds_the_same() {
    let pipeline = Pipeline::new();
    let proxy = FaultProxy::start_random(
        &pipeline.staging.host(),
        "/hello/app/manifests/",
        lasting_faults("build: the app's manifests"),
    );
    failed_clearly(
        &run_faulted(pipeline.build(&proxy.host()), &[&proxy]),
        &[proxy.host()],
    );

    if pipeline.fragments().exists() {
        std::fs::remove_dir_all(pipeline.fragments()).expect("removing the fragments");
    }
    proxy.replan("", retryable_faults("build"));
    let ran = run_faulted(pipeline.build(&proxy.host()), &[&proxy]);
    completed_meeting_every_kind(&ran, &[&proxy]);
    let built = fragment_digests(&pipeline.fragments());

    proxy.calm();
    std::fs::remove_dir_all(pipeline.fragments()).expect("removing the fragments");
    pipeline.build(&proxy.host()).run().succeeded();
    assert_eq!(
        built,
        fragment_digests(&pipeline.fragments()),
        "the same digests"
    );
    pipeline.post_build();
    pipeline
        .create_manifest(&pipeline.staging.host())
        .run()
        .succeeded();
    pipeline.sign(&pipeline.staging.host()).run().succeeded();
    pipeline.check_staging();
}

#[test]
fn create_manifest_under_faults_pushes_every_index_and_a_re_run_writes_nothing() {
    let pipeline = Pipeline::new();
    pipeline.up_to("create-manifest");
    let proxy = FaultProxy::start_random(
        &pipeline.staging.host(),
        "/manifests/latest",
        lasting_faults("create-manifest: the latest tags"),
    );
    failed_clearly(
        &run_faulted(pipeline.create_manifest(&proxy.host()), &[&proxy]),
        &[proxy.host()],
    );

    proxy.replan("", retryable_faults("create-manifest"));
    completed(&run_faulted(
        pipeline.create_manifest(&proxy.host()),
        &[&proxy],
    ));
    re_run_writes_nothing(&proxy, pipeline.create_manifest(&proxy.host()));
    pipeline.sign(&pipeline.staging.host()).run().succeeded();
    pipeline.check_staging();
}

#[test]
fn sign_under_faults_signs_every_digest_once_and_a_re_run_writes_nothing() {
    let pipeline = Pipeline::new();
    pipeline.up_to("sign");
    let proxy = FaultProxy::start_random(
        &pipeline.staging.host(),
        "/hello/app/manifests/sha256-",
        lasting_faults("sign: the app's signature tags"),
    );
    failed_clearly(
        &run_faulted(pipeline.sign(&proxy.host()), &[&proxy]),
        &[proxy.host()],
    );

    proxy.replan("", retryable_faults("sign"));
    let ran = run_faulted(pipeline.sign(&proxy.host()), &[&proxy]);
    completed_meeting_every_kind(&ran, &[&proxy]);
    pipeline.check_staging();
    re_run_writes_nothing(&proxy, pipeline.sign(&proxy.host()));
}

/// A fault is never taken for a missing signature or a wrong structure (exit 3): the checks end with exit 1
/// naming the registry, and under faults within the retries they pass.
#[test]
fn verify_and_test_under_faults_fail_on_faults_never_on_a_verdict_and_pass_within_retries() {
    let pipeline = Pipeline::new();
    pipeline.up_to("verify");
    let proxy = FaultProxy::start_random(
        &pipeline.staging.host(),
        "/hello/app/",
        lasting_faults("verify and test: the app"),
    );
    let host = proxy.host();
    for stage in [
        pipeline.verify(&host, Some(PREFIX)),
        pipeline.test(&host, Some(PREFIX)),
    ] {
        failed_clearly(&run_faulted(stage, &[&proxy]), &[proxy.host()]);
    }
    for (name, stage) in [
        ("verify", pipeline.verify(&host, Some(PREFIX))),
        ("test", pipeline.test(&host, Some(PREFIX))),
    ] {
        proxy.replan("", retryable_faults(name));
        let ran = run_faulted(stage, &[&proxy]);
        completed_meeting_every_kind(&ran, &[&proxy]);
    }
}

#[test]
fn publish_under_faults_on_both_sides_copies_everything_and_a_re_run_writes_nothing() {
    let pipeline = Pipeline::new();
    pipeline.up_to("publish");
    // Faults within the retries first, on a public registry that has nothing yet: publish then reads every
    // object from staging, so every kind of fault has a request to meet (a re-run that finds the images
    // copied reads almost nothing).
    let staging = FaultProxy::start_random(
        &pipeline.staging.host(),
        "",
        retryable_faults("publish: staging"),
    );
    let public = FaultProxy::start_random(
        &pipeline.public.host(),
        "",
        retryable_faults_on_writes("publish: public"),
    );
    let hosts = [staging.host(), public.host()];
    let ran = run_faulted(pipeline.publish(&hosts[0], &hosts[1]), &[&staging, &public]);
    completed_meeting_every_kind(&ran, &[&staging, &public]);
    staging.calm();
    public.calm();
    pipeline.check_published(&hosts[1]);

    public.replan(
        "/hello/app/manifests/latest",
        lasting_faults("publish: the app's latest tag"),
    );
    failed_clearly(
        &run_faulted(pipeline.publish(&hosts[0], &hosts[1]), &[&staging, &public]),
        &hosts,
    );
    public.calm();
    re_run_writes_nothing(&public, pipeline.publish(&hosts[0], &hosts[1]));
}

/// Each wait a fault asks for is waited out, no longer than the client's own limits: the request is sent again
/// at least that long after the fault, and well before the 30 s attempt limit of a stage with no `--timeout`.
#[test]
fn stalls_and_retry_after_are_waited_out_then_retried() {
    let pipeline = Pipeline::new();
    pipeline.up_to("create-manifest");
    let target = |method, path, fault| Targeted {
        method,
        path,
        fault,
    };
    let proxy = FaultProxy::start_targeted(
        &pipeline.staging.host(),
        vec![
            // create-manifest reads each child manifest, then each config, then tags each index.
            target("GET", "/hello/base/manifests/sha256:", Fault::StalledBody),
            target("GET", "/hello/app/blobs/sha256:", Fault::Stall),
            target(
                "PUT",
                "/hello/base/manifests/1.0.0",
                Fault::TooManyRequests {
                    retry_after_seconds: 2,
                },
            ),
        ],
    );
    completed(&run_faulted(
        pipeline.create_manifest(&proxy.host()),
        &[&proxy],
    ));
    assert_eq!(proxy.faults_left(), 0, "every fault was applied");

    let requests = proxy.requests();
    let times = proxy.request_times();
    for (index, request) in requests
        .iter()
        .enumerate()
        .filter(|(_, request)| request.fault)
    {
        let wait = match request.status {
            Some(429) => Duration::from_secs(2),
            // Stalls: the client gives up after its attempt limit (stall records are made before the wait).
            _ => ATTEMPT_LIMIT - Duration::from_millis(100),
        };
        let retry = requests[index + 1..]
            .iter()
            .position(|later| later.method == request.method && later.path == request.path)
            .map(|offset| index + 1 + offset)
            .unwrap_or_else(|| panic!("{request:?} was not sent again"));
        let waited = times[retry] - times[index];
        assert!(
            waited >= wait && waited < wait + Duration::from_secs(10),
            "{} {}: sent again after {waited:?}, expected {wait:?}",
            request.method,
            request.path
        );
    }
    pipeline.sign(&pipeline.staging.host()).run().succeeded();
    pipeline.check_staging();
}

/// A streamed layer whose body is reset, cut short or stalls part-way is resumed where it stopped, not the
/// whole copy failed.
#[test]
fn a_layer_whose_body_breaks_off_is_resumed() {
    let pipeline = Pipeline::new();
    pipeline.up_to("publish");
    let target = |path, fault| Targeted {
        method: "GET",
        path,
        fault,
    };
    let staging = FaultProxy::start_targeted(
        &pipeline.staging.host(),
        vec![
            target("/hello/base/blobs/sha256:", Fault::ResetMidBody),
            target("/hello/app/blobs/sha256:", Fault::TruncatedBody),
            target("/blobs/sha256:", Fault::StalledBody),
        ],
    );
    let public = FaultProxy::start(&pipeline.public.host(), "", Vec::new());
    let ran = run_faulted(
        pipeline.publish(&staging.host(), &public.host()),
        &[&staging],
    );
    completed(&ran);
    assert_eq!(staging.faults_left(), 0, "every fault was applied");
    assert_eq!(
        ran.stderr.matches("after its body broke off").count(),
        3,
        "each broken body resumed: {}",
        ran.stderr
    );
    pipeline.check_published(&public.host());
}

/// A target that refuses to list its tags (as some registries do for push-only credentials) is asked about
/// each object instead, and the publish completes.
#[test]
fn a_target_that_refuses_to_list_its_tags_is_asked_about_each_object() {
    let pipeline = Pipeline::new();
    pipeline.up_to("publish");
    let public = FaultProxy::start_targeted(
        &pipeline.public.host(),
        vec![Targeted {
            method: "GET",
            path: "/tags/list",
            fault: Fault::Status(403),
        }],
    );
    let ran = run_faulted(
        pipeline.publish(&pipeline.staging.host(), &public.host()),
        &[&public],
    );
    completed(&ran);
    assert_eq!(public.faults_left(), 0, "a tag list was refused");
    assert!(
        public
            .requests()
            .iter()
            .any(|request| request.method == "HEAD" && request.path.contains("/blobs/")),
        "the refused repository's blobs were asked about"
    );
    pipeline.check_published(&public.host());
}

/// Images of one repository that hold the same blobs (a base layer, a config) get each uploaded once: two
/// uploads of one blob at once make distribution 2.8 refuse a manifest that names it (`DIGEST_INVALID`).
#[test]
fn a_blob_several_images_hold_is_uploaded_once() {
    let pipeline = Pipeline::new();
    pipeline.up_to("publish");
    let public = FaultProxy::start(&pipeline.public.host(), "", Vec::new());
    let ran = run_faulted(
        pipeline.publish(&pipeline.staging.host(), &public.host()),
        &[&public],
    );
    completed(&ran);
    let uploaded: Vec<String> = public
        .requests()
        .iter()
        .filter(|request| request.method == "PUT" && request.path.contains("/blobs/uploads/"))
        .filter_map(|request| {
            let (path, digest) = request.path.split_once("digest=")?;
            let repository = path.split("/blobs/").next()?;
            Some(format!("{repository} {digest}"))
        })
        .collect();
    let distinct: std::collections::BTreeSet<&String> = uploaded.iter().collect();
    assert!(
        uploaded.len() == distinct.len(),
        "{} uploads of {} blobs: {uploaded:#?}",
        uploaded.len(),
        distinct.len()
    );
    pipeline.check_published(&public.host());
}

/// Whether a request changes a registry's content.
fn is_write(method: &str) -> bool {
    matches!(method, "PUT" | "POST" | "PATCH" | "DELETE")
}

/// Starts `stage` through `proxy`, runs `kill` once `proxy` has seen `writes` requests that write, and waits for
/// the stage: it must end with exit 1 naming the registry, or 0 when it finished before the kill told.
fn killed_during(stage: Imagepipe, proxy: &FaultProxy, writes: usize, kill: impl FnOnce()) {
    let running = stage
        .args(["--timeout", STAGE_TIMEOUT])
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the stage starts");
    let reached = proxy.wait_for(PATIENCE, |requests| {
        requests
            .iter()
            .filter(|request| is_write(&request.method))
            .count()
            >= writes
    });
    kill();
    let output = running.wait_with_output().expect("the stage ends");
    let ran = Ran {
        code: output.status.code(),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    eprintln!(
        "killed after {} requests; exit {:?}:\n{}",
        proxy.requests().len(),
        ran.code,
        ran.stderr
    );
    assert!(reached, "the stage wrote fewer than {writes} times");
    if ran.code != Some(0) {
        failed_clearly(&ran, &[proxy.host()]);
    }
}

#[test]
fn a_registry_killed_during_sign_and_restarted_converges_on_a_re_run() {
    let mut pipeline = Pipeline::new();
    pipeline.up_to("sign");
    let proxy = FaultProxy::start(&pipeline.staging.host(), "", Vec::new());
    killed_during(pipeline.sign(&proxy.host()), &proxy, 12, || {
        pipeline.staging.kill()
    });
    pipeline.staging.restart();
    pipeline.sign(&proxy.host()).run().succeeded();
    pipeline.check_staging();
}

#[test]
fn a_registry_killed_during_publish_and_restarted_converges_on_a_re_run() {
    let mut pipeline = Pipeline::new();
    pipeline.up_to("publish");
    let public = FaultProxy::start(&pipeline.public.host(), "", Vec::new());
    let staging = pipeline.staging.host();
    killed_during(
        pipeline.publish(&staging, &public.host()),
        &public,
        40,
        || pipeline.public.kill(),
    );
    pipeline.public.restart();
    pipeline.publish(&staging, &public.host()).run().succeeded();
    pipeline.check_published(&public.host());
}

/// When create-manifest cannot read a platform image's config, its error names the image, as it does when it
/// cannot read the image's manifest (`reading platform image `…``).
#[test]
fn create_manifest_names_the_image_whose_config_it_cannot_read() {
    let pipeline = Pipeline::new();
    pipeline.up_to("create-manifest");
    let proxy = FaultProxy::start_random(
        &pipeline.staging.host(),
        "/blobs/",
        lasting_faults("create-manifest: configs"),
    );
    failed_clearly(
        &run_faulted(pipeline.create_manifest(&proxy.host()), &[&proxy]),
        &[proxy.host()],
    );
}
