//! Which units of a manifest are built `FROM` which: every declared platform's Dockerfile read, its `FROM` lines
//! taken with the platform's `buildArgs`, and each image they name looked up among the manifest's tags
//! ([`ManifestImages`]).
//!
//! Dockerfile paths are relative to the folder of the manifest file given on the command line, includes
//! included, as ImageBuilder reads them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::dockerfile::{DockerfileError, FromLine, from_lines};
use crate::model::dependencies::{Dependencies, ManifestImages};
use crate::model::manifest::Manifest;
use crate::model::platform_record::dockerfile_path;

/// The image a `FROM scratch` names: no image at all.
const SCRATCH: &str = "scratch";

/// The Dockerfiles do not say what to build in which order.
#[derive(Debug, thiserror::Error)]
pub enum DependencyError {
    #[error(
        "`{manifest}` declares the Dockerfile `{dockerfile}`, which does not exist",
        manifest = .manifest.display(), dockerfile = .dockerfile.display()
    )]
    MissingDockerfile {
        manifest: PathBuf,
        dockerfile: PathBuf,
    },
    #[error("reading `{file}`", file = .file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    #[error(
        "`{manifest}`: the Dockerfiles {} are built FROM one another in a cycle",
        .units.join(", "), manifest = .manifest.display()
    )]
    Cycle {
        manifest: PathBuf,
        /// Each unit as `dockerfile (platform, osVersion)`, in quotes.
        units: Vec<String>,
    },
}

impl DependencyError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::MissingDockerfile { .. } => Some(
                "a platform's `dockerfile` is relative to the manifest's folder; run from a checkout that has the Dockerfiles"
                    .to_owned(),
            ),
            Self::Cycle { .. } => {
                Some("a Dockerfile may be built FROM its own published image only by a tag the manifest gives it".to_owned())
            }
            _ => None,
        }
    }
}

/// Reads the Dockerfile of every unit `manifest` (loaded from `manifest_file`) declares. A unit declared under
/// several images is read once, with the `buildArgs` of its first declaration.
pub fn read_dependencies(
    manifest: &Manifest,
    manifest_file: &Path,
) -> Result<Dependencies, DependencyError> {
    let folder = manifest_file.parent().unwrap_or(Path::new(""));
    let images = ManifestImages::new(manifest);
    let mut dependencies = Dependencies::default();
    let mut seen = HashSet::new();
    let entries = manifest
        .repos
        .iter()
        .flat_map(|repo| &repo.images)
        .flat_map(|image| &image.platforms);
    for entry in entries {
        let unit = entry.identity();
        if !seen.insert(unit.clone()) {
            continue;
        }
        let file = folder.join(dockerfile_path(&entry.dockerfile));
        let text = std::fs::read_to_string(&file).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                DependencyError::MissingDockerfile {
                    manifest: manifest_file.to_owned(),
                    dockerfile: file.clone(),
                }
            } else {
                DependencyError::Read {
                    file: file.clone(),
                    source,
                }
            }
        })?;
        let lines = from_lines(&text, &file, &entry.build_args)?;
        let named: Vec<String> = lines
            .iter()
            .filter(|line| !line.earlier_stage && !is_scratch(&line.image))
            .map(|line| line.image.clone())
            .collect();
        let bases = images.bases(&unit, &named, final_image(&lines));
        dependencies.insert(unit, bases);
    }
    if let Some(cycle) = dependencies.cycle() {
        return Err(DependencyError::Cycle {
            manifest: manifest_file.to_owned(),
            units: cycle.iter().map(|unit| format!("`{unit}`")).collect(),
        });
    }
    Ok(dependencies)
}

/// The image the last stage is built from, through the earlier stages it names; `None` for `scratch`.
fn final_image(lines: &[FromLine]) -> Option<&str> {
    let mut line = lines.last()?;
    // Each step goes to an earlier stage, so there are at most as many steps as lines.
    for _ in 0..lines.len() {
        if !line.earlier_stage {
            break;
        }
        line = lines.iter().find(|earlier| {
            earlier
                .stage_name
                .as_deref()
                .is_some_and(|name| name.eq_ignore_ascii_case(&line.image))
        })?;
    }
    (!line.earlier_stage && !is_scratch(&line.image)).then_some(line.image.as_str())
}

