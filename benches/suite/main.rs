//! The benchmark suite behind `bench/run.sh`: imagepipe's registry stages against their peers, on the same real
//! registries in one run, through latency proxies (40 ms round trip and loopback by default), medians over
//! several runs, HTTP requests against the floor, and peak memory; written to `bench/RESULTS.md`.
//!
//! Each run starts a fresh staging and public registry with a proxy in front of each, pushes the workload into
//! staging (directly, unmeasured), runs post-build, then measures in order: create-manifest and its no-op
//! re-run, `buildah manifest`; sign and its no-op re-run, `cosign sign` per digest and in one call; publish and
//! its no-op re-run, the skopeo and oras loops. After the runs of a latency: the large-layer publish (peak
//! memory) and the real manifest's structure, each on registries of their own.
//!
//! Run: `bench/run.sh [--name VALUE]…` (see `settings.rs`; needs `scripts/install-test-deps.sh`).

#[path = "../../tests/common/mod.rs"]
mod common;
mod floor;
mod large;
mod measure;
mod peers;
mod real;
mod report;
mod settings;
mod stage;
mod workload;

use std::path::Path;
use std::time::Duration;

use imagepipe::model::reference::Digest;
use imagepipe::store::registry::RegistryStore;
use imagepipe::store::{ManifestReference, Store, signature_tag};

use common::Registry;
use common::latency_proxy::LatencyProxy;
use measure::{Network, calibrate, measure};
use peers::{PASSWORD, Peers};
use report::Section;
use settings::Settings;
use stage::{Stages, imagepipe};
use workload::{PREFIX, WorkloadImage};

/// Registries and their proxies for one run, with a work folder. Proxies stop before their registries.
struct Scene {
    staging_proxy: LatencyProxy,
    public_proxy: LatencyProxy,
    staging: Registry,
    public: Registry,
    folder: tempfile::TempDir,
}

impl Scene {
    fn start(delay: Duration) -> Self {
        let staging = Registry::start();
        let public = Registry::start();
        Self {
            staging_proxy: LatencyProxy::start(&staging.host(), delay),
            public_proxy: LatencyProxy::start(&public.host(), delay),
            staging,
            public,
            folder: tempfile::Builder::new()
                .prefix("imagepipe-bench-")
                .tempdir()
                .expect("a temp dir"),
        }
    }

    fn network(&self) -> Network<'_> {
        let config = |registry: &Registry| {
            registry
                .log_path()
                .parent()
                .expect("the registry's folder")
                .join("config.yml")
        };
        Network {
            staging: &self.staging_proxy,
            public: &self.public_proxy,
            registry_processes: [&self.staging, &self.public]
                .into_iter()
                .flat_map(|registry| measure::processes_serving(&config(registry)))
                .collect(),
        }
    }

    fn peers(&self, key: &Path) -> Peers {
        Peers {
            folder: self.folder.path().to_owned(),
            staging: self.staging_proxy.host(),
            public: self.public_proxy.host(),
            key: key.to_owned(),
        }
    }
}

fn main() {
    let settings = Settings::load();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let images = workload::generate(&settings);
    let keys = tempfile::tempdir().expect("a temp dir");
    let key = common::stages::generate_key(&keys.path().join("bench"), PASSWORD);
    let machine = report::machine();
    let mut sections: Vec<Section> = Vec::new();
    let write = |sections: &[Section]| {
        if let Some(folder) = settings.output.parent() {
            std::fs::create_dir_all(folder).expect("creates the output folder");
        }
        std::fs::write(
            &settings.output,
            report::render(&settings, &machine, sections),
        )
        .expect("writes the results");
    };
    eprintln!("bench: {}", settings.describe());
    for delay in settings.delays.clone() {
        sections.push(Section::new(delay));
        for run in 0..settings.runs {
            eprintln!(
                "bench: {delay:?} each way, run {} of {}",
                run + 1,
                settings.runs
            );
            let section = sections.last_mut().expect("a section");
            section.load.push(report::load());
            one_run(&settings, &runtime, &images, &key, run, section);
            section.runs_done += 1;
            write(&sections);
        }
        let section = sections.last_mut().expect("a section");
        if settings.large_mib > 0 {
            eprintln!(
                "bench: {delay:?} each way, a {} MiB layer",
                settings.large_mib
            );
            let scene = Scene::start(delay);
            section.large = Some(large::run(
                &runtime,
                &scene.network(),
                &scene.staging.host(),
                &scene.peers(&key),
                settings.large_mib,
            ));
            write(&sections);
        }
        let section = sections.last_mut().expect("a section");
        if settings.real_manifest {
            eprintln!("bench: {delay:?} each way, the real manifest's structure");
            let scene = Scene::start(delay);
            section.real = real::run(
                &runtime,
                &scene.network(),
                &scene.staging.host(),
                scene.folder.path(),
            );
            write(&sections);
        }
    }
    eprintln!("bench: wrote {}", settings.output.display());
}

