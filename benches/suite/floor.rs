//! The fewest HTTP requests each stage can make for a workload, on a registry like the one here (distribution
//! 2.8: no referrers API, so signatures are `.sig` tags; no single-request blob upload, so an upload is a POST
//! and a PUT; no auth, so no token requests), under the product's own rules (publish copies content by digest
//! and sets tags last; sign skips a digest only after checking that its signature is ours). Counted from
//! image-info after create-manifest, over distinct objects per repository. [`EXPLANATION`] says the same for
//! RESULTS.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common;

pub const EXPLANATION: &str = "\
How the floor is counted (R repositories; per repository D distinct digests to sign = platform images + \
indexes, B blobs of the platform images, C distinct index children, T distinct tags = platform tags + shared \
tags; I = shared tags over all indexes). Every blob upload is 2 requests (POST, then PUT with the body): \
distribution 2.8 answers a single-request `POST …/uploads/?digest=` with 202 and stores nothing. A cosign \
signature object is 2 blobs (payload layer, config) and a manifest under the `sha256-<hex>.sig` tag.

| stage | first run | no-op re-run |
|---|---|---|
| create-manifest | 1 ping + C (one HEAD per child: size and media type; the platform is in image-info) + I (one PUT per shared tag; the first creates the index) | 1 ping + I (one HEAD per shared tag, the index computed from recorded child descriptors) |
| sign | 1 ping + R (`tags/list`: which `.sig` tags exist) + 5 per digest (2 blob uploads × 2 + PUT of the `.sig` manifest) | 1 ping + R (`tags/list`) + D (GET of each `.sig` manifest: its layer digest and signature annotation check against our deterministic payload and key) |
| publish | 2 pings + per repository: 2 `tags/list` (staging: every digest is signed; target: what exists) + D + D GETs of manifests (images and `.sig`s) + B + 2D GETs of blobs + 2 × (B + 2D) for their uploads + D PUTs by digest + D PUTs of `.sig` tags + T PUTs of tags | 2 pings + per repository: 1 `tags/list` (staging signatures) + T HEADs (each tag names its digest) + D HEADs of `.sig` tags (digest equals the signature object image-info records) |

Not counted in any floor: HEADs that prove a digest exists before signing it (create-manifest pushed the \
indexes, and the registry refused them if a child were missing), retries, token requests (no auth here), and \
connection setup (counted apart). With Windows platforms, an index child's `os.version` is in its config, \
which would add a GET per Windows child to create-manifest; the synthetic workloads here have none that matter.";

/// One repository's objects, from image-info.
#[derive(Default)]
struct Repository {
    /// Platform digest → blobs (layers + config).
    platforms: BTreeMap<String, usize>,
    indexes: BTreeSet<String>,
    children: BTreeSet<String>,
    tags: BTreeSet<String>,
    /// Shared tags summed over indexes.
    index_tags: usize,
}

impl Repository {
    fn digests(&self) -> usize {
        self.platforms.len() + self.indexes.len()
    }

    fn blobs(&self) -> usize {
        self.platforms.values().sum()
    }
}

/// Floors of one workload, first run and no-op re-run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floors {
    pub create_manifest: (usize, usize),
    pub sign: (usize, usize),
    pub publish: (usize, usize),
}

impl Floors {
    /// In the order of the stages as run: create-manifest, its no-op, sign, its no-op, publish, its no-op.
    pub fn in_order(&self) -> [usize; 6] {
        [
            self.create_manifest.0,
            self.create_manifest.1,
            self.sign.0,
            self.sign.1,
            self.publish.0,
            self.publish.1,
        ]
    }
}

/// The floors for the image-info `info` (after create-manifest), each platform image having `blobs_of(digest)`
/// blobs.
pub fn floors(info: &Path, blobs_of: impl Fn(&str) -> usize) -> Floors {
    let repositories = repositories(info, blobs_of);
    let sum = |each: &dyn Fn(&Repository) -> usize| repositories.values().map(each).sum::<usize>();
    let repository_count = repositories.len();
    let digests = sum(&Repository::digests);
    Floors {
        create_manifest: (
            1 + sum(&|repository| repository.children.len() + repository.index_tags),
            1 + sum(&|repository| repository.index_tags),
        ),
        sign: (
            1 + repository_count + 5 * digests,
            1 + repository_count + digests,
        ),
        publish: (
            2 + sum(&|repository| {
                let (d, b, t) = (
                    repository.digests(),
                    repository.blobs(),
                    repository.tags.len(),
                );
                2 + 2 * d + (b + 2 * d) + 2 * (b + 2 * d) + d + d + t
            }),
            2 + sum(&|repository| 1 + repository.tags.len() + repository.digests()),
        ),
    }
}

fn digest_of(reference: &serde_json::Value) -> Option<String> {
    Some(reference.as_str()?.rsplit_once('@')?.1.to_owned())
}

fn repositories(info: &Path, blobs_of: impl Fn(&str) -> usize) -> BTreeMap<String, Repository> {
    let info = common::read_json(info);
    let mut repositories: BTreeMap<String, Repository> = BTreeMap::new();
    for repo in info["repos"].as_array().into_iter().flatten() {
        let name = repo["repo"].as_str().unwrap_or_default().to_owned();
        let repository = repositories.entry(name).or_default();
        for image in repo["images"].as_array().into_iter().flatten() {
            let platforms: Vec<String> = image["platforms"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|platform| {
                    let digest = digest_of(&platform["digest"])?;
                    repository
                        .platforms
                        .insert(digest.clone(), blobs_of(&digest));
                    for tag in platform["simpleTags"].as_array().into_iter().flatten() {
                        repository
                            .tags
                            .insert(tag.as_str().unwrap_or_default().to_owned());
                    }
                    Some(digest)
                })
                .collect();
            if let Some(index) = digest_of(&image["manifest"]["digest"]) {
                repository.indexes.insert(index);
                repository.children.extend(platforms);
                for tag in image["manifest"]["sharedTags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    repository.index_tags += 1;
                    repository
                        .tags
                        .insert(tag.as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    repositories
}
