//! A small client for the three GitHub REST endpoints that publishing a file needs: the repository (for its
//! default branch), a file's contents (its bytes and blob `sha`), and "create or update file contents".
//!
//! Wire facts, from GitHub's OpenAPI description (github/rest-api-description, API version 2022-11-28):
//! - `GET /repos/{owner}/{repo}` answers `default_branch`;
//! - `GET /repos/{owner}/{repo}/contents/{path}?ref=B` answers a `file` object with the blob `sha` and the
//!   content in base64 (with line breaks); for files over 1 MB, `encoding` is `"none"` and the bytes come with
//!   the `application/vnd.github.raw+json` media type; 404 when there is no such file;
//! - `PUT /repos/{owner}/{repo}/contents/{path}` takes `{message, content (base64), sha, branch}` (`sha` is
//!   required when replacing a file) and answers 200 (updated) or 201 (created) with `{content, commit}`, 409
//!   on a conflict and 422 when validation fails (a `sha` that is no longer the file's, or none for a file
//!   that exists now), 404 when the repository or branch is not there for this token.
//!
//! Errors carry GitHub's `{"message": …}`; the token never appears in an error, a log line or a `Debug`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::store::registry::{RetryPolicy, is_retryable};

/// The REST API version this client was written against.
const API_VERSION: &str = "2022-11-28";
const JSON_MEDIA_TYPE: &str = "application/vnd.github+json";
/// A file's bytes as they are, for files too large to come inline as base64.
const RAW_MEDIA_TYPE: &str = "application/vnd.github.raw+json";
/// The contents API serves files of up to 100 MB; an answer larger than this is not one of them.
const ANSWER_LIMIT: usize = 128 * 1024 * 1024;
/// Of an error answer, only this much is read for its message.
const ERROR_ANSWER_LIMIT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("{method} `{url}` answered with more than {limit} bytes; refused")]
    TooLarge {
        method: Method,
        url: Url,
        limit: usize,
    },
    #[error("`{value}` is not a GitHub API URL: {reason}")]
    InvalidApiUrl { value: String, reason: &'static str },
    #[error("`{value}` is not a GitHub repository: expected `OWNER/NAME`")]
    InvalidRepository { value: String },
    #[error("the token holds characters an HTTP header cannot carry")]
    InvalidToken,
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("{method} `{url}` failed after {attempts} attempts")]
    Connection {
        method: Method,
        url: Url,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("GitHub rejected the token ({status} from {method} `{url}`): {message}")]
    Unauthorized {
        method: Method,
        url: Url,
        status: StatusCode,
        message: String,
    },
    #[error(
        "GitHub refused the request ({status} from {method} `{url}`): {message}{}",
        forbidden_hint(.method)
    )]
    Forbidden {
        method: Method,
        url: Url,
        status: StatusCode,
        message: String,
    },
    #[error(
        "repository `{repository}` was not found ({status} from `{url}`): the name is wrong, or the token cannot see it (check its repositories and scopes)"
    )]
    RepositoryNotFound {
        repository: Repository,
        url: Url,
        status: StatusCode,
        message: String,
    },
    #[error(
        "{method} `{url}` answered {status}: {message}; the repository or branch does not exist, or the token cannot see it"
    )]
    NotFound {
        method: Method,
        url: Url,
        status: StatusCode,
        message: String,
    },
    /// Someone committed between our read and our write (409), or the `sha` we sent is no longer the file's
    /// (422): read again and re-apply.
    #[error("{method} `{url}` conflicts with a concurrent change ({status}): {message}")]
    Conflict {
        method: Method,
        url: Url,
        status: StatusCode,
        message: String,
    },
    #[error("{method} `{url}` answered {status}: {message}")]
    Status {
        method: Method,
        url: Url,
        status: StatusCode,
        message: String,
    },
    #[error("unexpected answer to {method} `{url}`")]
    Decode {
        method: Method,
        url: Url,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{url}` answered content that is not valid base64")]
    Content {
        url: Url,
        #[source]
        source: base64::DecodeError,
    },
    #[error("`{path}` in `{repository}` is a {kind}, not a file")]
    NotAFile {
        repository: Repository,
        path: String,
        kind: String,
    },
}

/// A refused write is most often a token without write access (a workflow's `GITHUB_TOKEN` needs
/// `permissions: contents: write`); a refused read is more often a rate limit, which the message names.
fn forbidden_hint(method: &Method) -> &'static str {
    if method == Method::PUT {
        "; the token needs write access to the repository's contents"
    } else {
        ""
    }
}

impl GitHubError {
    /// Whether a write lost a race with another commit, so that reading again and re-applying may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// Whether the error is in what the user gave (API URL, repository name, token), not in the answer.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidApiUrl { .. } | Self::InvalidRepository { .. } | Self::InvalidToken
        )
    }
}

/// A token for the API; its `Debug` is redacted, so it cannot leak through a logged struct.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(token: String) -> Self {
        Self(token)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// `OWNER/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub owner: String,
    pub name: String,
}

