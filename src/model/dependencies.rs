//! Which build units of a manifest are built `FROM` which others.
//!
//! A `FROM` line names an image of this manifest when it is `{registry}/{repo}:{tag}` with a tag the manifest
//! declares: a platform's own tag names that platform; an image's shared tag names the platform of that image a
//! build on the same platform would pull. Reading the Dockerfiles is `build::dependencies`; this is the rule.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::manifest::Manifest;
use super::platform::{PlatformIdentity, normalized_variant};

/// What a Dockerfile is built from, once its `FROM` lines are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitBases {
    /// Units of this manifest named in any `FROM` line, in the file's order, each once.
    pub units: Vec<PlatformIdentity>,
    /// The image the final stage is built from (through earlier stages), which image-info records as
    /// `baseImageDigest`; `None` for `scratch`.
    pub final_base: Option<BaseImage>,
}

/// An image a Dockerfile is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseImage {
    /// A unit of this manifest.
    Unit(PlatformIdentity),
    /// An image from elsewhere, as the `FROM` line names it once `ARG`s are substituted.
    External(String),
}

/// For each build unit, the units it is built from. Units not listed are built from nothing of this manifest,
/// so `Dependencies::default()` plans every unit on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dependencies {
    units: BTreeMap<PlatformIdentity, UnitBases>,
}

impl Dependencies {
    pub fn insert(&mut self, unit: PlatformIdentity, bases: UnitBases) {
        self.units.insert(unit, bases);
    }

    /// What `unit` is built from, if its Dockerfile was read.
    pub fn of(&self, unit: &PlatformIdentity) -> Option<&UnitBases> {
        self.units.get(unit)
    }

    /// The units of this manifest `unit` is built from.
    pub fn bases_of(&self, unit: &PlatformIdentity) -> &[PlatformIdentity] {
        self.units
            .get(unit)
            .map(|bases| bases.units.as_slice())
            .unwrap_or_default()
    }

    /// Units that are, through their `FROM` lines, built from themselves: the first cycle found, in a stable
    /// order, or `None`. No build order exists while there is one.
    pub fn cycle(&self) -> Option<Vec<PlatformIdentity>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Open,
            Done,
        }
        fn visit<'a>(
            unit: &'a PlatformIdentity,
            dependencies: &'a Dependencies,
            marks: &mut HashMap<&'a PlatformIdentity, Mark>,
            path: &mut Vec<&'a PlatformIdentity>,
        ) -> Option<Vec<PlatformIdentity>> {
            match marks.get(unit) {
                Some(Mark::Done) => return None,
                Some(Mark::Open) => {
                    let start = path.iter().position(|open| *open == unit).unwrap_or(0);
                    return Some(path[start..].iter().map(|&unit| unit.clone()).collect());
                }
                None => {}
            }
            marks.insert(unit, Mark::Open);
            path.push(unit);
            for base in dependencies.bases_of(unit) {
                if let Some(cycle) = visit(base, dependencies, marks, path) {
                    return Some(cycle);
                }
            }
            path.pop();
            marks.insert(unit, Mark::Done);
            None
        }
        let mut marks = HashMap::new();
        self.units
            .keys()
            .find_map(|unit| visit(unit, self, &mut marks, &mut Vec::new()))
    }
}

/// What a tag of this manifest names.
enum Target {
    /// A platform's own tag.
    Platform(PlatformIdentity),
    /// An image's shared tag: whichever of its platforms a build on the pulling platform gets.
    Image(Vec<PlatformIdentity>),
}

/// The images of a manifest by the names a `FROM` line gives them: `{registry}/{repo}:{tag}`.
pub struct ManifestImages {
    names: HashMap<String, Target>,
}

impl ManifestImages {
    pub fn new(manifest: &Manifest) -> Self {
        let mut names = HashMap::new();
        let registry = manifest.registry.as_deref();
        for repo in &manifest.repos {
            let name = repo.qualified_name(registry);
            for image in &repo.images {
                let platforms: Vec<PlatformIdentity> = image
                    .platforms
                    .iter()
                    .map(|entry| entry.identity())
                    .collect();
                for tag in image.shared_tags.keys() {
                    names.insert(format!("{name}:{tag}"), Target::Image(platforms.clone()));
                }
                for entry in &image.platforms {
                    for tag in entry.tags.keys() {
                        names.insert(format!("{name}:{tag}"), Target::Platform(entry.identity()));
                    }
                }
            }
        }
        Self { names }
    }

    /// The unit of this manifest that `image` (a `FROM` line's image) names when `unit` is built, if any. A name
    /// without tag means `latest`; a name pinned by digest names a fixed image, never one being built.
    pub fn unit_named(&self, image: &str, unit: &PlatformIdentity) -> Option<PlatformIdentity> {
        if image.contains('@') {
            return None;
        }
        let last_component = image.rsplit('/').next().unwrap_or(image);
        let key = if last_component.contains(':') {
            image.to_owned()
        } else {
            format!("{image}:latest")
        };
        match self.names.get(&key)? {
            Target::Platform(identity) => Some(identity.clone()),
            Target::Image(platforms) => {
                let same_platform: Vec<&PlatformIdentity> = platforms
                    .iter()
                    .filter(|candidate| same_machine(candidate, unit))
                    .collect();
                same_platform
                    .iter()
                    .find(|candidate| candidate.os_version == unit.os_version)
                    .or(same_platform.first())
                    .map(|&candidate| candidate.clone())
            }
        }
    }

