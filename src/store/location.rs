//! Where a store is: `HOST[:PORT]` for a registry, `oci:DIR` for an OCI image layout folder.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

const LAYOUT_PREFIX: &str = "oci:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A registry host with optional port, e.g. `registry.example.com` or `127.0.0.1:5000`.
    Registry(String),
    /// A folder holding one OCI image layout per repository path.
    Layout(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a store: expected `HOST[:PORT]` or `oci:DIR`")]
pub struct LocationParseError {
    pub text: String,
}

impl FromStr for Location {
    type Err = LocationParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || LocationParseError {
            text: text.to_owned(),
        };
        if let Some(folder) = text.strip_prefix(LAYOUT_PREFIX) {
            return if folder.is_empty() {
                Err(error())
            } else {
                Ok(Self::Layout(PathBuf::from(folder)))
            };
        }
        let host = text.trim_end_matches('/');
        let valid = !host.is_empty()
            && !host.contains("://")
            && !host.contains('/')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if valid {
            Ok(Self::Registry(host.to_owned()))
        } else {
            Err(error())
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(host) => f.write_str(host),
            Self::Layout(folder) => write!(f, "{LAYOUT_PREFIX}{}", folder.display()),
        }
    }
}

/// The repository path a public repository has in a staging store: `P/repo` with a prefix, `repo` without.
/// A trailing slash on the prefix is tolerated.
pub fn staging_repository(prefix: Option<&str>, repository: &str) -> String {
    match prefix.map(|prefix| prefix.trim_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/{repository}"),
        _ => repository.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registries_and_layouts() {
        let cases = [
            (
                "127.0.0.1:5000",
                Location::Registry("127.0.0.1:5000".into()),
            ),
            (
                "registry.example.com",
                Location::Registry("registry.example.com".into()),
            ),
            ("[::1]:5000", Location::Registry("[::1]:5000".into())),
            ("oci:/tmp/staging", Location::Layout("/tmp/staging".into())),
            ("oci:relative/dir", Location::Layout("relative/dir".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Location>().as_ref(), Ok(&expected), "{text}");
            assert_eq!(expected.to_string(), text);
        }
        for bad in [
            "",
            "oci:",
            "https://registry.example.com",
            "host/path",
            "a b",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn staging_names_join_prefix_and_repository() {
        assert_eq!(
            staging_repository(Some("staging/123"), "acme/app"),
            "staging/123/acme/app"
        );
        assert_eq!(
            staging_repository(Some("staging/123/"), "acme/app"),
            "staging/123/acme/app"
        );
        assert_eq!(staging_repository(Some(""), "acme/app"), "acme/app");
        assert_eq!(staging_repository(None, "acme/app"), "acme/app");
    }
}
