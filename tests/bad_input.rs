//! The bad-input corpus (`tests/bad-input/`): inputs a user or a CI template gets wrong, each refused the same
//! way. Every case is a folder `NN-name/` holding `case.json` and any files of its own:
//!
//! ```json
//! { "why": "what is wrong", "args": ["sign", "--image-info", "signed.json"], "exit": 2,
//!   "names": ["signed.json"], "env": {"COSIGN_PASSWORD": null}, "stdin": "text" }
//! ```
//!
//! `exit` is 2 (invalid input) or 3 (a precondition not met); `names` are what the error line must contain
//! (the file or flag at fault); `env` sets (or, with null, removes) variables; `stdin` is standard input.
//!
//! Each case runs the real binary in a folder of its own, holding a pipeline run on the example
//! (`examples/post-build`) as far as `sign`, with the case's files laid over it:
//! - `manifest.json`, `fragments/` (the example's), `staging/` (an OCI layout holding the example's images,
//!   their indexes and signatures);
//! - `built.json` (after post-build), `indexed.json` (after create-manifest), `signed.json` (after sign);
//! - `release.key` (password in `COSIGN_PASSWORD`, set to `bad-input` for every case) and `release.pub`.
//!
//! For every case: the exit code; stderr is one `error:` line naming the file or flag, and at most one
//! `hint:` line, nothing else; `panicked` appears nowhere; and the folder is unchanged afterwards: no file
//! written, replaced or left half-written, in staging or elsewhere.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::Imagepipe;
use serde::Deserialize;

const KEY_PASSWORD: &str = "bad-input";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    why: String,
    args: Vec<String>,
    exit: i32,
    names: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, Option<String>>,
    #[serde(default)]
    stdin: Option<String>,
}

#[test]
fn every_bad_input_is_refused_with_one_clear_line_and_nothing_written() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-input");
    let base = tempfile::tempdir().expect("temp dir");
    prepare_base(base.path());

    let mut folders: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("lists the corpus")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.join("case.json").is_file())
        .collect();
    folders.sort();
    let mut failures = Vec::new();
    for folder in &folders {
        let name = folder
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        if let Err(problem) = run_case(folder, base.path()) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    println!(
        "bad input: {} cases run, {} refused as expected",
        folders.len(),
        folders.len() - failures.len()
    );
    assert!(
        folders.len() >= 50,
        "the corpus has {} cases; it should have at least 50",
        folders.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        folders.len(),
        failures.join("\n\n")
    );
}

/// Runs one case in a copy of `base` with the case's files laid over it.
fn run_case(folder: &Path, base: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(folder.join("case.json"))
        .map_err(|error| format!("reading case.json: {error}"))?;
    let case: Case =
        serde_json::from_str(&text).map_err(|error| format!("case.json is not a case: {error}"))?;
    if !matches!(case.exit, 2 | 3) || case.names.is_empty() || case.why.is_empty() {
        return Err("a case expects exit 2 or 3, names what is at fault and says why".to_owned());
    }
    let work = tempfile::tempdir().expect("temp dir");
    copy_tree(base, work.path());
    copy_tree(folder, work.path());
    std::fs::remove_file(work.path().join("case.json")).expect("removes case.json");
    let before = snapshot(work.path());

    let mut binary = Imagepipe::new()
        .args(&case.args)
        .current_dir(work.path())
        .env("COSIGN_PASSWORD", KEY_PASSWORD);
    for (name, value) in &case.env {
        binary = match value {
            Some(value) => binary.env(name, value),
            None => binary.env_remove(name),
        };
    }
    if let Some(stdin) = &case.stdin {
        binary = binary.stdin(stdin);
    }
    let ran = binary.run();

    let context = || {
        format!(
            "{why}\n  args: {args:?}\n  exit: {code:?}\n  stderr:\n{stderr}",
            why = case.why,
            args = case.args,
            code = ran.code,
            stderr = indent(&ran.stderr)
        )
    };
    if ran.stderr.contains("panicked") || ran.stdout.contains("panicked") {
        return Err(format!("it panicked\n{}", context()));
    }
    if ran.code != Some(case.exit) {
        return Err(format!("expected exit {}\n{}", case.exit, context()));
    }
    let lines: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|line| line.starts_with("error: "))
        .collect();
    let hints = lines
        .iter()
        .filter(|line| line.starts_with("hint: "))
        .count();
    if errors.len() != 1 || hints > 1 || lines.len() != 1 + hints {
        return Err(format!(
            "stderr must be one `error:` line and at most one `hint:` line\n{}",
            context()
        ));
    }
    let missing: Vec<&String> = case
        .names
        .iter()
        .filter(|name| !errors[0].contains(name.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the error line does not name {missing:?}\n{}",
            context()
        ));
    }
    let after = snapshot(work.path());
    if after != before {
        let changed: Vec<&PathBuf> = after
            .keys()
            .chain(before.keys())
            .filter(|path| after.get(*path) != before.get(*path))
            .collect();
        return Err(format!("files changed: {changed:?}\n{}", context()));
    }
    Ok(())
}

/// The example pipeline up to `sign`, on an OCI layout staging: the files cases start from.
fn prepare_base(base: &Path) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/post-build");
    std::fs::copy(examples.join("manifest.json"), base.join("manifest.json"))
        .expect("copies the manifest");
    copy_tree(&examples.join("fragments"), &base.join("fragments"));
    copy_tree(&examples.join("staging"), &base.join("staging"));
    let step = |arguments: &[&str]| {
        Imagepipe::new()
            .args(arguments)
            .current_dir(base)
            .env("COSIGN_PASSWORD", KEY_PASSWORD)
            .run()
            .succeeded();
    };
    step(&[
        "post-build",
        "--manifest",
        "manifest.json",
        "--fragments",
        "fragments",
        "--output",
        "built.json",
    ]);
    step(&[
        "create-manifest",
        "--manifest",
        "manifest.json",
        "--image-info",
        "built.json",
        "--output",
        "indexed.json",
        "--staging-registry",
        "oci:staging",
    ]);
    step(&["generate-key", "--output-prefix", "release"]);
    step(&[
        "sign",
        "--image-info",
        "indexed.json",
        "--output",
        "signed.json",
        "--key",
        "release.key",
        "--staging-registry",
        "oci:staging",
    ]);
}

/// Copies the files under `from` into `to`, replacing files of the same name.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creates a folder");
    for entry in std::fs::read_dir(from).expect("lists a folder") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copies a file");
        }
    }
}

/// Every file under `folder` (relative path → contents), and every folder (→ None).
fn snapshot(folder: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![folder.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("lists a folder") {
            let path = entry.expect("entry").path();
            let relative = path.strip_prefix(folder).expect("inside").to_owned();
            if path.is_dir() {
                files.insert(relative, None);
                pending.push(path);
            } else {
                files.insert(relative, Some(std::fs::read(&path).expect("reads a file")));
            }
        }
    }
    files
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
