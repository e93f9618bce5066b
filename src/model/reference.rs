//! The wire strings of the OCI distribution spec: digests, tags, repository names and digest references.

use std::fmt;
use std::str::FromStr;

const SHA256_PREFIX: &str = "sha256:";
const SHA256_HEX_LENGTH: usize = 64;
const TAG_MAX_LENGTH: usize = 128;
/// The longest host name DNS allows.
const HOST_MAX_LENGTH: usize = 253;
const HOST_LABEL_MAX_LENGTH: usize = 63;

/// What a repository name must look like, as messages say it.
pub const REPOSITORY_RULE: &str =
    "a repository path of lowercase letters, digits and separators (`.`, `_`, `-`, `/`)";
/// What a registry must look like, as messages say it.
pub const REGISTRY_RULE: &str = "a registry host name or IP address with an optional `:port`";

/// A content digest, `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("`{text}` is not a digest: expected `sha256:` and 64 lowercase hex digits")]
    Digest { text: String },
    #[error("`{text}` is not a digest reference: expected `registry/repository@sha256:<hex>`")]
    DigestReference { text: String },
    #[error("`{text}` names the repository `{repository}`: expected {REPOSITORY_RULE}")]
    Repository { text: String, repository: String },
    #[error("`{text}` names the registry `{registry}`: expected {REGISTRY_RULE}")]
    Registry { text: String, registry: String },
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(bytes);
        Self(format!("{SHA256_PREFIX}{hash:x}"))
    }

    /// The digest of what `hasher` was fed, for content hashed piece by piece.
    pub fn from_hasher(hasher: sha2::Sha256) -> Self {
        use sha2::Digest as _;
        Self(format!("{SHA256_PREFIX}{:x}", hasher.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, as cosign's `sha256-<hex>.sig` tags and OCI layout paths use it.
    pub fn hex(&self) -> &str {
        &self.0[SHA256_PREFIX.len()..]
    }
}

impl FromStr for Digest {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let valid = text.strip_prefix(SHA256_PREFIX).is_some_and(|hex| {
            hex.len() == SHA256_HEX_LENGTH
                && hex
                    .bytes()
                    .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        });
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(ReferenceError::Digest {
                text: text.to_owned(),
            })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `registry/repository@sha256:…`, the form image-info records every digest in.
///
/// Its name is checked on parsing (a registry host and an OCI repository path), and cannot be set otherwise:
/// stages paste it into URL paths and signature payloads, so a name such as `ACME/../../v2/x?y#z` must never
/// get that far.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DigestReference {
    /// Everything before `@`: the registry host (if any) and the repository path.
    name: String,
    pub digest: Digest,
}

impl FromStr for DigestReference {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ReferenceError::DigestReference {
            text: text.to_owned(),
        };
        let (name, digest) = text.rsplit_once('@').ok_or_else(error)?;
        if name.is_empty() {
            return Err(error());
        }
        let reference = Self {
            name: name.to_owned(),
            digest: digest.parse().map_err(|_| error())?,
        };
        if let Some(registry) = reference.registry() {
            if !is_valid_registry(registry) {
                return Err(ReferenceError::Registry {
                    text: text.to_owned(),
                    registry: registry.to_owned(),
                });
            }
        }
        if !is_valid_repository(reference.repository()) {
            return Err(ReferenceError::Repository {
                text: text.to_owned(),
                repository: reference.repository().to_owned(),
            });
        }
        Ok(reference)
    }
}

impl fmt::Display for DigestReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.digest)
    }
}

impl DigestReference {
    /// Everything before `@`: `registry/repository`, or the repository alone. Signatures name it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry host of the name, by Docker's rule: a first component with a `.` or `:`, or `localhost`.
    pub fn registry(&self) -> Option<&str> {
        let (first, _) = self.name.split_once('/')?;
        (first.contains(['.', ':']) || first == "localhost").then_some(first)
    }