impl FromStr for Repository {
    type Err = GitHubError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = || GitHubError::InvalidRepository {
            value: value.to_owned(),
        };
        let (owner, name) = value.trim().split_once('/').ok_or_else(invalid)?;
        let is_part = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if is_part(owner) && is_part(name) {
            Ok(Self {
                owner: owner.to_owned(),
                name: name.to_owned(),
            })
        } else {
            Err(invalid())
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A file as it is on a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryFile {
    /// The blob SHA, which a replacing write must name.
    pub sha: String,
    pub content: Vec<u8>,
}

/// A write of one file: a new commit on `branch`.
#[derive(Debug, Clone, Copy)]
pub struct FileUpdate<'a> {
    pub message: &'a str,
    pub content: &'a [u8],
    /// The blob SHA of the file being replaced; `None` creates the file.
    pub sha: Option<&'a str>,
    pub branch: &'a str,
}

/// What a write committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
}

#[derive(Deserialize)]
struct RepositoryBody {
    default_branch: String,
}

#[derive(Deserialize)]
struct ContentBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sha: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Serialize)]
struct UpdateBody<'a> {
    message: &'a str,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha: Option<&'a str>,
    branch: &'a str,
}

#[derive(Deserialize)]
struct FileCommitBody {
    commit: CommitBody,
}

