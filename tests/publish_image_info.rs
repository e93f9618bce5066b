//! `imagepipe publish-image-info` against a fake GitHub contents API (`common::fake_github`): the real binary,
//! a local HTTP server with an in-memory repository that records every request and can lose a race on purpose.

mod common;

use std::fs;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::fake_github::{DEFAULT_BRANCH, FakeGitHub, OTHER_CONTENT, REPOSITORY, TOKEN, sha_of};
use common::{Imagepipe, Ran};
use serde_json::json;

const PATH: &str = "images/image-info.json";
const IMAGE_INFO: &str = r#"{
  "schemaVersion": "2.0",
  "repos": [
    {
      "repo": "dotnet/runtime",
      "images": []
    }
  ]
}
"#;

/// The binary run against `server`, for [`REPOSITORY`] and [`PATH`].
fn imagepipe(server: &FakeGitHub, image_info: &Path) -> Imagepipe {
    publish(image_info, REPOSITORY, &server.url)
}

/// The binary with [`TOKEN`] in `GITHUB_TOKEN` and no proxy, which would stand between it and the fake server.
fn publish(image_info: &Path, repository: &str, api_url: &str) -> Imagepipe {
    Imagepipe::new()
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env("GITHUB_TOKEN", TOKEN)
        .arg("publish-image-info")
        .arg("--image-info")
        .arg(image_info)
        .args(["--repo", repository, "--path", PATH, "--api-url", api_url])
}

/// A folder holding `image-info.json` with [`IMAGE_INFO`].
fn image_info_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let file = folder.path().join("image-info.json");
    fs::write(&file, IMAGE_INFO).expect("written");
    (folder, file)
}

/// Runs under GitHub Actions with a `GITHUB_OUTPUT` file; returns the outputs as `name=value` lines.
fn run_with_outputs(imagepipe: Imagepipe, folder: &Path) -> (Option<i32>, String, String) {
    let outputs = folder.join("outputs");
    let Ran {
        code,
        stdout,
        stderr,
    } = imagepipe
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_RUN_ID", "987654")
        .run();
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    (code, common::github_outputs::lines(&outputs), stderr)
}

fn contents_path() -> String {
    format!("/repos/{REPOSITORY}/contents/{PATH}")
}

