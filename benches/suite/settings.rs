//! What the suite measures and how much of it: each setting from `--name VALUE` on the command line (what
//! `bench/run.sh` passes on), else the environment variable `BENCH_NAME`, else its default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The platforms a workload image is built for, the first `platforms` of them.
pub const PLATFORMS: [(&str, Option<&str>); 6] = [
    ("amd64", None),
    ("arm64", Some("v8")),
    ("arm", Some("v7")),
    ("ppc64le", None),
    ("s390x", None),
    ("386", None),
];

#[derive(Debug, Clone)]
pub struct Settings {
    /// Images in the workload, each its own repository.
    pub images: usize,
    /// Platforms per image (at most [`PLATFORMS`]).
    pub platforms: usize,
    /// Layers per platform image.
    pub layers: usize,
    /// Bytes per layer.
    pub layer_bytes: usize,
    /// Shared tags per image (the index's tags); every platform has one tag of its own.
    pub shared_tags: usize,
    /// Runs per latency; the tables give medians.
    pub runs: usize,
    /// One-way delays the proxies add, one section each: 20 ms is a 40 ms round trip.
    pub delays: Vec<Duration>,
    /// Images the peers' shell loops run over in each run; their times are scaled to `images`.
    pub peer_sample: usize,
    /// References given to the one `cosign sign` call, in images (each `platforms + 1` digests); scaled too.
    pub cosign_all_sample: usize,
    /// The large layer, in MiB (0: no peak-memory measurement).
    pub large_mib: u64,
    /// Whether to run the real manifest's structure (needs `../shared/data`).
    pub real_manifest: bool,
    /// Which sections to run: `create-manifest`, `sign`, `publish` (empty: all).
    pub only: Vec<String>,
    pub output: PathBuf,
}

impl Settings {
    pub fn load() -> Self {
        let mut given = BTreeMap::new();
        let mut arguments = std::env::args().skip(1);
        while let Some(argument) = arguments.next() {
            // `cargo bench` passes `--bench` to every target.
            if argument == "--bench" {
                continue;
            }
            let Some(name) = argument.strip_prefix("--") else {
                panic!("unexpected argument `{argument}`: settings are `--name VALUE`");
            };
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = arguments
                        .next()
                        .unwrap_or_else(|| panic!("`--{name}` needs a value"));
                    (name.to_owned(), value)
                }
            };
            given.insert(name.replace('_', "-"), value);
        }
        let given = std::cell::RefCell::new(given);
        let value = |name: &str, default: &str| -> String {
            let variable = format!("BENCH_{}", name.replace('-', "_").to_uppercase());
            given
                .borrow_mut()
                .remove(name)
                .or_else(|| {
                    std::env::var(variable)
                        .ok()
                        .filter(|value| !value.is_empty())
                })
                .unwrap_or_else(|| default.to_owned())
        };
        let number = |name: &str, default: &str| -> usize {
            let text = value(name, default);
            text.parse()
                .unwrap_or_else(|_| panic!("`{name}` must be a number, not `{text}`"))
        };
        let list = |text: String| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let settings = Self {
            images: number("images", "100"),
            platforms: number("platforms", "3"),
            layers: number("layers", "2"),
            layer_bytes: number("layer-bytes", "4096"),
            shared_tags: number("shared-tags", "2"),
            runs: number("runs", "3"),
            delays: list(value("delays-ms", "20,0"))
                .iter()
                .map(|text| {
                    Duration::from_secs_f64(
                        text.parse::<f64>()
                            .unwrap_or_else(|_| panic!("a delay in ms, not `{text}`"))
                            / 1e3,
                    )
                })
                .collect(),
            peer_sample: number("peer-sample", "5"),
            cosign_all_sample: number("cosign-all-sample", "10"),
            large_mib: number("large-mib", "512") as u64,
            real_manifest: value("real-manifest", "1") != "0",
            only: list(value("only", "")),
            output: PathBuf::from(value(
                "output",
                concat!(env!("CARGO_MANIFEST_DIR"), "/bench/RESULTS.md"),
            )),
        };
        if let Some(unknown) = given.borrow().keys().next() {
            panic!("unknown setting `--{unknown}`");
        }
        assert!(
            (1..=PLATFORMS.len()).contains(&settings.platforms),
            "platforms: 1 to {}",
            PLATFORMS.len()
        );
        assert!(settings.runs >= 1 && settings.images >= 1 && settings.layers >= 1);
        settings
    }

    pub fn runs_section(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|only| only == section)
    }

    /// Peers loop over this many images (never more than there are).
    pub fn peer_images(&self) -> usize {
        self.peer_sample.clamp(1, self.images)
    }

    pub fn cosign_all_images(&self) -> usize {
        self.cosign_all_sample.clamp(1, self.images)
    }

    pub fn platforms(&self) -> &'static [(&'static str, Option<&'static str>)] {
        &PLATFORMS[..self.platforms]
    }

    /// `1.0` and then `latest`, `stable`, `s3`, …
    pub fn shared_tag_names(&self) -> Vec<String> {
        (0..self.shared_tags)
            .map(|index| match index {
                0 => "1.0".to_owned(),
                1 => "latest".to_owned(),
                2 => "stable".to_owned(),
                _ => format!("s{index}"),
            })
            .collect()
    }

    /// `N images × P platforms × L layers of B bytes, T shared tags`.
    pub fn describe(&self) -> String {
        format!(
            "{} images × {} platforms × {} layers of {} bytes, {} shared tags + 1 tag per platform, \
             every digest signed",
            self.images, self.platforms, self.layers, self.layer_bytes, self.shared_tags
        )
    }
}
