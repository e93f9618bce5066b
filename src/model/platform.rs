//! Platforms (`linux/arm64/v8`) and the identity that ties a built image back to its manifest entry.

use std::fmt;
use std::str::FromStr;

/// Architectures an OCI image may declare (Go's GOARCH names, which OCI uses).
pub const ARCHITECTURES: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le", "loong64",
];

/// Operating systems a manifest may declare.
pub const OPERATING_SYSTEMS: &[&str] = &["linux", "windows"];

/// The architecture a manifest assumes when a platform names none.
pub const DEFAULT_ARCHITECTURE: &str = "amd64";

/// Variants OCI defines for an architecture; an empty list means the architecture takes none.
pub fn variants_of(architecture: &str) -> &'static [&'static str] {
    match architecture {
        "arm" => &["v5", "v6", "v7", "v8"],
        "arm64" => &["v8", "v8.0", "v8.1", "v8.2", "v9", "v9.0"],
        "amd64" => &["v1", "v2", "v3", "v4"],
        _ => &[],
    }
}

/// Maps the spellings found in real files onto OCI's names.
///
/// ImageBuilder's image-info writes display names (`arm32` for 32-bit ARM), and toolchains say `x86_64` or
/// `aarch64`; all of them name the same platform.
pub fn canonical_architecture(architecture: &str) -> String {
    let lower = architecture.to_ascii_lowercase();
    match lower.as_str() {
        "arm32" => "arm".to_owned(),
        "x86_64" | "x64" => "amd64".to_owned(),
        "aarch64" => "arm64".to_owned(),
        _ => lower,
    }
}

/// Operating systems are compared without case: ImageBuilder writes `Linux` where manifests say `linux`.
pub fn canonical_os(os: &str) -> String {
    os.to_ascii_lowercase()
}

/// An OCI platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a platform: expected `os/architecture` or `os/architecture/variant`")]
pub struct PlatformParseError {
    pub text: String,
}

impl FromStr for Platform {
    type Err = PlatformParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').collect();
        let error = || PlatformParseError {
            text: text.to_owned(),
        };
        if parts.iter().any(|part| part.is_empty()) {
            return Err(error());
        }
        match parts.as_slice() {
            [os, architecture] => Ok(Self {
                os: canonical_os(os),
                architecture: canonical_architecture(architecture),
                variant: None,
            }),
            [os, architecture, variant] => Ok(Self {
                os: canonical_os(os),
                architecture: canonical_architecture(architecture),
                variant: Some((*variant).to_owned()),
            }),
            _ => Err(error()),
        }
    }
}

/// Whether two platforms are the same as a client pulling by platform sees them: variants compare as
/// containerd normalizes them (`arm64` is `arm64/v8`, `arm` is `arm/v7`, `amd64` is `amd64/v1`). With
/// `missing_variant_matches_any`, an `expected` without variant matches any variant (image-info 1.0 records
/// none).
pub fn same_platform(
    expected: &Platform,
    actual: &Platform,
    missing_variant_matches_any: bool,
) -> bool {
    if expected.os != actual.os || expected.architecture != actual.architecture {
        return false;
    }
    if missing_variant_matches_any && expected.variant.is_none() {
        return true;
    }
    normalized_variant(&expected.architecture, expected.variant.as_deref())
        == normalized_variant(&actual.architecture, actual.variant.as_deref())
}

/// A variant as containerd normalizes it for `architecture`: the default variant (`arm64/v8`, `amd64/v1`) is
/// none, `arm` without variant is `v7`, a bare number gains its `v`, and an empty variant is none.
pub fn normalized_variant(architecture: &str, variant: Option<&str>) -> Option<String> {
    let variant = variant.filter(|variant| !variant.is_empty());
    match (architecture, variant) {
        ("arm64", None | Some("8" | "v8" | "v8.0")) => None,
        ("amd64", None | Some("v1")) => None,
        ("arm", None | Some("7" | "v7")) => Some("v7".to_owned()),
        (_, Some(variant)) if variant.bytes().all(|byte| byte.is_ascii_digit()) => {
            Some(format!("v{variant}"))
        }
        (_, variant) => variant.map(str::to_owned),
    }
}