    /// The repository path without the registry: `acme/app` of `registry.example.com/acme/app`.
    pub fn repository(&self) -> &str {
        match self.registry() {
            Some(registry) => &self.name[registry.len() + 1..],
            None => &self.name,
        }
    }
}

/// Whether `tag` is a tag the distribution spec accepts: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    first_ok
        && tag.len() <= TAG_MAX_LENGTH
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
}

/// Whether `name` is a repository path the distribution spec accepts: lowercase components joined by `/`, each
/// of alphanumerics separated by `.`, `_`, `__` or runs of `-`.
pub fn is_valid_repository(name: &str) -> bool {
    !name.is_empty() && name.split('/').all(is_valid_path_component)
}

/// Whether `registry` is `host[:port]` as the distribution spec's reference grammar has it: a DNS name or
/// IPv4 address (labels of letters, digits and inner `-`), or an IPv6 address in brackets.
pub fn is_valid_registry(registry: &str) -> bool {
    let (host_ok, port) = match registry.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((address, port)) => (address.parse::<std::net::Ipv6Addr>().is_ok(), port),
            None => return false,
        },
        None => {
            let (host, port) = registry.split_at(registry.find(':').unwrap_or(registry.len()));
            let labels_ok = host.split('.').all(is_valid_host_label);
            (host.len() <= HOST_MAX_LENGTH && labels_ok, port)
        }
    };
    // `u16` parsing alone would take `+80`.
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|digits| {
            digits.bytes().all(|byte| byte.is_ascii_digit()) && digits.parse::<u16>().is_ok()
        });
    host_ok && port_ok
}

fn is_valid_host_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    label.len() <= HOST_LABEL_MAX_LENGTH
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

