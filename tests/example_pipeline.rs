//! The README's main command: the whole release of `examples/hello`, built and published with no server.

mod common;

use std::process::Command;

use common::{Imagepipe, read_json};

#[test]
fn the_example_pipeline_publishes_signed_images_into_a_layout() {
    let work = tempfile::tempdir().expect("temp dir");
    Imagepipe::script(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/example-pipeline.sh"
    ))
    .env("WORK", work.path())
    .run()
    .succeeded();

    let final_info = read_json(&work.path().join("final-image-info.json"));
    let stages: Vec<&str> = final_info["pipeline"]["stages"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter_map(|stage| stage["stage"].as_str())
        .collect();
    assert_eq!(
        stages,
        [
            "build",
            "post-build",
            "create-manifest",
            "sign",
            "verify",
            "test",
            "publish"
        ]
    );

    // The public layout holds the index under its shared tag, as the recorded digest, readable by skopeo.
    let index = final_info["repos"][0]["images"]
        .as_array()
        .expect("images")
        .iter()
        .find_map(|image| image["manifest"]["digest"].as_str())
        .expect("an index")
        .rsplit_once('@')
        .expect("@")
        .1
        .to_owned();
    let raw = common::commands::run(Command::new(common::tools::skopeo()).args([
        "inspect",
        "--raw",
        &format!("oci:{}/public/hello/app:latest", work.path().display()),
    ]));
    assert_eq!(
        imagepipe::model::reference::Digest::of(&raw.stdout).to_string(),
        index
    );
}
