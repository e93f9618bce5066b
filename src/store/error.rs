//! What can go wrong talking to a store, with the URL, reference, digest and status that say where.

use std::fmt;
use std::path::PathBuf;

use super::registry::TimeLimit;

/// The error codes of the OCI distribution spec's error envelope `{"errors":[{"code":…}]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    Other(String),
}

impl ErrorCode {
    pub fn parse(code: &str) -> Self {
        match code {
            "BLOB_UNKNOWN" => Self::BlobUnknown,
            "BLOB_UPLOAD_INVALID" => Self::BlobUploadInvalid,
            "BLOB_UPLOAD_UNKNOWN" => Self::BlobUploadUnknown,
            "DIGEST_INVALID" => Self::DigestInvalid,
            "MANIFEST_BLOB_UNKNOWN" => Self::ManifestBlobUnknown,
            "MANIFEST_INVALID" => Self::ManifestInvalid,
            "MANIFEST_UNKNOWN" => Self::ManifestUnknown,
            "NAME_INVALID" => Self::NameInvalid,
            "NAME_UNKNOWN" => Self::NameUnknown,
            "SIZE_INVALID" => Self::SizeInvalid,
            "UNAUTHORIZED" => Self::Unauthorized,
            "DENIED" => Self::Denied,
            "UNSUPPORTED" => Self::Unsupported,
            "TOOMANYREQUESTS" => Self::TooManyRequests,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid => "SIZE_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{reference}` was not found in {store}")]
    NotFound { store: String, reference: String },
    #[error("`{reference}` from {store} has digest `{actual}`, expected `{expected}`")]
    DigestMismatch {
        store: String,
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("{method} {url} answered {status}{}: {message} (attempt {attempts})", code_text(.code))]
    Status {
        method: String,
        url: String,
        status: u16,
        code: Option<ErrorCode>,
        message: String,
        attempts: u32,
    },
    #[error("{method} {url} failed after {attempts} attempts")]
    Connection {
        method: String,
        url: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("{registry} refused the credentials{}", user_text(.user))]
    Unauthorized {
        registry: String,
        user: Option<String>,
    },
    #[error("cannot get credentials for {registry}")]
    Credentials {
        registry: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{method} {url} timed out: {limit}{}", last_text(.last))]
    TimedOut {
        method: String,
        url: String,
        limit: TimeLimit,
        /// What the request was doing or had last failed with.
        last: Option<String>,
    },
    #[error("`{url}` sent more than {limit} bytes for {what}; refused")]
    TooLarge {
        url: String,
        what: &'static str,
        limit: usize,
    },
    #[error(
        "{registry} named the {what} `{url}`, which is plain HTTP on a host that is not loopback; refused so that no credential or content crosses the network in clear text"
    )]
    PlainHttp {
        registry: String,
        what: &'static str,
        url: String,
    },
    #[error("the TLS certificate of {registry} is not trusted")]
    UntrustedCertificate {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("`{reference}` in {store} is not a valid manifest")]
    InvalidManifest {
        store: String,
        reference: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{repository}` is not a repository name {store} can store")]
    InvalidRepository { store: String, repository: String },
    #[error("{operation} `{path}`", path = .path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn code_text(code: &Option<ErrorCode>) -> String {
    code.as_ref()
        .map(|code| format!(" {code}"))
        .unwrap_or_default()
}

fn last_text(last: &Option<String>) -> String {
    last.as_ref()
        .map(|last| format!(" (last: {last})"))
        .unwrap_or_default()
}

fn user_text(user: &Option<String>) -> String {
    user.as_ref()
        .map(|user| format!(" of `{user}`"))
        .unwrap_or_default()
}

impl StoreError {
    /// What the user should do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Unauthorized { registry, .. } => Some(format!(
                "check the password given with `--password-stdin` or `IMAGEPIPE_PASSWORD`, or log in with `docker login {registry}`"
            )),
            Self::UntrustedCertificate { registry, .. } => Some(format!(
                "pass the CA that signed {registry}'s certificate with `--ca-cert FILE`, or allow it with `--insecure-registry {registry}`"
            )),
            Self::PlainHttp { .. } => Some(
                "serve it over HTTPS, or name its host with `--insecure-registry` if plain HTTP is intended".to_owned(),
            ),
            Self::TimedOut { limit: TimeLimit::Stage(_), .. } => Some(
                "raise the stage's limit with `--timeout`, or check that the registry answers".to_owned(),
            ),
            Self::TimedOut { .. } => {
                Some("check that the registry is up and answering from this machine".to_owned())
            }
            Self::Connection { .. } => {
                Some("check that the registry is up and reachable from this machine".to_owned())
            }
            _ => None,
        }
    }
}
