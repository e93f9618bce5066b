//! A fake GitHub contents API: a local HTTP server with an in-memory repository that records every request and
//! can lose a race on purpose.
//!
//! A fake server, not GitHub: the runs must not need the internet or a token, and only a fake commits
//! "concurrently" on demand. It follows GitHub's OpenAPI description for the three endpoints it answers.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const TOKEN: &str = "ghs_test_token_4f1c9a";
pub const REPOSITORY: &str = "octo/published";
pub const DEFAULT_BRANCH: &str = "trunk";

/// What "another pipeline" commits in the middle of ours.
pub const OTHER_CONTENT: &[u8] = b"{\"schemaVersion\": \"2.0\", \"repos\": []}\n";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub body: Option<Value>,
    /// `Authorization: Bearer TOKEN`, exactly.
    pub authorized: bool,
    pub accept: Option<String>,
    pub api_version: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Default)]
pub struct State {
    /// `(branch, path)` → content.
    pub files: HashMap<(String, String), Vec<u8>>,
    /// For each coming PUT, the status to answer after another writer commits `OTHER_CONTENT` first.
    pub races: VecDeque<u16>,
    pub requests: Vec<Recorded>,
    pub commits: u32,
}

pub struct FakeGitHub {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeGitHub {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        // Lives as long as the test process; every test has its own server.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                thread::spawn(move || serve(stream, &state));
            }
        });
        Self { url, state }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    pub fn put_file(&self, branch: &str, path: &str, content: &[u8]) {
        self.state()
            .files
            .insert((branch.to_owned(), path.to_owned()), content.to_vec());
    }

    pub fn file(&self, branch: &str, path: &str) -> Option<Vec<u8>> {
        self.state()
            .files
            .get(&(branch.to_owned(), path.to_owned()))
            .cloned()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    pub fn puts(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|request| request.method == "PUT")
            .collect()
    }
}

/// The blob "sha" of a content: any hash that changes with the content will do.
pub fn sha_of(content: &[u8]) -> String {
    let digest = Sha256::digest(content);
    digest
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>()[..40]
        .to_owned()
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clonable"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.clone(), None),
    };
    let recorded = Recorded {
        method,
        path,
        query,
        body: serde_json::from_slice(&body).ok(),
        authorized: headers.get("authorization").map(String::as_str)
            == Some(&format!("Bearer {TOKEN}")),
        accept: headers.get("accept").cloned(),
        api_version: headers.get("x-github-api-version").cloned(),
        user_agent: headers.get("user-agent").cloned(),
    };
    let (status, response) = {
        let mut state = state.lock().expect("not poisoned");
        state.requests.push(recorded.clone());
        answer(&mut state, &recorded)
    };
    let reason = match status {
        200 => "OK",
        201 => "Created",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        _ => "Other",
    };
    let body = response.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn message(text: &str) -> Value {
    json!({"message": text, "documentation_url": "https://docs.github.com/rest"})
}

/// GitHub's answers, as its OpenAPI description gives them.
fn answer(state: &mut State, request: &Recorded) -> (u16, Value) {
    if !request.authorized {
        return (401, message("Bad credentials"));
    }
    let repository_path = format!("/repos/{REPOSITORY}");
    let contents_prefix = format!("{repository_path}/contents/");
    if request.method == "GET" && request.path == repository_path {
        return (
            200,
            json!({"full_name": REPOSITORY, "default_branch": DEFAULT_BRANCH, "private": true}),
        );
    }
    let Some(file_path) = request.path.strip_prefix(&contents_prefix) else {
        return (404, message("Not Found"));
    };
    let file_path = file_path.to_owned();
    match request.method.as_str() {
        "GET" => {
            let branch = request
                .query
                .as_deref()
                .and_then(|query| query.strip_prefix("ref="))
                .unwrap_or(DEFAULT_BRANCH)
                .to_owned();
            match state.files.get(&(branch, file_path.clone())) {
                Some(content) => {
                    // GitHub breaks the base64 into lines of 60 characters.
                    let encoded = BASE64.encode(content);
                    let lines: Vec<&str> = encoded
                        .as_bytes()
                        .chunks(60)
                        .map(|chunk| std::str::from_utf8(chunk).expect("ascii"))
                        .collect();
                    (
                        200,
                        json!({
                            "type": "file",
                            "encoding": "base64",
                            "size": content.len(),
                            "name": file_path.rsplit('/').next(),
                            "path": file_path,
                            "content": lines.join("\n") + "\n",
                            "sha": sha_of(content),
                        }),
                    )
                }
                None => (404, message("Not Found")),
            }
        }
        "PUT" => {
            let body = request.body.clone().unwrap_or_default();
            let branch = body["branch"].as_str().unwrap_or(DEFAULT_BRANCH).to_owned();
            let key = (branch, file_path.clone());
            if let Some(status) = state.races.pop_front() {
                // Another pipeline commits first.
                state.files.insert(key, OTHER_CONTENT.to_vec());
                state.commits += 1;
                return (status, message(&format!("{file_path} does not match")));
            }
            let current = state.files.get(&key).map(|content| sha_of(content));
            match (current.as_deref(), body["sha"].as_str()) {
                (Some(_), None) => {
                    return (422, message("Invalid request.\n\n\"sha\" wasn't supplied."));
                }
                (Some(current), Some(given)) if current != given => {
                    return (409, message(&format!("{file_path} does not match {given}")));
                }
                _ => {}
            }
            let Some(content) = body["content"]
                .as_str()
                .and_then(|text| BASE64.decode(text).ok())
            else {
                return (422, message("content is not valid Base64"));
            };
            let created = current.is_none();
            let blob = sha_of(&content);
            state.files.insert(key, content);
            state.commits += 1;
            let commit = format!("{:040x}", 0xc0ffee_u64 + u64::from(state.commits));
            (
                if created { 201 } else { 200 },
                json!({
                    "content": {"type": "file", "path": file_path, "sha": blob},
                    "commit": {"sha": commit, "message": body["message"]},
                }),
            )
        }
        _ => (404, message("Not Found")),
    }
}
