//! An image as a Dockerfile's `FROM` names it: `[registry/]repository[:tag][@digest]`, with Docker's defaults
//! (Docker Hub, `library/`, `latest`) made explicit so that it can be looked up in its registry.

use std::fmt;
use std::str::FromStr;

use super::reference::{Digest, is_valid_registry, is_valid_repository, is_valid_tag};

/// The registry Docker means when a name has none, as its API is reached.
pub const DOCKER_HUB: &str = "registry-1.docker.io";
/// The tag Docker means when a name has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// What an image name points at: a tag to resolve, or a digest already fixed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pointer {
    Tag(String),
    Digest(Digest),
}

/// `registry/repository:tag` or `registry/repository@sha256:…`, every part explicit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageReference {
    /// `host[:port]`; Docker Hub is [`DOCKER_HUB`].
    pub registry: String,
    /// `library/debian` for Docker Hub's official images.
    pub repository: String,
    pub pointer: Pointer,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an image name: expected `[registry/]repository[:tag][@sha256:<hex>]`")]
pub struct ImageReferenceError {
    pub text: String,
}

impl FromStr for ImageReference {
    type Err = ImageReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ImageReferenceError {
            text: text.to_owned(),
        };
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => (name, Some(digest.parse::<Digest>().map_err(|_| error())?)),
            None => (text, None),
        };
        // A tag follows the last `:` after the last `/`; a `:` before it is a registry's port.
        let last_component = name.rfind('/').map_or(0, |slash| slash + 1);
        let (name, tag) = match name[last_component..].rfind(':') {
            Some(colon) => {
                let at = last_component + colon;
                (&name[..at], Some(&name[at + 1..]))
            }
            None => (name, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let repository = match (registry.as_str(), repository.contains('/')) {
            (DOCKER_HUB, false) => format!("library/{repository}"),
            _ => repository,
        };
        let pointer = match (digest, tag) {
            (Some(digest), _) => Pointer::Digest(digest),
            (None, Some(tag)) => Pointer::Tag(tag.to_owned()),
            (None, None) => Pointer::Tag(DEFAULT_TAG.to_owned()),
        };
        let tag_ok = tag.is_none_or(is_valid_tag);
        if !tag_ok || !is_valid_registry(&registry) || !is_valid_repository(&repository) {
            return Err(error());
        }
        Ok(Self {
            registry,
            repository,
            pointer,
        })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match &self.pointer {
            Pointer::Tag(tag) => write!(f, ":{tag}"),
            Pointer::Digest(digest) => write!(f, "@{digest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "82c6c5dc0e6a17b170f5e976802c71671a23568411f99ffa4c4befea66bd23d3";

    #[test]
    fn names_take_dockers_defaults() {
        let cases = [
            ("debian", "registry-1.docker.io/library/debian:latest"),
            (
                "debian:bookworm-slim",
                "registry-1.docker.io/library/debian:bookworm-slim",
            ),
            (
                "amd64/buildpack-deps",
                "registry-1.docker.io/amd64/buildpack-deps:latest",
            ),
            (
                "mcr.microsoft.com/dotnet/runtime-deps:8.0-bookworm-slim-amd64",
                "mcr.microsoft.com/dotnet/runtime-deps:8.0-bookworm-slim-amd64",
            ),
            (
                "127.0.0.1:5000/acme/base",
                "127.0.0.1:5000/acme/base:latest",
            ),
            ("localhost/acme/base:1", "localhost/acme/base:1"),
            (
                &format!("127.0.0.1:5000/acme/base:1@sha256:{HEX}"),
                &format!("127.0.0.1:5000/acme/base@sha256:{HEX}"),
            ),
        ];
        for (text, expected) in cases {
            let reference: ImageReference = text.parse().expect(text);
            assert_eq!(reference.to_string(), expected, "{text}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            ":tag",
            "Acme/App:1",
            "acme/app:",
            "acme/app@sha256:00",
            "127.0.0.1:5000/acme/app:-x",
            "$REPO:1",
        ] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad:?}");
        }
    }
}