#[derive(Deserialize)]
struct CommitBody {
    sha: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

pub struct GitHubClient {
    http: reqwest::Client,
    /// `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise Server.
    api_url: Url,
    authorization: HeaderValue,
    retry: RetryPolicy,
}

impl fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_url", &self.api_url.as_str())
            .field("authorization", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl GitHubClient {
    /// A client for the API at `api_url`. Plain HTTP is accepted for loopback hosts only (test servers): the
    /// token must not cross a network unencrypted.
    pub fn new(api_url: &str, token: &Token, retry: RetryPolicy) -> Result<Self, GitHubError> {
        let invalid = |reason| GitHubError::InvalidApiUrl {
            value: api_url.to_owned(),
            reason,
        };
        let mut url = Url::parse(api_url.trim()).map_err(|_| invalid("it does not parse"))?;
        let loopback = match url.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|address| address.is_loopback()),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(invalid("plain HTTP would send the token unencrypted")),
            _ => return Err(invalid("expected an `https://` URL")),
        }
        if url.cannot_be_a_base() || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("expected a base URL such as `https://HOST/api/v3`"));
        }
        url.path_segments_mut()
            .map_err(|()| invalid("expected a base URL such as `https://HOST/api/v3`"))?
            .pop_if_empty();
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", token.0.trim()))
            .map_err(|_| GitHubError::InvalidToken)?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(concat!("imagepipe/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(GitHubError::Client)?;
        Ok(Self {
            http,
            api_url: url,
            authorization,
            retry,
        })
    }

    /// `api_url` + the given path segments, each percent-encoded.
    fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        url
    }

    fn contents_url(&self, repository: &Repository, path: &str) -> Url {
        let file = path.split('/').filter(|segment| !segment.is_empty());
        self.url(
            ["repos", &repository.owner, &repository.name, "contents"]
                .into_iter()
                .chain(file),
        )
    }

    /// The branch commits go to when none is named.
    pub async fn default_branch(&self, repository: &Repository) -> Result<String, GitHubError> {
        let url = self.url(["repos", &repository.owner, &repository.name]);
        let response = self.send(Method::GET, &url, JSON_MEDIA_TYPE, None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            let status = response.status();
            return Err(GitHubError::RepositoryNotFound {
                repository: repository.clone(),
                message: error_message(response).await,
                url,
                status,
            });
        }
        let body: RepositoryBody = decode(
            Method::GET,
            &url,
            success(Method::GET, &url, response).await?,
        )
        .await?;
        Ok(body.default_branch)
    }

    /// The file at `path` on `branch`, or `None` when there is none.
    pub async fn file(
        &self,
        repository: &Repository,
        path: &str,
        branch: &str,
    ) -> Result<Option<RepositoryFile>, GitHubError> {
        let mut url = self.contents_url(repository, path);
        url.query_pairs_mut().append_pair("ref", branch);
        let response = self.send(Method::GET, &url, JSON_MEDIA_TYPE, None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = success(Method::GET, &url, response).await?;
        let body: serde_json::Value = decode(Method::GET, &url, response).await?;
        if body.is_array() {
            return Err(GitHubError::NotAFile {
                repository: repository.clone(),
                path: path.to_owned(),
                kind: "directory".to_owned(),
            });
        }
        let body: ContentBody =
            serde_json::from_value(body).map_err(|source| GitHubError::Decode {
                method: Method::GET,
                url: url.clone(),
                source,
            })?;
        if body.kind != "file" {
            return Err(GitHubError::NotAFile {
                repository: repository.clone(),
                path: path.to_owned(),
                kind: body.kind,
            });
        }
        let content = match (body.encoding.as_deref(), body.content) {
            (Some("base64"), Some(text)) => {
                // GitHub breaks the base64 into lines.
                let text: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                BASE64.decode(text).map_err(|source| GitHubError::Content {
                    url: url.clone(),
                    source,
                })?
            }
            // Over 1 MB the content is not inline: ask for the bytes themselves.
            _ => {
                let response = self.send(Method::GET, &url, RAW_MEDIA_TYPE, None).await?;
                let response = success(Method::GET, &url, response).await?;
                read_body(Method::GET, &url, response).await?
            }
        };
        Ok(Some(RepositoryFile {
            sha: body.sha,
            content,
        }))
    }

    /// Creates or replaces the file at `path` in one commit.
    ///
    /// A write that failed in transit is sent again as is: the `sha` makes it safe, since a write that did
    /// land the first time makes the replay a conflict, which the caller resolves by reading again.
    pub async fn put_file(
        &self,
        repository: &Repository,
        path: &str,
        update: FileUpdate<'_>,
    ) -> Result<Commit, GitHubError> {
        let url = self.contents_url(repository, path);
        let body = UpdateBody {
            message: update.message,
            content: BASE64.encode(update.content),
            sha: update.sha,
            branch: update.branch,
        };
        let body = serde_json::to_vec(&body).map_err(|source| GitHubError::Decode {
            method: Method::PUT,
            url: url.clone(),
            source,
        })?;
        let response = self
            .send(Method::PUT, &url, JSON_MEDIA_TYPE, Some(body))
            .await?;
        let status = response.status();
        if status == StatusCode::CONFLICT || status == StatusCode::UNPROCESSABLE_ENTITY {
            return Err(GitHubError::Conflict {
                method: Method::PUT,
                message: error_message(response).await,
                url,
                status,
            });
        }
        if status == StatusCode::NOT_FOUND {
            return Err(GitHubError::NotFound {
                method: Method::PUT,
                message: error_message(response).await,
                url,
                status,
            });
        }
        let response = success(Method::PUT, &url, response).await?;
        let body: FileCommitBody = decode(Method::PUT, &url, response).await?;
        Ok(Commit {
            sha: body.commit.sha,
        })
    }

    /// Sends one request, retrying connection failures, 429 and 5xx under the retry policy; any other
    /// answer is returned for the caller to read.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        accept: &'static str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, GitHubError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, accept)
                .header("X-GitHub-Api-Version", API_VERSION)
                .header(AUTHORIZATION, self.authorization.clone());
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let last = attempt >= self.retry.attempts;
            let (retry_after, reason) = match request.send().await {
                Ok(response) if last || !is_retryable(response.status().as_u16()) => {
                    return Ok(response);
                }
                Ok(response) => {
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.trim().parse().ok())
                        .map(Duration::from_secs);
                    (retry_after, response.status().to_string())
                }
                Err(source) if last => {
                    return Err(GitHubError::Connection {
                        method,
                        url: url.clone(),
                        attempts: attempt,
                        source,
                    });
                }
                Err(source) => (None, source.to_string()),
            };
            let delay = self.retry.delay(attempt, retry_after);
            tracing::info!(
                "retrying {method} {url} after {reason} (attempt {} of {}) in {:.1} s",
                attempt + 1,
                self.retry.attempts,
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
        }
    }
}

/// The response if it is a success, else the error its status means.
async fn success(method: Method, url: &Url, response: Response) -> Result<Response, GitHubError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let message = error_message(response).await;
    let url = url.clone();
    Err(match status {
        StatusCode::UNAUTHORIZED => GitHubError::Unauthorized {
            method,
            url,
            status,
            message,
        },
        StatusCode::FORBIDDEN => GitHubError::Forbidden {
            method,
            url,
            status,
            message,
        },
        _ => GitHubError::Status {
            method,
            url,
            status,
            message,
        },
    })
}

