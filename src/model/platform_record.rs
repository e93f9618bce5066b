//! The one form a platform record takes in image-info, whichever stage writes it.
//!
//! ImageBuilder's published files name the Dockerfile itself (`src/app/amd64/Dockerfile`), the OS as `Linux` or
//! `Windows` and 32-bit ARM as `arm32`, where manifests say `src/app/amd64`, `linux` and `arm` + `v7`. A record
//! merged from a fragment, carried over from a published file or imported from the registry takes this form,
//! so records compare equal across stages and a published record round-trips through any of them unchanged.

use super::image_info::PlatformData;
use super::manifest::PlatformEntry;
use super::platform::{canonical_architecture, canonical_os};

/// The path of the Dockerfile itself: a manifest may name its folder.
///
/// A last component that is a Dockerfile's name (`Dockerfile`, `Dockerfile.alpine`, `app.dockerfile`,
/// `Containerfile`) is kept; anything else is a folder.
pub fn dockerfile_path(dockerfile: &str) -> String {
    let trimmed = dockerfile.trim_start_matches("./").trim_end_matches('/');
    let name = trimmed
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let names_a_file = name.starts_with("dockerfile")
        || name.starts_with("containerfile")
        || name.ends_with(".dockerfile");
    if names_a_file || trimmed.is_empty() {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/Dockerfile")
    }
}

/// The folder holding the Dockerfile a manifest names (itself a folder or a file): the build's context.
/// `.` for a Dockerfile at the top.
pub fn dockerfile_folder(dockerfile: &str) -> String {
    match dockerfile_path(dockerfile).rsplit_once('/') {
        Some((folder, _)) => folder.to_owned(),
        None => ".".to_owned(),
    }
}

/// `Linux`, `Windows`: the OS as image-info writes it.
pub fn os_type(os: &str) -> String {
    let os = canonical_os(os);
    let mut letters = os.chars();
    match letters.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + letters.as_str(),
        None => os,
    }
}

/// The architecture as image-info writes it: OCI's name, except `arm32` for 32-bit ARM.
pub fn architecture_name(architecture: &str) -> String {
    match canonical_architecture(architecture).as_str() {
        "arm" => "arm32".to_owned(),
        other => other.to_owned(),
    }
}

impl PlatformData {
    /// Puts the fields whose spelling varies between sources in image-info's form; a record already in that
    /// form is left as it is.
    pub fn canonicalize(&mut self) {
        self.dockerfile = dockerfile_path(&self.dockerfile);
        self.os_type = os_type(&self.os_type);
        self.architecture = architecture_name(&self.architecture);
    }

    /// The record of a declared platform, with what the manifest says about it, for `digest`
    /// (`registry/repo@sha256:…`). What only a build knows (created, layers, base image, commit) is left for the
    /// caller to fill in where it can be known.
    pub fn declared(entry: &PlatformEntry, digest: String) -> Self {
        Self {
            dockerfile: dockerfile_path(&entry.dockerfile),
            simple_tags: entry.tags.keys().cloned().collect(),
            digest,
            os_type: os_type(&entry.os),
            os_version: entry.os_version.clone().unwrap_or_default(),
            architecture: architecture_name(entry.architecture()),
            variant: entry.variant.clone(),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_folders_gain_the_file_name() {
        let cases = [
            ("src/app/amd64", "src/app/amd64/Dockerfile"),
            ("./src/app/amd64/", "src/app/amd64/Dockerfile"),
            ("src/app/amd64/Dockerfile", "src/app/amd64/Dockerfile"),
            (
                "samples/app/Dockerfile.debian-arm32",
                "samples/app/Dockerfile.debian-arm32",
            ),
            ("build/app.dockerfile", "build/app.dockerfile"),
            ("Containerfile", "Containerfile"),
            ("app", "app/Dockerfile"),
        ];
        for (declared, recorded) in cases {
            assert_eq!(dockerfile_path(declared), recorded, "{declared}");
            assert_eq!(dockerfile_path(recorded), recorded, "{recorded} is kept");
        }
        for (declared, folder) in [
            ("src/app/amd64", "src/app/amd64"),
            ("./src/app/amd64/Dockerfile", "src/app/amd64"),
            ("samples/app/Dockerfile.debian-arm32", "samples/app"),
            ("Dockerfile", "."),
        ] {
            assert_eq!(dockerfile_folder(declared), folder, "{declared}");
        }
    }

    #[test]
    fn os_and_architecture_take_image_infos_spelling() {
        assert_eq!(os_type("linux"), "Linux");
        assert_eq!(os_type("Windows"), "Windows");
        assert_eq!(os_type("WINDOWS"), "Windows");
        for (declared, recorded) in [
            ("arm", "arm32"),
            ("arm32", "arm32"),
            ("aarch64", "arm64"),
            ("AMD64", "amd64"),
            ("s390x", "s390x"),
        ] {
            assert_eq!(architecture_name(declared), recorded, "{declared}");
        }
    }

    #[test]
    fn a_declared_platform_is_recorded_in_the_published_form() {
        let mut entry = PlatformEntry {
            dockerfile: "src/app/arm32v7".into(),
            os: "linux".into(),
            os_version: Some("bookworm".into()),
            architecture: Some("arm".into()),
            variant: Some("v7".into()),
            ..PlatformEntry::default()
        };
        entry.tags.insert("1-arm32v7".into(), Default::default());
        entry.tags.insert("1-arm".into(), Default::default());
        let record = PlatformData::declared(&entry, "r.example/app@sha256:00".into());
        assert_eq!(record.dockerfile, "src/app/arm32v7/Dockerfile");
        assert_eq!(record.os_type, "Linux");
        assert_eq!(record.architecture, "arm32");
        assert_eq!(record.variant.as_deref(), Some("v7"));
        assert_eq!(
            record.simple_tags,
            ["1-arm32v7", "1-arm"],
            "the manifest's order"
        );
        assert!(record.identity().matches(&entry.identity()));
        let mut again = record.clone();
        again.canonicalize();
        assert_eq!(again, record);
    }
}
