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

/// The fewest requests of one stage, by kind (as `measure::kind` names them: registry, method, path kind).
#[derive(Debug, Clone, Default)]
pub struct Floor {
    pub by_kind: BTreeMap<String, usize>,
}

impl Floor {
    pub fn total(&self) -> usize {
        self.by_kind.values().sum()
    }

    fn with(mut self, kind: &str, count: usize) -> Self {
        if count > 0 {
            *self.by_kind.entry(kind.to_owned()).or_default() += count;
        }
        self
    }
}

/// Floors of one workload, in the order the stages run: create-manifest, its no-op re-run, sign, its no-op,
/// publish, its no-op.
pub type Floors = [Floor; 6];

/// The floors for the image-info `info` (after create-manifest), each platform image having `blobs_of(digest)`
/// blobs.
pub fn floors(info: &Path, blobs_of: impl Fn(&str) -> usize) -> Floors {
    let repositories = repositories(info, blobs_of);
    let sum = |each: &dyn Fn(&Repository) -> usize| repositories.values().map(each).sum::<usize>();
    let r = repositories.len();
    let d = sum(&Repository::digests);
    let b = sum(&Repository::blobs);
    let c = sum(&|repository| repository.children.len());
    let t = sum(&|repository| repository.tags.len());
    let i = sum(&|repository| repository.index_tags);
    let staging_ping = Floor::default().with("staging GET ping", 1);
    let pings = staging_ping.clone().with("public GET ping", 1);
    [
        staging_ping
            .clone()
            .with("staging HEAD manifest@digest", c)
            .with("staging PUT manifest:tag", i),
        staging_ping.clone().with("staging HEAD manifest:tag", i),
        staging_ping
            .clone()
            .with("staging GET tags/list", r)
            .with("staging POST upload", 2 * d)
            .with("staging PUT upload", 2 * d)
            .with("staging PUT manifest:.sig", d),
        staging_ping
            .with("staging GET tags/list", r)
            .with("staging GET manifest:.sig", d),
        pings
            .clone()
            .with("staging GET tags/list", r)
            .with("public GET tags/list (404)", r)
            .with("staging GET manifest@digest", d)
            .with("staging GET manifest:.sig", d)
            .with("staging GET blob", b + 2 * d)
            .with("public POST upload", b + 2 * d)
            .with("public PUT upload", b + 2 * d)
            .with("public PUT manifest@digest", d)
            .with("public PUT manifest:.sig", d)
            .with("public PUT manifest:tag", t),
        pings
            .with("staging GET tags/list", r)
            .with("public HEAD manifest:tag", t)
            .with("public HEAD manifest:.sig", d),
    ]
}

/// What `measured` has beyond `floor` and what it lacks of it, by kind: `public HEAD blob (404) +1700 · …`.
pub fn difference(measured: &BTreeMap<String, usize>, floor: &Floor) -> String {
    let mut kinds: Vec<(&String, i64)> = measured
        .keys()
        .chain(floor.by_kind.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|kind| {
            let count = |map: &BTreeMap<String, usize>| map.get(kind).copied().unwrap_or(0) as i64;
            (kind, count(measured) - count(&floor.by_kind))
        })
        .filter(|(_, difference)| *difference != 0)
        .collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = kinds
        .iter()
        .map(|(kind, difference)| format!("{kind} {difference:+}"))
        .collect();
    if listed.is_empty() {
        "the floor exactly".to_owned()
    } else {
        listed.join(" · ")
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