    /// What `unit` is built from, given the images its `FROM` lines name (earlier stages and `scratch` left out)
    /// and the image its final stage is built from. A name of `unit` itself (a Dockerfile built from its own
    /// published image) is an image from elsewhere: it is pulled, not built first.
    pub fn bases(
        &self,
        unit: &PlatformIdentity,
        images: &[String],
        final_image: Option<&str>,
    ) -> UnitBases {
        let of_manifest = |image: &str| self.unit_named(image, unit).filter(|named| named != unit);
        let mut seen = BTreeSet::new();
        let units = images
            .iter()
            .filter_map(|image| of_manifest(image))
            .filter(|named| seen.insert(named.clone()))
            .collect();
        let final_base = final_image.map(|image| match of_manifest(image) {
            Some(named) => BaseImage::Unit(named),
            None => BaseImage::External(image.to_owned()),
        });
        UnitBases { units, final_base }
    }
}

/// Whether two units build for the same OCI platform (os, architecture and variant as clients compare them):
/// what one machine builds together.
pub fn same_machine(left: &PlatformIdentity, right: &PlatformIdentity) -> bool {
    left.os == right.os
        && left.architecture == right.architecture
        && normalized_variant(&left.architecture, left.variant.as_deref())
            == normalized_variant(&right.architecture, right.variant.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        serde_json::from_str(
            r#"{"registry": "registry.example", "repos": [
              {"name": "acme/base", "images": [{"sharedTags": {"1": {}, "latest": {}}, "platforms": [
                {"dockerfile": "base/amd64", "os": "linux", "osVersion": "bookworm", "tags": {"1-amd64": {}}},
                {"dockerfile": "base/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64",
                 "variant": "v8", "tags": {"1-arm64v8": {}}}]}]},
              {"name": "acme/app", "images": [{"platforms": [
                {"dockerfile": "app/amd64", "os": "linux", "osVersion": "bookworm", "tags": {"app-amd64": {}}},
                {"dockerfile": "app/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64",
                 "tags": {"app-arm64": {}}}]}]}]}"#,
        )
        .expect("test manifest parses")
    }

    fn unit(manifest: &Manifest, repo: usize, platform: usize) -> PlatformIdentity {
        manifest.repos[repo].images[0].platforms[platform].identity()
    }

    #[test]
    fn from_names_find_platforms_by_tag_and_shared_tag() {
        let manifest = manifest();
        let images = ManifestImages::new(&manifest);
        let (base_amd64, base_arm64) = (unit(&manifest, 0, 0), unit(&manifest, 0, 1));
        let (app_amd64, app_arm64) = (unit(&manifest, 1, 0), unit(&manifest, 1, 1));
        let cases = [
            (
                "registry.example/acme/base:1-amd64",
                &app_amd64,
                Some(&base_amd64),
            ),
            (
                "registry.example/acme/base:1-amd64",
                &app_arm64,
                Some(&base_amd64),
            ),
            // The shared tag resolves per platform; `arm64` without variant is `arm64/v8`.
            (
                "registry.example/acme/base:1",
                &app_arm64,
                Some(&base_arm64),
            ),
            ("registry.example/acme/base", &app_amd64, Some(&base_amd64)),
            ("registry.example/acme/base:2", &app_amd64, None),
            ("other.example/acme/base:1", &app_amd64, None),
            ("debian:bookworm", &app_amd64, None),
        ];
        for (image, building, expected) in cases {
            assert_eq!(
                images.unit_named(image, building).as_ref(),
                expected,
                "{image} for {building}"
            );
        }
        let pinned = format!("registry.example/acme/base:1@sha256:{}", "0".repeat(64));
        assert_eq!(images.unit_named(&pinned, &app_amd64), None);
    }

    #[test]
    fn bases_list_units_once_and_the_final_image() {
        let manifest = manifest();
        let images = ManifestImages::new(&manifest);
        let app = unit(&manifest, 1, 0);
        let from = [
            "debian:bookworm".to_owned(),
            "registry.example/acme/base:1".to_owned(),
            "registry.example/acme/base:1-amd64".to_owned(),
            "registry.example/acme/app:app-amd64".to_owned(),
        ];
        let bases = images.bases(&app, &from, Some("registry.example/acme/base:1"));
        assert_eq!(bases.units, [unit(&manifest, 0, 0)]);
        assert_eq!(
            bases.final_base,
            Some(BaseImage::Unit(unit(&manifest, 0, 0)))
        );
        let own = images.bases(&app, &[], Some("registry.example/acme/app:app-amd64"));
        assert_eq!(
            own.final_base,
            Some(BaseImage::External(
                "registry.example/acme/app:app-amd64".into()
            ))
        );
    }

    #[test]
    fn cycles_are_found() {
        let manifest = manifest();
        let (a, b) = (unit(&manifest, 0, 0), unit(&manifest, 1, 0));
        let mut dependencies = Dependencies::default();
        dependencies.insert(
            a.clone(),
            UnitBases {
                units: vec![b.clone()],
                final_base: None,
            },
        );
        assert_eq!(dependencies.cycle(), None);
        dependencies.insert(
            b.clone(),
            UnitBases {
                units: vec![a.clone()],
                final_base: None,
            },
        );
        let cycle = dependencies.cycle().expect("a cycle");
        assert_eq!(cycle.len(), 2);
        assert!(cycle.contains(&a) && cycle.contains(&b), "{cycle:?}");
    }
}
