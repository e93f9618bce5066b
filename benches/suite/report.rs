//! `bench/RESULTS.md`: the machine, the settings, one section per latency (times with ratios, requests
//! against the floor, what the requests were, peak memory), the real manifest's structure, and the targets of
//! issue 12 with whether each is met. Written again after every run, so a long run shows its figures early.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::floor::{self, Floor, Floors};
use crate::large::LargeResults;
use crate::measure::{Requests, Sample, median};
use crate::real::RealResults;
use crate::settings::Settings;

/// What one latency's runs measured.
pub struct Section {
    pub delay: Duration,
    pub runs_done: usize,
    /// `/proc/loadavg`'s 1-minute figure before each run: above 0 while the harness is idle, something else
    /// shared the machine.
    pub load: Vec<f64>,
    /// `GET /v2/` on a new connection and again on the same one: through the proxy, and to the registry itself.
    pub calibration: [(Duration, Duration); 2],
    pub samples: BTreeMap<&'static str, Vec<Sample>>,
    /// What each publishing tool left in the target, from the last run.
    pub checks: BTreeMap<&'static str, String>,
    pub floors: Floors,
    pub large: Option<LargeResults>,
    pub real: Option<RealResults>,
}

impl Section {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            runs_done: 0,
            load: Vec::new(),
            calibration: [(Duration::ZERO, Duration::ZERO); 2],
            samples: BTreeMap::new(),
            checks: BTreeMap::new(),
            floors: Floors::default(),
            large: None,
            real: None,
        }
    }

    pub fn add(&mut self, row: &'static str, sample: Sample) {
        self.samples.entry(row).or_default().push(sample);
    }

    /// Median scaled seconds of a row.
    fn seconds(&self, row: &str) -> Option<f64> {
        let samples = self.samples.get(row)?;
        Some(median(
            &mut samples
                .iter()
                .map(Sample::scaled_seconds)
                .collect::<Vec<_>>(),
        ))
    }

    fn range(&self, row: &str) -> String {
        let Some(samples) = self.samples.get(row) else {
            return "–".to_owned();
        };
        let values: Vec<f64> = samples.iter().map(Sample::scaled_seconds).collect();
        let seconds = median(&mut values.clone());
        if values.len() < 2 {
            return format!("{seconds:.2}");
        }
        let (low, high) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(low, high), value| {
                (low.min(*value), high.max(*value))
            });
        format!("{seconds:.2} ({low:.2}–{high:.2})")
    }

    fn requests(&self, row: &str) -> Option<f64> {
        let samples = self.samples.get(row)?;
        Some(median(
            &mut samples
                .iter()
                .map(|sample| sample.requests.total as f64)
                .collect::<Vec<_>>(),
        ))
    }

    fn last(&self, row: &str) -> Option<&Sample> {
        self.samples.get(row)?.last()
    }

    fn round_trip(&self) -> String {
        if self.delay.is_zero() {
            "loopback (no added delay)".to_owned()
        } else {
            format!(
                "{} ms round trip ({} ms each way)",
                milliseconds(self.delay * 2),
                milliseconds(self.delay)
            )
        }
    }
}