fn is_valid_path_component(component: &str) -> bool {
    let alphanumeric = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alphanumeric(first) || !alphanumeric(last) {
        return false;
    }
    let mut separator = String::new();
    for &byte in bytes {
        if alphanumeric(byte) {
            if !matches!(separator.as_str(), "" | "." | "_" | "__")
                && !separator.bytes().all(|b| b == b'-')
            {
                return false;
            }
            separator.clear();
        } else if matches!(byte, b'.' | b'_' | b'-') {
            separator.push(byte as char);
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "82c6c5dc0e6a17b170f5e976802c71671a23568411f99ffa4c4befea66bd23d3";

    #[test]
    fn digests_parse_and_hash() {
        let digest: Digest = format!("sha256:{HEX}").parse().expect("valid digest");
        assert_eq!(digest.hex(), HEX);
        for bad in [
            "",
            "sha256:",
            "sha512:00",
            &format!("sha256:{}", HEX.to_uppercase()),
            &format!("sha256:{HEX}0"),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?}");
        }
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn digest_references_split_at_the_last_at_sign() {
        let text = format!("mcr.microsoft.com/dotnet/aspnet@sha256:{HEX}");
        let reference: DigestReference = text.parse().expect("valid reference");
        assert_eq!(reference.name, "mcr.microsoft.com/dotnet/aspnet");
        assert_eq!(reference.to_string(), text);
        assert_eq!(reference.registry(), Some("mcr.microsoft.com"));
        assert_eq!(reference.repository(), "dotnet/aspnet");
        let local: DigestReference = format!("127.0.0.1:5000/acme/app@sha256:{HEX}")
            .parse()
            .expect("valid");
        assert_eq!(
            (local.registry(), local.repository()),
            (Some("127.0.0.1:5000"), "acme/app")
        );
        let bare: DigestReference = format!("acme/app@sha256:{HEX}").parse().expect("valid");
        assert_eq!((bare.registry(), bare.repository()), (None, "acme/app"));
        for bad in [
            format!("@sha256:{HEX}"),
            "repo@sha256:12".to_owned(),
            "repo:tag".to_owned(),
        ] {
            assert!(bad.parse::<DigestReference>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn digest_references_refuse_names_that_are_not_registry_and_repository() {
        let digest = format!("sha256:{HEX}");
        let repository = |text: &str, repository: &str| ReferenceError::Repository {
            text: format!("{text}@{digest}"),
            repository: repository.to_owned(),
        };
        let registry = |text: &str, registry: &str| ReferenceError::Registry {
            text: format!("{text}@{digest}"),
            registry: registry.to_owned(),
        };
        let cases = [
            (
                "ACME/../../v2/x?y#z",
                repository("ACME/../../v2/x?y#z", "ACME/../../v2/x?y#z"),
            ),
            (
                "registry.example.com/acme/../../v2/x",
                repository("registry.example.com/acme/../../v2/x", "acme/../../v2/x"),
            ),
            (
                "registry.example.com/acme/app?x=1",
                repository("registry.example.com/acme/app?x=1", "acme/app?x=1"),
            ),
            (
                "registry.example.com/Acme/app",
                repository("registry.example.com/Acme/app", "Acme/app"),
            ),
            (
                "registry.example.com/acme//app",
                repository("registry.example.com/acme//app", "acme//app"),
            ),
            (
                "registry.example.com/",
                repository("registry.example.com/", ""),
            ),
            (
                "evil_host.example/acme/app",
                registry("evil_host.example/acme/app", "evil_host.example"),
            ),
            (
                "registry.example.com:99999/acme/app",
                registry(
                    "registry.example.com:99999/acme/app",
                    "registry.example.com:99999",
                ),
            ),
            (
                "registry.example.com:+80/acme/app",
                registry(
                    "registry.example.com:+80/acme/app",
                    "registry.example.com:+80",
                ),
            ),
            ("a..b/acme/app", registry("a..b/acme/app", "a..b")),
        ];
        for (name, expected) in cases {
            assert_eq!(
                format!("{name}@{digest}").parse::<DigestReference>(),
                Err(expected),
                "{name}"
            );
        }
        for good in [
            "acme/app",
            "localhost/acme/app",
            "localhost:5000/acme/app",
            "127.0.0.1:5000/acme/app",
            "[::1]:5000/acme/app",
            "Registry.Example.com/acme/app",
            "mcr.microsoft.com/dotnet/nightly/aspnet",
        ] {
            let reference: DigestReference = format!("{good}@{digest}").parse().expect(good);
            assert_eq!(reference.name(), good);
        }
    }

    #[test]
    fn registries_are_a_host_and_an_optional_port() {
        for good in [
            "localhost",
            "registry-1.docker.io",
            "127.0.0.1:5000",
            "[::1]",
            "[fe80::1]:443",
            "x:1",
        ] {
            assert!(is_valid_registry(good), "{good}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        for bad in [
            "",
            "host:",
            "host:port",
            "host:1:2",
            "-host.example",
            "host-.example",
            "host.example.",
            "ho st",
            "[::1",
            "[nonsense]:5000",
            "host/path",
            long_label.as_str(),
        ] {
            assert!(!is_valid_registry(bad), "{bad}");
        }
    }

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for good in ["latest", "8.0.11-bookworm-slim-amd64", "_x", "A.b-c_d"] {
            assert!(is_valid_tag(good), "{good}");
        }
        let too_long = "a".repeat(129);
        for bad in ["", ".x", "-x", "a:b", "a/b", too_long.as_str()] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn repositories_follow_the_distribution_grammar() {
        for good in [
            "dotnet/aspnet",
            "dotnet-buildtools/image-builder",
            "a__b",
            "a---b",
            "x.y/z_0",
        ] {
            assert!(is_valid_repository(good), "{good}");
        }
        for bad in [
            "",
            "Dotnet/aspnet",
            "a//b",
            "a/",
            "-a",
            "a_-b",
            "a___b",
            "a:b",
        ] {
            assert!(!is_valid_repository(bad), "{bad}");
        }
    }
}