fn is_scratch(image: &str) -> bool {
    image.eq_ignore_ascii_case(SCRATCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dependencies::BaseImage;
    use std::collections::BTreeMap;

    const MANIFEST: &str = r#"{"registry": "registry.example", "repos": [
      {"id": "base", "name": "acme/base", "images": [{"sharedTags": {"1": {}}, "platforms": [
        {"dockerfile": "base/amd64", "os": "linux", "osVersion": "bookworm", "tags": {"1-amd64": {}}}]}]},
      {"name": "acme/app", "images": [{"platforms": [
        {"dockerfile": "app/amd64/Dockerfile.app", "os": "linux", "osVersion": "bookworm",
         "buildArgs": {"REPO": "$(Repo:base)"}, "tags": {"app": {}}}]}]}]}"#;

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("creates");
        std::fs::write(path, text).expect("writes");
    }

    fn load(root: &Path) -> (Manifest, PathBuf) {
        let file = root.join("manifest.json");
        std::fs::write(&file, MANIFEST).expect("writes");
        let manifest = crate::inputs::load_manifest(&file, &BTreeMap::new()).expect("loads");
        (manifest, file)
    }

    #[test]
    fn from_lines_with_build_args_name_units_of_the_manifest() {
        let root = tempfile::tempdir().expect("temp dir");
        write(
            root.path(),
            "base/amd64/Dockerfile",
            "FROM debian:bookworm AS build\nFROM build\n",
        );
        write(
            root.path(),
            "app/amd64/Dockerfile.app",
            "ARG REPO=elsewhere.example/base\nFROM golang:1 AS build\nFROM $REPO:1\nCOPY --from=build /a /a\n",
        );
        let (manifest, file) = load(root.path());
        let dependencies = read_dependencies(&manifest, &file).expect("reads");
        let base = manifest.repos[0].images[0].platforms[0].identity();
        let app = manifest.repos[1].images[0].platforms[0].identity();
        let of_base = dependencies.of(&base).expect("base read");
        assert!(of_base.units.is_empty());
        assert_eq!(
            of_base.final_base,
            Some(BaseImage::External("debian:bookworm".into())),
            "through the earlier stage"
        );
        let of_app = dependencies.of(&app).expect("app read");
        assert_eq!(of_app.units, std::slice::from_ref(&base));
        assert_eq!(of_app.final_base, Some(BaseImage::Unit(base)));
    }

    #[test]
    fn a_missing_dockerfile_names_manifest_and_file() {
        let root = tempfile::tempdir().expect("temp dir");
        write(root.path(), "base/amd64/Dockerfile", "FROM scratch\n");
        let (manifest, file) = load(root.path());
        let error = read_dependencies(&manifest, &file).expect_err("app is missing");
        let text = error.to_string();
        assert!(
            text.contains("manifest.json` declares the Dockerfile"),
            "{text}"
        );
        assert!(text.contains("app/amd64/Dockerfile.app"), "{text}");
        assert!(error.hint().is_some());
    }

    #[test]
    fn a_cycle_is_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        write(
            root.path(),
            "base/amd64/Dockerfile",
            "FROM registry.example/acme/app:app\n",
        );
        write(
            root.path(),
            "app/amd64/Dockerfile.app",
            "ARG REPO\nFROM $REPO:1-amd64\n",
        );
        let (manifest, file) = load(root.path());
        let error = read_dependencies(&manifest, &file).expect_err("a cycle");
        assert!(
            matches!(error, DependencyError::Cycle { ref units, .. } if units.len() == 2),
            "{error}"
        );
    }

    #[test]
    fn scratch_is_no_base() {
        let lines = from_lines("FROM scratch\n", Path::new("Dockerfile"), &BTreeMap::new())
            .expect("parses");
        assert_eq!(final_image(&lines), None);
    }
}