fn milliseconds(duration: Duration) -> String {
    let value = duration.as_secs_f64() * 1e3;
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The peer rows: (row, imagepipe's row, how the peer ran).
const PEERS: [(&str, &str, &str); 5] = [
    (
        "buildah",
        "create-manifest",
        "`buildah manifest` create + add per platform + push per shared tag",
    ),
    (
        "cosign each",
        "sign",
        "`cosign sign`, one process per digest",
    ),
    (
        "cosign all",
        "sign",
        "`cosign sign`, one process given all references",
    ),
    (
        "skopeo",
        "publish",
        "`skopeo copy --all --preserve-digests` per tag (sigstore attachments on)",
    ),
    (
        "oras",
        "publish",
        "`oras cp -r` per image + `oras tag` + `oras cp` per `.sig` tag",
    ),
];

const STAGES: [&str; 6] = [
    "create-manifest",
    "create-manifest no-op",
    "sign",
    "sign no-op",
    "publish",
    "publish no-op",
];

pub fn render(settings: &Settings, machine: &str, sections: &[Section]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# imagepipe benchmark results\n");
    let _ = writeln!(
        out,
        "Written by `bench/run.sh` (`cargo bench --bench suite`); every figure below comes from the run described \
         here. Do not edit by hand: run it again.\n"
    );
    let _ = writeln!(out, "- machine: {machine}");
    let _ = writeln!(out, "- workload: {}", settings.describe());
    let _ = writeln!(
        out,
        "- registries: distribution 2.8 (`docker-registry`), one staging and one public per run, fresh each run, \
         plain HTTP on loopback, each behind a latency proxy (`tests/common/latency_proxy.rs`: every byte held \
         back the one-way delay in each direction; a new connection pays one extra round trip for the TCP \
         handshake; keep-alive passes through; no bandwidth limit)"
    );
    let _ = writeln!(
        out,
        "- runs: {} per latency; times are medians (min–max) in seconds, wall clock of the whole process or loop",
        settings.runs
    );
    let _ = writeln!(
        out,
        "- peers' shell loops run over {} of the {} images each run (one `cosign sign` call over {} images' \
         digests) and are scaled linearly to all images: each iteration is a process of its own, so the loop's \
         time is proportional to its length; the one `cosign sign` call is extended as start-up + per-reference \
         cost × all digests, both fitted from that call and the per-digest processes of the same run",
        settings.peer_images(),
        settings.images,
        settings.cosign_all_images()
    );
    for section in sections {
        render_section(&mut out, settings, section);
    }
    let _ = writeln!(
        out,
        "\n## How the floor is counted\n\n{}\n",
        floor::EXPLANATION
    );
    render_peers_copy(&mut out, sections);
    render_targets(&mut out, settings, sections);
    out
}

fn render_section(out: &mut String, settings: &Settings, section: &Section) {
    let _ = writeln!(out, "\n## {}\n", section.round_trip());
    let [(first, again), (direct_first, direct_again)] = section.calibration;
    let _ = writeln!(
        out,
        "Proxy check: `GET /v2/` on a new connection {:.1} ms, again on the same connection {:.1} ms (to the \
         registry itself: {:.1} ms and {:.1} ms). Runs done: {} of {}. Load average (1 min) before each run: \
         {} (2 or more on this machine means something else was running too).\n",
        first.as_secs_f64() * 1e3,
        again.as_secs_f64() * 1e3,
        direct_first.as_secs_f64() * 1e3,
        direct_again.as_secs_f64() * 1e3,
        section.runs_done,
        settings.runs,
        section
            .load
            .iter()
            .map(|load| format!("{load:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "| step | imagepipe (s) | peer | peer (s) | peer ÷ imagepipe |\n|---|---|---|---|---|"
    );
    for stage in STAGES {
        let peers: Vec<_> = PEERS.iter().filter(|(_, ours, _)| *ours == stage).collect();
        if peers.is_empty() {
            let _ = writeln!(out, "| {stage} | {} | | | |", section.range(stage));
        }
        for (row, _, how) in peers {
            let ratio = match (section.seconds(row), section.seconds(stage)) {
                (Some(theirs), Some(ours)) => format!("**{:.1}×**", theirs / ours),
                _ => "–".to_owned(),
            };
            let note = section
                .last(row)
                .map(|sample| {
                    let processes = match sample.processes {
                        1 => "1 process".to_owned(),
                        count => format!("{count} processes"),
                    };
                    format!(
                        " ({processes} for {:.0}% of the images)",
                        sample.fraction * 100.0
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {stage} | {} | {how}{note} | {} | {ratio} |",
                section.range(stage),
                section.range(row)
            );
        }
    }

    let _ = writeln!(
        out,
        "\nimagepipe's requests (median over runs; the rest of the row from the last run) as the registries saw \
         them, against the floor:\n"
    );
    let rows: Vec<(&str, &Sample, f64)> = STAGES
        .iter()
        .filter_map(|stage| {
            Some((
                *stage,
                section.last(stage)?,
                section.requests(stage).unwrap_or(f64::NAN),
            ))
        })
        .collect();
    requests_table(out, &rows, &section.floors);

    let _ = writeln!(
        out,
        "\nPeers' requests (the sampled loop, last run), scaled to all images:\n\n\
         | peer | requests | per image | new connections (TLS probes) | processes | mean in flight | CPU s: peer, registries, proxies |\n\
         |---|---|---|---|---|---|---|"
    );
    for (row, _, how) in PEERS {
        let Some(sample) = section.last(row) else {
            continue;
        };
        let images = settings.images as f64 * sample.fraction;
        let _ = writeln!(
            out,
            "| {how} | {:.0} | {:.1} | {:.0} ({:.0}) | {:.0} | {:.2} | {:.1}, {:.1}, {:.1} |",
            sample.requests.total as f64 / sample.fraction,
            sample.requests.total as f64 / images,
            sample.requests.connections as f64 / sample.fraction,
            sample.requests.tls_probes as f64 / sample.fraction,
            sample.processes as f64 / sample.fraction,
            sample.mean_in_flight(),
            sample.cpu_seconds / sample.fraction,
            sample.requests.registries_cpu_seconds / sample.fraction,
            sample.requests.proxies_cpu_seconds / sample.fraction,
        );
    }
    let peers: Vec<(&str, &Sample)> = PEERS
        .iter()
        .filter_map(|(row, _, _)| Some((*row, section.last(row)?)))
        .collect();
    all_requests(out, &rows, &peers);
    if !section.checks.is_empty() {
        let _ = writeln!(
            out,
            "\nWhat each copy left in the public registry (last run):\n"
        );
        for (tool, check) in &section.checks {
            let _ = writeln!(out, "- {tool}: {check}");
        }
    }
    if let Some(large) = &section.large {
        let _ = writeln!(
            out,
            "\nOne image with a {} MiB layer, published once:\n\n\
             | tool | seconds | peak RSS (MiB) | CPU s | requests |\n|---|---|---|---|---|",
            settings.large_mib
        );
        for (tool, sample) in [
            ("imagepipe publish", &large.imagepipe),
            ("skopeo copy --all", &large.skopeo),
            ("oras cp", &large.oras),
        ] {
            let _ = writeln!(
                out,
                "| {tool} | {:.2} | {:.1} | {:.2} | {} |",
                sample.seconds,
                sample.peak_kib.unwrap_or(0) as f64 / 1024.0,
                sample.cpu_seconds,
                sample.requests.total
            );
        }
    }
    if let Some(real) = &section.real {
        let _ = writeln!(
            out,
            "\nThe real manifest's structure ({}), one run:\n",
            real.description
        );
        let rows: Vec<(&str, &Sample, f64)> = real
            .samples
            .iter()
            .map(|(stage, sample)| (*stage, sample, sample.requests.total as f64))
            .collect();
        requests_table(out, &rows, &real.floors);
        all_requests(out, &rows, &[]);
    }
}

/// One row per stage: time, requests against the floor, how they were made, and what imagepipe used; then, per
/// stage, the kinds of requests beyond the floor and those of the floor it did not make.
fn requests_table(out: &mut String, rows: &[(&str, &Sample, f64)], floors: &Floors) {
    let _ = writeln!(
        out,
        "| step | seconds | requests | floor | ÷ floor | imagepipe's own count | new connections (TLS probes) | \
         mean in flight | registry ms per request | CPU s: imagepipe, registries, proxies | peak RSS (MiB) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    for ((stage, sample, requests), floor) in rows.iter().zip(floors) {
        let _ = writeln!(
            out,
            "| {stage} | {:.2} | {requests:.0} | {} | {:.2} | {} | {} ({}) | {:.1} | {:.2} | {:.2}, {:.2}, {:.2} | {} |",
            sample.seconds,
            floor.total(),
            requests / floor.total() as f64,
            sample
                .logged_requests
                .map_or("–".to_owned(), |count| count.to_string()),
            sample.requests.connections,
            sample.requests.tls_probes,
            sample.mean_in_flight(),
            sample.requests.registry_ms_each(),
            sample.cpu_seconds,
            sample.requests.registries_cpu_seconds,
            sample.requests.proxies_cpu_seconds,
            sample.peak_kib.map_or("–".to_owned(), |kib| format!(
                "{:.1}",
                kib as f64 / 1024.0
            )),
        );
    }
    let _ = writeln!(
        out,
        "\nBeyond the floor (+) and of the floor but not made (−), by kind (last run):\n"
    );
    for ((stage, sample, _), floor) in rows.iter().zip(floors) {
        let _ = writeln!(
            out,
            "- **{stage}**: {}",
            floor::difference(&sample.requests.by_kind, floor)
        );
    }
}

/// Every kind of request each step made, folded away.
fn all_requests(out: &mut String, stages: &[(&str, &Sample, f64)], peers: &[(&str, &Sample)]) {
    let _ = writeln!(
        out,
        "\n<details><summary>All requests by kind (last run; registry, method, path kind, a status other than 2xx \
         in parentheses)</summary>\n"
    );
    for (row, sample) in stages
        .iter()
        .map(|(row, sample, _)| (*row, *sample))
        .chain(peers.iter().copied())
    {
        let _ = writeln!(out, "- **{row}**: {}", breakdown(&sample.requests));
    }
    let _ = writeln!(out, "\n</details>");
}

/// The kinds of requests, most frequent first.
fn breakdown(requests: &Requests) -> String {
    let mut kinds: Vec<(&String, &usize)> = requests.by_kind.iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = kinds
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    format!("{} in all: {}", requests.total, listed.join(" · "))
}

fn render_peers_copy(out: &mut String, sections: &[Section]) {
    let _ = writeln!(
        out,
        "## What each peer does and copies\n\n\
         - create-manifest ↔ `buildah manifest` (1.28): per image `create`, `add docker://…@digest` per platform \
           (reads each child), `push` of the list (without `--all`: the children are there) under `buildah-<tag>` \
           for each shared tag, into the same staging repository.\n\
         - sign ↔ `cosign sign --key … --tlog-upload=false` (2.5): every digest imagepipe signs (each platform and \
           the index), in repositories of their own in the same staging registry (`cosign-each/…`, `cosign-all/…`), \
           so cosign finds no signature there already.\n\
         - publish ↔ skopeo 1.18 `copy --preserve-digests` with `use-sigstore-attachments: true` for both \
           registries: the index with `--all` under each shared tag (each platform and the `.sig` objects of the \
           index and every platform come along), then each platform by digest under its own tag; into \
           `skopeo/<repository>`.\n\
         - publish ↔ oras 1.2: `oras cp -r` of the index under all shared tags in one call (the registry has no \
           referrers API, and oras's fallback looks for `sha256-<hex>` tags, not cosign's `.sig`, so `-r` finds \
           nothing), `oras tag` of each platform's tag, and `oras cp` of each `.sig` tag; into `oras/<repository>`.\n\
         - imagepipe publish: every image, platform and `.sig` object by digest, then platform tags, then shared \
           tags; into `<repository>`.\n"
    );
    let _ = sections;
}

fn render_targets(out: &mut String, settings: &Settings, sections: &[Section]) {
    let _ = writeln!(out, "## Targets (issue 12)\n");
    let remote = sections
        .iter()
        .find(|section| section.delay == Duration::from_millis(20));
    let loopback = sections.iter().find(|section| section.delay.is_zero());
    let verdict = |met: bool| if met { "met" } else { "**not met**" };
    let mut lines = Vec::new();
    if let Some(section) = remote {
        if let (Some(ours), Some(theirs)) = (section.seconds("sign"), section.seconds("cosign all"))
        {
            let ratio = theirs / ours;
            lines.push(format!(
                "sign ≥ 20× one `cosign sign` call at 40 ms: {ratio:.1}× ({theirs:.2} s ÷ {ours:.2} s): {}",
                verdict(ratio >= 20.0)
            ));
        }
        if let (Some(ours), Some(theirs)) = (section.seconds("publish"), section.seconds("oras")) {
            let ratio = theirs / ours;
            lines.push(format!(
                "publish ≥ 8× the `oras cp -r` loop at 40 ms: {ratio:.1}× ({theirs:.2} s ÷ {ours:.2} s): {}",
                verdict(ratio >= 8.0)
            ));
        }
        if let Some(seconds) = section.seconds("publish no-op") {
            // Each request waits a round trip at least: so many must be in flight at once to finish in 1 s.
            let floor = section.floors[5].total();
            let needed = floor as f64 * (section.delay * 2).as_secs_f64();
            let in_flight = section
                .last("publish no-op")
                .map_or(0.0, Sample::mean_in_flight);
            lines.push(format!(
                "no-op publish of {} images × {} platforms < 1 s at 40 ms: {seconds:.2} s: {}{} (even at its floor \
                 of {floor} requests, 1 s takes at least {needed:.0} requests in flight all along; this run \
                 averaged {in_flight:.1})",
                settings.images,
                settings.platforms,
                verdict(seconds < 1.0),
                if settings.images == 100 && settings.platforms == 3 {
                    ""
                } else {
                    " (not the issue's 100 × 3)"
                }
            ));
        }
    }
    let reference = remote.or(loopback);
    if let Some(section) = reference {
        let floors: Vec<usize> = section.floors.iter().map(Floor::total).collect();
        let over: Vec<String> = STAGES
            .iter()
            .zip(floors.iter().copied())
            .filter_map(|(stage, floor)| {
                let requests = section.requests(stage)?;
                let ratio = requests / floor as f64;
                Some(format!(
                    "{stage} {:+.0}%{}",
                    (ratio - 1.0) * 100.0,
                    if ratio <= 1.1 { "" } else { " ✗" }
                ))
            })
            .collect();
        let all_within = STAGES.iter().zip(floors).all(|(stage, floor)| {
            section
                .requests(stage)
                .is_none_or(|requests| requests <= floor as f64 * 1.1)
        });
        lines.push(format!(
            "every stage's requests within 10 % of the floor: {}: {}",
            over.join(", "),
            verdict(all_within)
        ));
        if let Some(large) = &section.large {
            let mib = large.imagepipe.peak_kib.unwrap_or(0) as f64 / 1024.0;
            lines.push(format!(
                "peak RSS < 100 MiB publishing a {} MiB layer: {mib:.1} MiB: {}",
                settings.large_mib,
                verdict(mib < 100.0)
            ));
        }
    }
    if let Some(section) = loopback {
        if let (Some(ours), Some(theirs)) = (section.seconds("publish"), section.seconds("oras")) {
            let ratio = theirs / ours;
            lines.push(format!(
                "publish ≥ 3× the `oras cp -r` loop on loopback: {ratio:.1}× ({theirs:.2} s ÷ {ours:.2} s): {}",
                verdict(ratio >= 3.0)
            ));
        }
    }
    for line in lines {
        let _ = writeln!(out, "- {line}");
    }
}

/// The 1-minute load average.
pub fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// CPU, cores, kernel, date, and the commit measured.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, name)| name.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_default();
    let command = |program: &str, arguments: &[&str]| {
        std::process::Command::new(program)
            .args(arguments)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let date = command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let commit = command("git", &["log", "-1", "--format=%h %cs", "--", "src"]);
    let dirty = if command(
        "git",
        &["status", "--porcelain", "--untracked-files=no", "--", "src"],
    )
    .is_empty()
    {
        ""
    } else {
        " (src/ modified)"
    };
    format!(
        "{cpu}, {cores} cores, Linux {kernel}, {date}; imagepipe's src/ as of commit `{commit}`{dirty}"
    )
}
