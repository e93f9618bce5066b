//! Benchmark: `imagepipe post-build` merging 1,000 fragments of 5 platforms each, end to end (the real binary,
//! files on disk), against `jq` merely reading the same files, the floor any merge tool has to pay.
//!
//! Run: `cargo bench --bench post_build`. Prints figures; asserts nothing about time.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const FRAGMENTS: usize = 1_000;
const REPOS: usize = 10;
const RUNS: usize = 5;
const ARCHITECTURES: [(&str, Option<&str>); 5] = [
    ("amd64", None),
    ("arm64", Some("v8")),
    ("arm", Some("v7")),
    ("ppc64le", None),
    ("s390x", None),
];

fn main() {
    let folder = tempfile::tempdir().expect("temp dir");
    let fragments = folder.path().join("fragments");
    std::fs::create_dir(&fragments).expect("creates");
    write_inputs(folder.path(), &fragments);
    let output = folder.path().join("image-info.json");

    let imagepipe = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_imagepipe"));
        command
            .arg("post-build")
            .arg("--manifest")
            .arg(folder.path().join("manifest.json"))
            .arg("--fragments")
            .arg(&fragments)
            .arg("--output")
            .arg(&output)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("TF_BUILD");
        command
    };
    let ours = measure(imagepipe);
    let merged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&output).expect("output")).expect("JSON");
    let platforms: usize = merged["repos"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|repo| repo["images"].as_array().into_iter().flatten())
        .map(|image| image["platforms"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        platforms,
        FRAGMENTS * ARCHITECTURES.len(),
        "every platform merged"
    );

    println!(
        "post-build: {FRAGMENTS} fragments x {} platforms, {RUNS} runs each, median (min)",
        ARCHITECTURES.len()
    );
    println!("  imagepipe post-build   {}", figure(&ours));
    match which("jq") {
        Some(jq) => {
            let files: Vec<_> = std::fs::read_dir(&fragments)
                .expect("lists")
                .map(|entry| entry.expect("entry").path())
                .collect();
            let floor = measure(|| {
                let mut command = Command::new(&jq);
                command.arg("-s").arg("length").args(&files);
                command
            });
            println!("  jq -s (read only)      {}", figure(&floor));
            println!(
                "  ratio imagepipe / jq read-only: {:.2}",
                median(&ours).as_secs_f64() / median(&floor).as_secs_f64()
            );
        }
        None => println!("  jq not found: no read-only floor (apt-get install jq)"),
    }
}

/// Runs the command `RUNS` times; each must succeed.
fn measure(mut command: impl FnMut() -> Command) -> Vec<Duration> {
    (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let output = command().output().expect("runs");
            let elapsed = started.elapsed();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            elapsed
        })
        .collect()
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn figure(times: &[Duration]) -> String {
    let min = times.iter().min().copied().unwrap_or_default();
    format!(
        "{:>7.1} ms ({:.1} ms)",
        median(times).as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3
    )
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|folder| folder.join(program))
        .find(|path| path.is_file())
}

/// A manifest of `FRAGMENTS` images (5 platforms each) in `REPOS` repositories, and one fragment per image, as
/// one build leg per image would write.
fn write_inputs(folder: &Path, fragments: &Path) {
    let mut repos: Vec<serde_json::Value> = (0..REPOS)
        .map(|repo| serde_json::json!({"id": format!("r{repo}"), "name": format!("bench/repo{repo}"), "images": []}))
        .collect();
    for image in 0..FRAGMENTS {
        let repo = image % REPOS;
        let version = format!("{}.{}", image / REPOS, repo);
        let declared: Vec<serde_json::Value> = ARCHITECTURES
            .iter()
            .map(|(architecture, variant)| {
                let mut platform = serde_json::json!({
                    "dockerfile": format!("src/{version}/{architecture}"),
                    "os": "linux",
                    "osVersion": "bookworm",
                    "architecture": architecture,
                    "tags": {format!("{version}-{architecture}"): {}}
                });
                if let Some(variant) = variant {
                    platform["variant"] = (*variant).into();
                }
                platform
            })
            .collect();
        repos[repo]["images"]
            .as_array_mut()
            .expect("array")
            .push(serde_json::json!({"productVersion": version, "sharedTags": {version.clone(): {}}, "platforms": declared}));

        let built: Vec<serde_json::Value> = ARCHITECTURES
            .iter()
            .enumerate()
            .map(|(index, (architecture, variant))| {
                serde_json::json!({
                    "dockerfile": format!("src/{version}/{architecture}/Dockerfile"),
                    "simpleTags": [format!("{version}-{architecture}")],
                    "digest": format!("registry.example.com/bench/repo{repo}@sha256:{:064x}", image * 8 + index),
                    "osType": "Linux",
                    "osVersion": "bookworm",
                    "architecture": architecture,
                    "variant": variant,
                    "created": "2026-11-29T10:00:00Z",
                    "layers": [{"digest": format!("sha256:{:064x}", image), "size": 1024}]
                })
            })
            .collect();
        let fragment = serde_json::json!({
            "schemaVersion": "2.0",
            "repos": [{"repo": format!("bench/repo{repo}"), "images": [{"productVersion": version, "platforms": built}]}]
        });
        std::fs::write(
            fragments.join(format!("leg-{image:04}.json")),
            fragment.to_string(),
        )
        .expect("writes");
    }
    let manifest = serde_json::json!({"registry": "registry.example.com", "repos": repos});
    std::fs::write(folder.join("manifest.json"), manifest.to_string()).expect("writes");
}
