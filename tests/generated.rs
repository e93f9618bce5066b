//! The committed files made from the stages' declarations (action.yml, dist/<stage>/, the Azure task,
//! docs/inputs.md) are what `imagepipe ci generate` makes now: a flag added, renamed or described otherwise
//! without regenerating fails here.

mod common;

use common::Imagepipe;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn committed_files_match_the_declarations() {
    let ran = Imagepipe::new()
        .args(["ci", "generate", "--check", "--root", ROOT])
        .run();
    assert_eq!(
        ran.code,
        Some(0),
        "{}\nrun `cargo run -- ci generate` and commit the result",
        ran.stderr
    );
}

#[test]
fn a_stale_file_is_named() {
    let copy = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(copy.path().join("dist")).expect("creates dist");
    for file in ["dist/index.cjs", "dist/manifest.json"] {
        std::fs::copy(
            std::path::Path::new(ROOT).join(file),
            copy.path().join(file),
        )
        .expect("copies the shim and its pins");
    }
    Imagepipe::new()
        .args(["ci", "generate", "--root"])
        .arg(copy.path())
        .run()
        .succeeded();
    let task = copy.path().join("azure-task/ImagePipeV1/task.json");
    std::fs::write(&task, "{}\n").expect("spoils task.json");
    let ran = Imagepipe::new()
        .args(["ci", "generate", "--check", "--root"])
        .arg(copy.path())
        .run();
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr
            .contains("1 generated file is out of date; run `imagepipe ci generate`: `azure-task/ImagePipeV1/task.json`"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&task).expect("reads"),
        "{}\n",
        "--check writes nothing"
    );
}