#[test]
fn a_new_file_is_created_on_the_default_branch() {
    let server = FakeGitHub::start();
    let (folder, file) = image_info_file();
    let (_, outputs, stderr) = run_with_outputs(imagepipe(&server, &file), folder.path());

    let requests = server.requests();
    let summary: Vec<(&str, &str, Option<&str>)> = requests
        .iter()
        .map(|request| {
            (
                request.method.as_str(),
                request.path.as_str(),
                request.query.as_deref(),
            )
        })
        .collect();
    let contents = contents_path();
    let query = format!("ref={DEFAULT_BRANCH}");
    assert_eq!(
        summary,
        [
            ("GET", format!("/repos/{REPOSITORY}").as_str(), None),
            ("GET", contents.as_str(), Some(query.as_str())),
            ("PUT", contents.as_str(), None),
        ],
        "{stderr}"
    );
    for request in &requests {
        assert!(request.authorized, "{request:?}");
        assert_eq!(
            request.accept.as_deref(),
            Some("application/vnd.github+json")
        );
        assert_eq!(request.api_version.as_deref(), Some("2022-11-28"));
        assert!(
            request
                .user_agent
                .as_deref()
                .is_some_and(|agent| agent.starts_with("imagepipe/")),
            "{request:?}"
        );
    }
    let put = requests[2].body.clone().expect("a JSON body");
    assert_eq!(
        put,
        json!({
            "message": format!("Update {PATH} from imagepipe (run 987654)"),
            "content": BASE64.encode(IMAGE_INFO),
            "branch": DEFAULT_BRANCH,
        }),
        "a new file is written without `sha`"
    );
    assert_eq!(
        server.file(DEFAULT_BRANCH, PATH).as_deref(),
        Some(IMAGE_INFO.as_bytes())
    );
    let commit = format!("{:040x}", 0xc0ffee_u64 + 1);
    assert_eq!(outputs, format!("commit={commit}\nchanged=true\n"));
    assert!(stderr.contains(&format!("committed `{PATH}`")), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
}

#[test]
fn an_existing_file_is_replaced_on_the_named_branch_with_its_sha() {
    let server = FakeGitHub::start();
    server.put_file("release", PATH, b"{\"schemaVersion\": \"1.0\"}\n");
    let (_folder, file) = image_info_file();
    let Ran { code, stderr, .. } = imagepipe(&server, &file)
        .args(["--branch", "release"])
        .run();
    assert_eq!(code, Some(0), "{stderr}");

    let requests = server.requests();
    assert!(
        requests
            .iter()
            .all(|request| request.path != format!("/repos/{REPOSITORY}")),
        "a named branch needs no repository lookup"
    );
    let puts = server.puts();
    assert_eq!(puts.len(), 1);
    let body = puts[0].body.clone().expect("a JSON body");
    assert_eq!(body["branch"], "release");
    assert_eq!(body["sha"], sha_of(b"{\"schemaVersion\": \"1.0\"}\n"));
    assert_eq!(body["message"], format!("Update {PATH} from imagepipe"));
    assert_eq!(
        server.file("release", PATH).as_deref(),
        Some(IMAGE_INFO.as_bytes())
    );
    assert_eq!(server.file(DEFAULT_BRANCH, PATH), None);
}

#[test]
fn unchanged_content_makes_no_commit() {
    let server = FakeGitHub::start();
    server.put_file(DEFAULT_BRANCH, PATH, IMAGE_INFO.as_bytes());
    let (folder, file) = image_info_file();
    let (_, outputs, stderr) = run_with_outputs(imagepipe(&server, &file), folder.path());

    assert!(server.puts().is_empty(), "{:?}", server.requests());
    assert_eq!(server.state().commits, 0);
    assert_eq!(outputs, "commit=\nchanged=false\n");
    assert!(stderr.contains("unchanged"), "{stderr}");
}

#[test]
fn a_concurrent_commit_is_read_again_and_overwritten() {
    for status in [409, 422] {
        let server = FakeGitHub::start();
        let previous = b"{\"schemaVersion\": \"1.0\"}\n";
        server.put_file(DEFAULT_BRANCH, PATH, previous);
        server.state().races.push_back(status);
        let (folder, file) = image_info_file();
        let (_, outputs, stderr) = run_with_outputs(imagepipe(&server, &file), folder.path());

        let puts = server.puts();
        assert_eq!(puts.len(), 2, "{status}: {stderr}");
        let first = puts[0].body.clone().expect("a JSON body");
        let second = puts[1].body.clone().expect("a JSON body");
        assert_eq!(first["sha"], sha_of(previous), "{status}");
        assert_eq!(
            second["sha"],
            sha_of(OTHER_CONTENT),
            "{status}: the second write names the other commit's blob"
        );
        assert_eq!(second["content"], BASE64.encode(IMAGE_INFO));
        let gets = server
            .requests()
            .iter()
            .filter(|request| request.method == "GET" && request.path == contents_path())
            .count();
        assert_eq!(gets, 2, "{status}: read again after the conflict");
        assert_eq!(
            server.file(DEFAULT_BRANCH, PATH).as_deref(),
            Some(IMAGE_INFO.as_bytes())
        );
        assert!(outputs.contains("changed=true\n"), "{status}: {outputs}");
        assert!(stderr.contains("reading it again"), "{status}: {stderr}");
    }
}

#[test]
fn a_file_created_concurrently_is_overwritten() {
    let server = FakeGitHub::start();
    // The file does not exist when read; another writer creates it before our PUT, which names no sha (422).
    server.state().races.push_back(422);
    let (_folder, file) = image_info_file();
    let Ran { code, stderr, .. } = imagepipe(&server, &file).run();
    assert_eq!(code, Some(0), "{stderr}");
    let puts = server.puts();
    assert_eq!(puts.len(), 2);
    assert_eq!(
        puts[0].body.as_ref().map(|body| body.get("sha")),
        Some(None)
    );
    assert_eq!(
        puts[1].body.as_ref().map(|body| body["sha"].clone()),
        Some(json!(sha_of(OTHER_CONTENT)))
    );
    assert_eq!(
        server.file(DEFAULT_BRANCH, PATH).as_deref(),
        Some(IMAGE_INFO.as_bytes())
    );
}

#[test]
fn endless_conflicts_fail_after_five_attempts_naming_the_target() {
    let server = FakeGitHub::start();
    server.state().races.extend([409; 10]);
    let (_folder, file) = image_info_file();
    let Ran { code, stderr, .. } = imagepipe(&server, &file).run();
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(server.puts().len(), 5);
    let errors = common::error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    for part in [PATH, REPOSITORY, DEFAULT_BRANCH, "after 5 attempts", "409"] {
        assert!(errors[0].contains(part), "`{part}` missing: {stderr}");
    }
}

#[test]
fn a_wrong_token_fails_in_one_line_without_the_token() {
    let server = FakeGitHub::start();
    let (_folder, file) = image_info_file();
    let wrong = "ghp_wrong_token_that_must_not_leak";
    let Ran {
        code,
        stdout,
        stderr,
    } = imagepipe(&server, &file).env("GITHUB_TOKEN", wrong).run();
    assert_eq!(code, Some(1), "{stderr}");
    let errors = common::error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("Bad credentials"), "{stderr}");
    assert!(errors[0].contains("401"), "{stderr}");
    for output in [&stdout, &stderr] {
        assert!(!output.contains(wrong), "the token leaked: {output}");
        assert!(!output.contains(TOKEN), "{output}");
    }
    assert!(server.puts().is_empty());
}

