//! The structure of the real dotnet-docker manifest (`../shared/data/dotnet/dotnet-docker`) with tiny images:
//! imagepipe's stages and their no-op re-runs, timed and counted against the floor. No peers: their loops over
//! hundreds of images would take longer than the rest of the suite.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{self, real_manifest};
use crate::floor::{Floors, floors};
use crate::measure::{Network, Sample};
use crate::peers::PASSWORD;
use crate::stage::{Stages, imagepipe};

pub struct RealResults {
    pub description: String,
    /// Stage → sample, in the order run.
    pub samples: Vec<(&'static str, Sample)>,
    pub floors: Floors,
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    network: &Network<'_>,
    staging_direct: &str,
    work: &Path,
) -> Option<RealResults> {
    let data = common::shared_data()?;
    let prefix = "staging/real";
    let manifest_file = real_manifest::copy_manifest(
        &data.join("dotnet/dotnet-docker"),
        work,
        &network.public.host(),
    );
    let manifest =
        imagepipe::inputs::load_manifest(&manifest_file, &BTreeMap::new()).expect("loads");
    let pushed = runtime.block_on(real_manifest::build(
        &manifest,
        staging_direct,
        &format!("{prefix}/"),
        "real",
        work,
        |_| true,
    ));
    let info = common::stages::post_build(
        &manifest_file,
        &work.join("real/fragments"),
        &work.join("real/image-info.json"),
    );
    let key = common::stages::generate_key(&work.join("real-cosign"), PASSWORD);
    let stages = Stages {
        manifest: common::path(&manifest_file),
        image_info: common::path(&info),
        key: common::path(&key),
        staging: network.staging.host(),
        prefix: prefix.to_owned(),
        output: common::path(&work.join("real/final.json")),
    };
    let mut samples = Vec::new();
    for (name, arguments) in [
        ("create-manifest", stages.create_manifest()),
        ("create-manifest no-op", stages.create_manifest()),
        ("sign", stages.sign()),
        ("sign no-op", stages.sign()),
        ("publish", stages.publish()),
        ("publish no-op", stages.publish()),
    ] {
        eprintln!("bench:   real manifest: {name}");
        samples.push((name, imagepipe(network, &arguments)));
    }
    // After create-manifest: image-info has the index digests.
    let floors = floors(&info, |_| real_manifest::BLOBS_PER_IMAGE);
    let images: usize = manifest.repos.iter().map(|repo| repo.images.len()).sum();
    Some(RealResults {
        description: format!(
            "{} repositories, {images} images, {pushed} distinct platform images (one layer and a config each)",
            manifest.repos.len()
        ),
        samples,
        floors,
    })
}