/// GitHub's `{"message": …}`, else the status's reason.
async fn error_message(response: Response) -> String {
    let status = response.status();
    let fallback = || status.canonical_reason().unwrap_or("no message").to_owned();
    let url = response.url().clone();
    match read_bounded(Method::GET, &url, response, ERROR_ANSWER_LIMIT).await {
        Ok(bytes) => serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|body| body.message)
            .unwrap_or_else(|_| fallback()),
        Err(_) => fallback(),
    }
}

async fn read_body(method: Method, url: &Url, response: Response) -> Result<Vec<u8>, GitHubError> {
    read_bounded(method, url, response, ANSWER_LIMIT).await
}

/// The body, refused once it passes `limit` bytes: the API is a peer, and its answer is read into memory.
async fn read_bounded(
    method: Method,
    url: &Url,
    mut response: Response,
    limit: usize,
) -> Result<Vec<u8>, GitHubError> {
    let too_large = || GitHubError::TooLarge {
        method: method.clone(),
        url: url.clone(),
        limit,
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|source| GitHubError::Connection {
                method: method.clone(),
                url: url.clone(),
                attempts: 1,
                source,
            })?;
        match chunk {
            Some(chunk) if body.len() + chunk.len() > limit => return Err(too_large()),
            Some(chunk) => body.extend_from_slice(&chunk),
            None => return Ok(body),
        }
    }
}

async fn decode<T: serde::de::DeserializeOwned>(
    method: Method,
    url: &Url,
    response: Response,
) -> Result<T, GitHubError> {
    let bytes = read_body(method.clone(), url, response).await?;
    serde_json::from_slice(&bytes).map_err(|source| GitHubError::Decode {
        method,
        url: url.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(api_url: &str) -> Result<GitHubClient, GitHubError> {
        GitHubClient::new(
            api_url,
            &Token::new("secret".to_owned()),
            RetryPolicy::default(),
        )
    }

    #[test]
    fn repository_names() {
        for (value, expected) in [
            ("octo/images", Some(("octo", "images"))),
            (" octo/images.json ", Some(("octo", "images.json"))),
            ("my-org/my_repo", Some(("my-org", "my_repo"))),
            ("octo", None),
            ("octo/", None),
            ("/images", None),
            ("octo/images/extra", None),
            ("octo/..", None),
            ("octo/im ages", None),
        ] {
            let parsed = value.parse::<Repository>().ok();
            assert_eq!(
                parsed
                    .as_ref()
                    .map(|repository| (repository.owner.as_str(), repository.name.as_str())),
                expected,
                "{value}"
            );
        }
    }

    #[test]
    fn urls_keep_the_enterprise_prefix_and_encode_each_segment() {
        let repository: Repository = "octo/images".parse().expect("valid");
        for base in [
            "https://github.example.com/api/v3",
            "https://github.example.com/api/v3/",
        ] {
            let client = client(base).expect("valid");
            assert_eq!(
                client
                    .contents_url(&repository, "/image info/#1.json")
                    .as_str(),
                "https://github.example.com/api/v3/repos/octo/images/contents/image%20info/%231.json"
            );
        }
        let client = client("https://api.github.com").expect("valid");
        assert_eq!(
            client.url(["repos", "octo", "images"]).as_str(),
            "https://api.github.com/repos/octo/images"
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(client("http://127.0.0.1:8080").is_ok());
        assert!(client("http://localhost:8080/api/v3").is_ok());
        for refused in [
            "http://github.example.com/api/v3",
            "ftp://github.example.com",
            "not a url",
            "https://api.github.com?x=1",
        ] {
            assert!(
                matches!(client(refused), Err(GitHubError::InvalidApiUrl { .. })),
                "{refused}"
            );
        }
    }

    #[test]
    fn the_token_stays_out_of_debug_output() {
        let token = Token::new("ghp_very_secret".to_owned());
        let client = GitHubClient::new("https://api.github.com", &token, RetryPolicy::default())
            .expect("valid");
        for text in [format!("{token:?}"), format!("{client:?}")] {
            assert!(!text.contains("ghp_very_secret"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }

    #[test]
    fn update_bodies_match_the_api() {
        let body = |sha| {
            serde_json::to_value(UpdateBody {
                message: "Update a.json from imagepipe",
                content: BASE64.encode(b"{}\n"),
                sha,
                branch: "main",
            })
            .expect("serializes")
        };
        assert_eq!(
            body(None),
            serde_json::json!({"message": "Update a.json from imagepipe", "content": "e30K", "branch": "main"})
        );
        assert_eq!(body(Some("abc"))["sha"], "abc");
    }
}