/// What makes a platform entry unique within a repository: the Dockerfile it is built from and the platform it
/// targets. Both manifest.json and image-info.json entries reduce to this, so built images find their
/// declaration again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlatformIdentity {
    pub dockerfile: String,
    pub os: String,
    pub os_version: String,
    pub architecture: String,
    /// `None` matches any variant: ImageBuilder's image-info 1.0 records none.
    pub variant: Option<String>,
}

impl PlatformIdentity {
    pub fn new(
        dockerfile: &str,
        os: &str,
        os_version: &str,
        architecture: &str,
        variant: Option<&str>,
    ) -> Self {
        Self {
            dockerfile: canonical_dockerfile(dockerfile),
            os: canonical_os(os),
            os_version: os_version.to_owned(),
            architecture: canonical_architecture(architecture),
            variant: variant.map(str::to_owned),
        }
    }

    /// The identity without its variant: the key under which candidates are looked up.
    pub fn without_variant(&self) -> Self {
        Self {
            variant: None,
            ..self.clone()
        }
    }

    /// Whether a recorded entry (this) may stand for a declared one; a missing variant matches any.
    pub fn matches(&self, declared: &PlatformIdentity) -> bool {
        self.without_variant() == declared.without_variant()
            && (self.variant.is_none() || self.variant == declared.variant)
    }

    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

impl fmt::Display for PlatformIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {})",
            self.dockerfile,
            self.platform(),
            self.os_version
        )
    }
}

/// Manifests name a Dockerfile's folder (`src/aspnet/8.0/amd64`), image-info names the file
/// (`src/aspnet/8.0/amd64/Dockerfile`); both mean the same build.
fn canonical_dockerfile(path: &str) -> String {
    let trimmed = path.trim_start_matches("./").trim_end_matches('/');
    trimmed
        .strip_suffix("/Dockerfile")
        .unwrap_or(trimmed)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_platforms() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/arm64/v8", "linux/arm64/v8"),
            ("Linux/arm32/v7", "linux/arm/v7"),
            ("windows/x86_64", "windows/amd64"),
        ];
        for (text, printed) in cases {
            let platform: Platform = text.parse().expect(text);
            assert_eq!(platform.to_string(), printed, "{text}");
        }
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn variants_compare_as_clients_normalize_them() {
        let platform = |text: &str| -> Platform { text.parse().expect("platform") };
        let cases = [
            ("linux/arm64", "linux/arm64/v8", false, true),
            ("linux/arm/v7", "linux/arm", false, true),
            ("linux/arm/v6", "linux/arm/v7", false, false),
            ("linux/arm", "linux/arm/v6", true, true),
            ("linux/arm", "linux/arm/v6", false, false),
            ("linux/amd64", "linux/amd64/v1", false, true),
            ("linux/amd64", "linux/arm64", true, false),
            ("windows/amd64", "linux/amd64", true, false),
        ];
        for (expected, actual, any, same) in cases {
            assert_eq!(
                same_platform(&platform(expected), &platform(actual), any),
                same,
                "{expected} vs {actual} (missing variant matches any: {any})"
            );
        }
    }

    #[test]
    fn image_info_entries_match_manifest_entries() {
        let declared = PlatformIdentity::new(
            "src/aspnet/6.0/bullseye-slim/arm32v7",
            "linux",
            "bullseye-slim",
            "arm",
            Some("v7"),
        );
        let recorded = PlatformIdentity::new(
            "src/aspnet/6.0/bullseye-slim/arm32v7/Dockerfile",
            "Linux",
            "bullseye-slim",
            "arm32",
            None,
        );
        assert!(recorded.matches(&declared));
        let other_variant = PlatformIdentity {
            variant: Some("v6".to_owned()),
            ..recorded.clone()
        };
        assert!(!other_variant.matches(&declared));
        let other_os_version = PlatformIdentity {
            os_version: "bookworm-slim".to_owned(),
            ..recorded
        };
        assert!(!other_os_version.matches(&declared));
    }

    #[test]
    fn dockerfile_files_named_otherwise_stay_distinct() {
        let linux = PlatformIdentity::new("Dockerfile.linux", "linux", "alpine", "amd64", None);
        let windows = PlatformIdentity::new("Dockerfile.windows", "linux", "alpine", "amd64", None);
        assert_ne!(linux, windows);
    }
}