#[test]
fn an_unknown_repository_says_the_name_or_token_is_wrong() {
    let server = FakeGitHub::start();
    let (_folder, file) = image_info_file();
    let Ran { code, stderr, .. } = publish(&file, "octo/missing", &server.url).run();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("repository `octo/missing` was not found"),
        "{stderr}"
    );
    assert!(stderr.contains("the token cannot see it"), "{stderr}");
}

#[test]
fn an_unknown_repository_with_a_named_branch_fails_on_the_write() {
    let server = FakeGitHub::start();
    let (_folder, file) = image_info_file();
    let Ran { code, stderr, .. } = publish(&file, "octo/missing", &server.url)
        .args(["--branch", "main"])
        .run();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the repository or branch does not exist, or the token cannot see it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`octo/missing` (branch `main`)"),
        "{stderr}"
    );
}

#[test]
fn a_missing_token_variable_is_invalid_input() {
    let server = FakeGitHub::start();
    let (_folder, file) = image_info_file();
    let Ran { code, stderr, .. } = imagepipe(&server, &file)
        .env_remove("GITHUB_TOKEN")
        .args(["--token-env", "PUBLISH_TOKEN"])
        .env_remove("PUBLISH_TOKEN")
        .run();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`PUBLISH_TOKEN`"), "{stderr}");
    assert!(server.requests().is_empty());
}

#[test]
fn invalid_input_exits_2_before_any_request() {
    let server = FakeGitHub::start();
    let (folder, file) = image_info_file();
    let not_image_info = folder.path().join("not-image-info.json");
    fs::write(&not_image_info, "{\"repos\": 3}\n").expect("written");
    let insecure = "http://github.example.com/api/v3";
    let cases: [(&Path, &str, &str, &str); 3] = [
        (
            &not_image_info,
            REPOSITORY,
            &server.url,
            "not-image-info.json",
        ),
        (
            &file,
            "octo",
            &server.url,
            "--repo: `octo` is not a GitHub repository",
        ),
        (&file, REPOSITORY, insecure, "plain HTTP"),
    ];
    for (image_info, repository, api_url, expected) in cases {
        let Ran { code, stderr, .. } = publish(image_info, repository, api_url).run();
        assert_eq!(code, Some(2), "{expected}: {stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    assert!(server.requests().is_empty());
}

/// The API is a peer too: an answer announcing 200 MB is refused before it is read, in one line, exit 1.
#[test]
fn an_oversized_answer_is_refused_before_it_is_read() {
    use common::hostile::{Answer, HostileRegistry, owned};
    let api = HostileRegistry::start(|_| Answer::Whole {
        status: 200,
        headers: owned(&[
            ("Content-Type", "application/json"),
            ("Content-Length", "200000000"),
        ]),
        body: b"{}".to_vec(),
    });
    let (_folder, image_info) = image_info_file();
    let ran = publish(&image_info, REPOSITORY, &format!("http://{}", api.host())).run();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("more than 134217728 bytes"),
        "{}",
        ran.stderr
    );
    assert!(api.body_bytes_sent() < 1024 * 1024);
}