fn one_run(
    settings: &Settings,
    runtime: &tokio::runtime::Runtime,
    images: &[WorkloadImage],
    key: &Path,
    run: usize,
    section: &mut Section,
) {
    let scene = Scene::start(section.delay);
    let network = scene.network();
    let folder = scene.folder.path();
    let peers = scene.peers(key);
    let sample = &images[..settings.peer_images()];
    let fraction = sample.len() as f64 / images.len() as f64;
    let cosign_all = &images[..settings.cosign_all_images()];
    let staging_direct = scene.staging.host();
    runtime.block_on(async {
        workload::push(images, &staging_direct, &format!("{PREFIX}/"), None).await;
        if settings.runs_section("sign") {
            workload::push(sample, &staging_direct, "cosign-each/", Some("1.0")).await;
            workload::push(cosign_all, &staging_direct, "cosign-all/", Some("1.0")).await;
        }
    });
    if run == 0 {
        section.calibration = [
            calibrate(&scene.staging_proxy.host()),
            calibrate(&staging_direct),
        ];
    }
    let manifest = workload::write_inputs(settings, images, folder, &scene.public_proxy.host());
    let info = common::stages::post_build(
        &manifest,
        &folder.join("fragments"),
        &folder.join("image-info.json"),
    );
    let staging = scene.staging_proxy.host();
    let stages = Stages {
        manifest: common::path(&manifest),
        image_info: common::path(&info),
        key: common::path(key),
        staging: staging.clone(),
        prefix: PREFIX.to_owned(),
        output: common::path(&folder.join("final-image-info.json")),
    };
    let shared_tags = settings.shared_tag_names();

    eprintln!("bench:   create-manifest");
    section.add(
        "create-manifest",
        imagepipe(&network, &stages.create_manifest()),
    );
    section.add(
        "create-manifest no-op",
        imagepipe(&network, &stages.create_manifest()),
    );
    section.floors = floor::floors(&info, |_| settings.layers + 1);
    let indexes = workload::index_digests(&info);
    if settings.runs_section("create-manifest") {
        eprintln!("bench:   buildah manifest");
        section.add(
            "buildah",
            measure(&network, fraction, || {
                peers.buildah_manifest(sample, &shared_tags, run)
            }),
        );
    }

    eprintln!("bench:   sign");
    section.add("sign", imagepipe(&network, &stages.sign()));
    section.add("sign no-op", imagepipe(&network, &stages.sign()));
    if settings.runs_section("sign") {
        let references = |images: &[WorkloadImage], repository_prefix: &str| -> Vec<String> {
            images
                .iter()
                .flat_map(|image| {
                    let index = image.index.digest();
                    image
                        .digests(&index)
                        .into_iter()
                        .map(|digest| {
                            format!("{staging}/{repository_prefix}{}@{digest}", image.repository)
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        eprintln!("bench:   cosign sign");
        let each = references(sample, "cosign-each/");
        let each_sample = measure(&network, fraction, || peers.cosign_sign(&each, true));
        let all = references(cosign_all, "cosign-all/");
        let mut all_sample = measure(
            &network,
            cosign_all.len() as f64 / images.len() as f64,
            || peers.cosign_sign(&all, false),
        );
        let digests = images.len() * (settings.platforms + 1);
        all_sample.extrapolated = extrapolate_one_process(
            each_sample.seconds / each.len() as f64,
            all_sample.seconds,
            all.len(),
            digests,
        );
        section.add("cosign each", each_sample);
        section.add("cosign all", all_sample);
    }

    eprintln!("bench:   publish");
    section.add("publish", imagepipe(&network, &stages.publish()));
    section.add("publish no-op", imagepipe(&network, &stages.publish()));
    let public_direct = scene.public.host();
    let check = |target_prefix: &str, images: &[WorkloadImage]| {
        runtime.block_on(check_copies(
            &staging_direct,
            &public_direct,
            target_prefix,
            images,
            &indexes[..images.len()],
            &shared_tags,
        ))
    };
    section
        .checks
        .insert("imagepipe publish", check("", images));
    if settings.runs_section("publish") {
        let sample_indexes = &indexes[..sample.len()];
        eprintln!("bench:   skopeo copy");
        section.add(
            "skopeo",
            measure(&network, fraction, || {
                peers.skopeo_copy(sample, sample_indexes, &shared_tags)
            }),
        );
        section
            .checks
            .insert("skopeo copy loop", check("skopeo/", sample));
        eprintln!("bench:   oras cp");
        section.add(
            "oras",
            measure(&network, fraction, || {
                peers.oras_copy(sample, sample_indexes, &shared_tags)
            }),
        );
        section.checks.insert("oras loop", check("oras/", sample));
    }
}

/// One `cosign sign` process over `references` of the `total` digests, timed at `seconds`, extended to all
/// digests: a start-up `s` plus `c` per reference, from this process and the per-digest processes of the same run
/// (`per_process` = s + c each). Scaling the time linearly would count the start-up once per slice.
fn extrapolate_one_process(
    per_process: f64,
    seconds: f64,
    references: usize,
    total: usize,
) -> Option<f64> {
    if references < 2 {
        return None;
    }
    let per_reference = (seconds - per_process) / (references - 1) as f64;
    let start_up = (per_process - per_reference).clamp(0.0, seconds);
    let per_reference = (seconds - start_up) / references as f64;
    Some(start_up + per_reference * total as f64)
}

/// Whether `<prefix><repository>` in the public registry holds every tag with the digest it should name: each
/// platform's tag, each shared tag, and the `.sig` tag of every digest with the signature object staging holds.
async fn check_copies(
    staging: &str,
    public: &str,
    prefix: &str,
    images: &[WorkloadImage],
    indexes: &[Digest],
    shared_tags: &[String],
) -> String {
    let (source, target) = (workload::store(staging), workload::store(public));
    let (mut tags_right, mut tags_wrong, mut tags_missing) = (0, 0, 0);
    let (mut signatures_same, mut signatures_rewritten, mut signatures_missing) = (0, 0, 0);
    for (image, index) in images.iter().zip(indexes) {
        let repository = format!("{prefix}{}", image.repository);
        let mut expected: Vec<(String, String)> = image
            .platforms
            .iter()
            .map(|platform| (platform.tag.clone(), platform.manifest.digest().to_string()))
            .collect();
        expected.extend(
            shared_tags
                .iter()
                .map(|tag| (tag.clone(), index.to_string())),
        );
        for (tag, digest) in expected {
            match digest_at(&target, &repository, &tag).await {
                Some(found) if found == digest => tags_right += 1,
                Some(_) => tags_wrong += 1,
                None => tags_missing += 1,
            }
        }
        for digest in image.digests(index) {
            let tag = signature_tag(&digest);
            let staged = digest_at(&source, &format!("{PREFIX}/{}", image.repository), &tag).await;
            match digest_at(&target, &repository, &tag).await {
                None => signatures_missing += 1,
                found if found == staged => signatures_same += 1,
                Some(_) => signatures_rewritten += 1,
            }
        }
    }
    let mut summary = format!(
        "{tags_right} tags right, {tags_wrong} naming another digest, {tags_missing} missing; \
         {signatures_same} `.sig` objects identical to staging's"
    );
    if signatures_rewritten > 0 {
        summary += &format!(
            ", {signatures_rewritten} present under another digest (re-written, signatures kept)"
        );
    }
    summary += &format!(", {signatures_missing} missing");
    summary
}

async fn digest_at(store: &RegistryStore, repository: &str, tag: &str) -> Option<String> {
    store
        .head_manifest(repository, ManifestReference::Tag(tag))
        .await
        .expect("a HEAD answers")
        .map(|descriptor| descriptor.digest().to_string())
}
