//! Build legs: what `imagepipe matrix` fans out, one CI job each.
//!
//! A *build unit* is one Dockerfile built for one platform. ImageBuilder manifests declare a unit under each
//! image (manifest list) that includes it, so a unit has one or more positions in the manifest; it is built
//! once. A *leg* is what one machine builds: units of one OCI platform that are built `FROM` one another, bases
//! first. Units that share no base go in separate legs, so legs run in parallel; a base shared by several units
//! goes in one leg with all of them (the connected components of the `FROM` graph within a platform).

use std::collections::{BTreeSet, HashMap};

use super::dependencies::{Dependencies, same_machine};
use super::leg_names::{LabelContext, UniqueNames, leg_name};
use super::manifest::Manifest;
use super::path_glob;
use super::platform::{Platform, PlatformIdentity, canonical_architecture, canonical_os};
use super::platform_record::{dockerfile_folder, dockerfile_path};

/// Where a unit is declared: `repos[repo].images[image].platforms[platform]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManifestPosition {
    pub repo: usize,
    pub image: usize,
    pub platform: usize,
}

/// One Dockerfile for one platform, built once however many images declare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildUnit {
    pub identity: PlatformIdentity,
    /// Every declaration of it, in the manifest's order.
    pub positions: Vec<ManifestPosition>,
    /// The units of its leg it is built from: indexes into [`Leg::units`], each before this one.
    pub bases: Vec<usize>,
    /// Unchanged since the published record: not built again (see [`leave_out_cached`]).
    pub cached: bool,
}

impl BuildUnit {
    /// The folder holding its Dockerfile, as the manifest names it.
    pub fn folder(&self) -> String {
        dockerfile_folder(&self.identity.dockerfile)
    }
}

/// What one machine builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// `linux-bookworm-arm64v8-app`: lowercase letters, digits and `-`, unique among the legs planned together.
    pub name: String,
    /// `linux` or `windows`.
    pub os: String,
    /// The OS version of the first unit built.
    pub os_version: String,
    /// OCI's name: `arm64`, `arm`.
    pub architecture: String,
    pub variant: Option<String>,
    /// In build order: bases first.
    pub units: Vec<BuildUnit>,
}

impl Leg {
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }

    /// The units to build: those not cached, in build order.
    pub fn to_build(&self) -> impl Iterator<Item = &BuildUnit> {
        self.units.iter().filter(|unit| !unit.cached)
    }
}

/// Which units to plan. A unit that matches brings the units it is built from into its leg, whether they match
/// or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// `linux` or `windows`, compared without case.
    pub os_type: Option<String>,
    /// An OS version or a pattern of one (`*bookworm*`).
    pub os_version: Option<String>,
    /// Compared as OCI names it (`x86_64` is `amd64`, `arm32` is `arm`).
    pub architecture: Option<String>,
    /// Patterns of Dockerfile folders or files (see [`path_glob`]); any may match. None: every folder.
    pub paths: Vec<String>,
}

impl Filters {
    pub fn selects(&self, unit: &PlatformIdentity) -> bool {
        let os_ok = self
            .os_type
            .as_deref()
            .is_none_or(|os| canonical_os(os) == unit.os);
        let os_version_ok = self
            .os_version
            .as_deref()
            .is_none_or(|pattern| path_glob::matches(pattern, &unit.os_version));
        let architecture_ok = self
            .architecture
            .as_deref()
            .is_none_or(|architecture| canonical_architecture(architecture) == unit.architecture);
        let (folder, file) = (
            dockerfile_folder(&unit.dockerfile),
            dockerfile_path(&unit.dockerfile),
        );
        let path_ok = self.paths.is_empty()
            || self.paths.iter().any(|pattern| {
                path_glob::matches(pattern, &folder) || path_glob::matches(pattern, &file)
            });
        os_ok && os_version_ok && architecture_ok && path_ok
    }
}

/// The legs that build what `filters` select of `manifest`, in the manifest's order (by the first declaration
/// of any of their units).
pub fn plan_legs(manifest: &Manifest, dependencies: &Dependencies, filters: &Filters) -> Vec<Leg> {
    let units = declared_units(manifest);
    let index: HashMap<&PlatformIdentity, usize> = units
        .iter()
        .enumerate()
        .map(|(at, unit)| (&unit.identity, at))
        .collect();
    // Bases one machine builds: units of this manifest for the same platform. A base for another platform is
    // pulled, as an image from elsewhere is.
    let bases: Vec<Vec<usize>> = units
        .iter()
        .enumerate()
        .map(|(at, unit)| {
            let mut found: Vec<usize> = dependencies
                .bases_of(&unit.identity)
                .iter()
                .filter_map(|base| index.get(base).copied())
                .filter(|&base| base != at && same_machine(&units[base].identity, &unit.identity))
                .collect();
            found.sort_unstable();
            found.dedup();
            found
        })
        .collect();

    let mut selected = vec![false; units.len()];
    let mut pending: Vec<usize> = (0..units.len())
        .filter(|&at| filters.selects(&units[at].identity))
        .collect();
    while let Some(at) = pending.pop() {
        if !std::mem::replace(&mut selected[at], true) {
            pending.extend(&bases[at]);
        }
    }

    let mut groups = Groups::new(units.len());
    for (at, unit_bases) in bases.iter().enumerate() {
        if selected[at] {
            for &base in unit_bases {
                groups.join(at, base);
            }
        }
    }
    let mut components: Vec<Vec<usize>> = Vec::new();
    let mut component_of: HashMap<usize, usize> = HashMap::new();
    for at in (0..units.len()).filter(|&at| selected[at]) {
        let root = groups.root(at);
        let component = *component_of.entry(root).or_insert_with(|| {
            components.push(Vec::new());
            components.len() - 1
        });
        components[component].push(at);
    }

    let label_context = LabelContext::new(manifest, &units);
    let mut names = UniqueNames::default();
    components
        .iter()
        .map(|members| {
            let order = build_order(members, &bases);
            let leg_units = order
                .iter()
                .map(|&at| BuildUnit {
                    bases: bases[at]
                        .iter()
                        .filter_map(|base| order.iter().position(|member| member == base))
                        .collect(),
                    ..units[at].clone()
                })
                .collect::<Vec<_>>();
            let first = &leg_units[0];
            let identity = &first.identity;
            let name = names.take(&leg_name(identity, &label_context.label(first)));
            Leg {
                name,
                os: identity.os.clone(),
                os_version: identity.os_version.clone(),
                architecture: identity.architecture.clone(),
                variant: identity.variant.clone(),
                units: leg_units,
            }
        })
        .collect()
}

/// Marks the units `is_cached` says are unchanged, and drops the legs left with nothing to build.
pub fn leave_out_cached(legs: Vec<Leg>, is_cached: impl Fn(&PlatformIdentity) -> bool) -> Vec<Leg> {
    legs.into_iter()
        .filter_map(|mut leg| {
            for unit in &mut leg.units {
                unit.cached = is_cached(&unit.identity);
            }
            let builds_something = leg.to_build().next().is_some();
            builds_something.then_some(leg)
        })
        .collect()
}

/// Every unit of the manifest, in the order of its first declaration.
fn declared_units(manifest: &Manifest) -> Vec<BuildUnit> {
    let mut units: Vec<BuildUnit> = Vec::new();
    let mut index: HashMap<PlatformIdentity, usize> = HashMap::new();
    for (repo, declared_repo) in manifest.repos.iter().enumerate() {
        for (image, declared_image) in declared_repo.images.iter().enumerate() {
            for (platform, entry) in declared_image.platforms.iter().enumerate() {
                let position = ManifestPosition {
                    repo,
                    image,
                    platform,
                };
                let identity = entry.identity();
                let at = *index.entry(identity.clone()).or_insert_with(|| {
                    units.push(BuildUnit {
                        identity,
                        positions: Vec::new(),
                        bases: Vec::new(),
                        cached: false,
                    });
                    units.len() - 1
                });
                units[at].positions.push(position);
            }
        }
    }
    units
}

/// `members` (ascending) with every unit after its bases; among units ready together, the one declared first.
/// Units in a cycle (which reading the Dockerfiles refuses) follow in the manifest's order.
fn build_order(members: &[usize], bases: &[Vec<usize>]) -> Vec<usize> {
    let member_set: BTreeSet<usize> = members.iter().copied().collect();
    let mut waiting: HashMap<usize, usize> = members
        .iter()
        .map(|&at| {
            let count = bases[at]
                .iter()
                .filter(|base| member_set.contains(base))
                .count();
            (at, count)
        })
        .collect();
    let mut ready: BTreeSet<usize> = members
        .iter()
        .copied()
        .filter(|at| waiting[at] == 0)
        .collect();
    let mut order = Vec::with_capacity(members.len());
    while let Some(at) = ready.pop_first() {
        order.push(at);
        for &dependent in members {
            if bases[dependent].contains(&at) {
                let count = waiting.entry(dependent).or_default();
                *count -= 1;
                if *count == 0 {
                    ready.insert(dependent);
                }
            }
        }
    }
    if order.len() < members.len() {
        let placed: BTreeSet<usize> = order.iter().copied().collect();
        order.extend(members.iter().filter(|at| !placed.contains(at)));
    }
    order
}

/// Union-find over unit indexes.
struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    fn new(size: usize) -> Self {
        Self {
            parent: (0..size).collect(),
        }
    }

    fn root(&mut self, mut at: usize) -> usize {
        while self.parent[at] != at {
            self.parent[at] = self.parent[self.parent[at]];
            at = self.parent[at];
        }
        at
    }

    /// Joins two groups under the smaller root, so roots stay the first-declared members.
    fn join(&mut self, left: usize, right: usize) {
        let (left, right) = (self.root(left), self.root(right));
        let (low, high) = (left.min(right), left.max(right));
        self.parent[high] = low;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dependencies::UnitBases;

    /// `acme/base` for amd64 and arm64/v8 under two images (`1` and `latest`), `acme/app` built from it, and
    /// `acme/tool` built from nothing of the manifest; app is declared first.
    const MANIFEST: &str = r#"{"registry": "registry.example", "repos": [
      {"name": "acme/app", "images": [{"platforms": [
        {"dockerfile": "src/app/amd64", "os": "linux", "osVersion": "bookworm", "tags": {"app-amd64": {}}},
        {"dockerfile": "src/app/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64",
         "variant": "v8", "tags": {"app-arm64v8": {}}}]}]},
      {"name": "acme/base", "images": [
        {"sharedTags": {"1": {}}, "platforms": [
          {"dockerfile": "src/base/amd64", "os": "linux", "osVersion": "bookworm", "tags": {"1-amd64": {}}},
          {"dockerfile": "src/base/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64",
           "variant": "v8", "tags": {"1-arm64v8": {}}}]},
        {"sharedTags": {"latest": {}}, "platforms": [
          {"dockerfile": "src/base/amd64", "os": "linux", "osVersion": "bookworm"},
          {"dockerfile": "src/base/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64",
           "variant": "v8"}]}]},
      {"name": "acme/tool", "images": [{"platforms": [
        {"dockerfile": "src/tool/amd64", "os": "linux", "osVersion": "alpine3.20", "tags": {"tool": {}}},
        {"dockerfile": "src/tool/win", "os": "windows", "osVersion": "nanoserver-ltsc2022", "tags": {"tool-win": {}}}]}]}
    ]}"#;

    fn manifest(text: &str) -> Manifest {
        serde_json::from_str(text).expect("test manifest parses")
    }

    fn identity(
        manifest: &Manifest,
        repo: usize,
        image: usize,
        platform: usize,
    ) -> PlatformIdentity {
        manifest.repos[repo].images[image].platforms[platform].identity()
    }

    /// A declaration by `(repo, image, platform)`.
    type At = (usize, usize, usize);

    /// Each `(dependent, base)`: the dependent built from the base.
    fn dependencies(manifest: &Manifest, edges: &[(At, At)]) -> Dependencies {
        let mut dependencies = Dependencies::default();
        let mut bases: HashMap<PlatformIdentity, Vec<PlatformIdentity>> = HashMap::new();
        for ((dr, di, dp), (br, bi, bp)) in edges {
            bases
                .entry(identity(manifest, *dr, *di, *dp))
                .or_default()
                .push(identity(manifest, *br, *bi, *bp));
        }
        for (unit, units) in bases {
            dependencies.insert(
                unit,
                UnitBases {
                    units,
                    final_base: None,
                },
            );
        }
        dependencies
    }

    fn summary(legs: &[Leg]) -> Vec<(String, Vec<String>)> {
        legs.iter()
            .map(|leg| {
                let units = leg.units.iter().map(BuildUnit::folder).collect();
                (leg.name.clone(), units)
            })
            .collect()
    }

    fn app_from_base(manifest: &Manifest) -> Dependencies {
        dependencies(manifest, &[((0, 0, 0), (1, 0, 0)), ((0, 0, 1), (1, 1, 1))])
    }

    #[test]
    fn a_unit_and_its_bases_build_on_one_machine_bases_first() {
        let manifest = manifest(MANIFEST);
        let legs = plan_legs(&manifest, &app_from_base(&manifest), &Filters::default());
        assert_eq!(
            summary(&legs),
            [
                (
                    "linux-bookworm-amd64-base".into(),
                    vec!["src/base/amd64".into(), "src/app/amd64".into()]
                ),
                (
                    "linux-bookworm-arm64v8-base".into(),
                    vec!["src/base/arm64v8".into(), "src/app/arm64v8".into()]
                ),
                (
                    "linux-alpine3-20-amd64-tool".into(),
                    vec!["src/tool/amd64".into()]
                ),
                (
                    "windows-nanoserver-ltsc2022-amd64-tool-win".into(),
                    vec!["src/tool/win".into()]
                ),
            ]
        );
        let amd64 = &legs[0];
        assert_eq!(amd64.units[0].bases, Vec::<usize>::new());
        assert_eq!(amd64.units[1].bases, [0]);
        assert_eq!(amd64.platform().to_string(), "linux/amd64");
        assert_eq!(legs[1].platform().to_string(), "linux/arm64/v8");
        // Declared under two images, built once.
        let base = &amd64.units[0];
        let positions: Vec<(usize, usize, usize)> = base
            .positions
            .iter()
            .map(|position| (position.repo, position.image, position.platform))
            .collect();
        assert_eq!(positions, [(1, 0, 0), (1, 1, 0)]);
    }

    #[test]
    fn without_dependencies_every_unit_is_its_own_leg() {
        let manifest = manifest(MANIFEST);
        let legs = plan_legs(&manifest, &Dependencies::default(), &Filters::default());
        assert_eq!(legs.len(), 6);
        assert!(legs.iter().all(|leg| leg.units.len() == 1));
        assert_eq!(legs[0].name, "linux-bookworm-amd64-app");
    }

    #[test]
    fn a_shared_base_joins_its_dependents_and_others_stay_apart() {
        let text = r#"{"repos": [{"name": "acme/all", "images": [{"platforms": [
            {"dockerfile": "a", "os": "linux", "tags": {"a": {}}},
            {"dockerfile": "b", "os": "linux", "tags": {"b": {}}},
            {"dockerfile": "c", "os": "linux", "tags": {"c": {}}},
            {"dockerfile": "d", "os": "linux", "tags": {"d": {}}},
            {"dockerfile": "e", "os": "linux", "tags": {"e": {}}},
            {"dockerfile": "f", "os": "linux", "architecture": "arm64", "tags": {"f": {}}}]}]}]}"#;
        let manifest = manifest(text);
        // c and b from a, d from c: one leg, a first, d after c. e alone. f (arm64) from a: another machine.
        let dependencies = dependencies(
            &manifest,
            &[
                ((0, 0, 2), (0, 0, 0)),
                ((0, 0, 1), (0, 0, 0)),
                ((0, 0, 3), (0, 0, 2)),
                ((0, 0, 5), (0, 0, 0)),
            ],
        );
        let legs = plan_legs(&manifest, &dependencies, &Filters::default());
        assert_eq!(
            summary(&legs),
            [
                (
                    "linux-amd64-a".into(),
                    vec!["a".into(), "b".into(), "c".into(), "d".into()]
                ),
                ("linux-amd64-e".into(), vec!["e".into()]),
                ("linux-arm64-f".into(), vec!["f".into()]),
            ]
        );
        let bases: Vec<&[usize]> = legs[0]
            .units
            .iter()
            .map(|unit| unit.bases.as_slice())
            .collect();
        assert_eq!(bases, [&[][..], &[0], &[0], &[2]]);
    }

    #[test]
    fn names_are_unique_and_plain() {
        let text = r#"{"repos": [
            {"name": "acme/Web", "images": [{"platforms": [
                {"dockerfile": "amd64", "os": "Linux", "osVersion": "Bookworm_Slim", "tags": {"x": {}}}]}]},
            {"name": "other/web", "images": [{"platforms": [
                {"dockerfile": "web/amd64", "os": "linux", "osVersion": "bookworm_slim"},
                {"dockerfile": "web-2/amd64", "os": "linux", "osVersion": "bookworm_slim"},
                {"dockerfile": "web/8.0/arm32v7", "os": "linux", "osVersion": "bookworm_slim", "architecture": "arm",
                 "variant": "v7"},
                {"dockerfile": "web/8.0/bookworm_slim-composite/amd64", "os": "linux",
                 "osVersion": "bookworm_slim"}]}]}]}"#;
        let manifest = manifest(text);
        let legs = plan_legs(&manifest, &Dependencies::default(), &Filters::default());
        let names: Vec<&str> = legs.iter().map(|leg| leg.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "linux-bookworm-slim-amd64-web",
                "linux-bookworm-slim-amd64-web-2",
                "linux-bookworm-slim-amd64-web-2-2",
                "linux-bookworm-slim-armv7-web-8-0",
                "linux-bookworm-slim-amd64-web-8-0-composite",
            ]
        );
        let again = plan_legs(&manifest, &Dependencies::default(), &Filters::default());
        assert_eq!(again, legs, "the same input plans the same legs");
    }

    #[test]
    fn long_names_fit_azure() {
        let folder = "a-very-long-folder-name/".repeat(8) + "amd64";
        let text = format!(
            r#"{{"repos": [{{"name": "acme/app", "images": [{{"platforms": [
                {{"dockerfile": "{folder}", "os": "linux"}}, {{"dockerfile": "{folder}/x/..", "os": "linux"}}]}}]}}]}}"#
        );
        let manifest = manifest(&text);
        let legs = plan_legs(&manifest, &Dependencies::default(), &Filters::default());
        for leg in &legs {
            assert!(leg.name.len() <= 100, "{}", leg.name);
            assert!(!leg.name.ends_with('-'), "{}", leg.name);
        }
        assert_ne!(legs[0].name, legs[1].name);
    }

    #[test]
    fn filters_select_units_and_bring_their_bases() {
        let manifest = manifest(MANIFEST);
        let dependencies = app_from_base(&manifest);
        let folders = |filters: Filters| -> Vec<Vec<String>> {
            plan_legs(&manifest, &dependencies, &filters)
                .iter()
                .map(|leg| leg.units.iter().map(BuildUnit::folder).collect())
                .collect()
        };
        let strings = |legs: &[&[&str]]| -> Vec<Vec<String>> {
            legs.iter()
                .map(|units| units.iter().map(|unit| (*unit).to_owned()).collect())
                .collect()
        };
        let paths = |paths: &[&str]| Filters {
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
            ..Filters::default()
        };
        assert_eq!(
            folders(paths(&["src/app/*"])),
            strings(&[
                &["src/base/amd64", "src/app/amd64"],
                &["src/base/arm64v8", "src/app/arm64v8"]
            ])
        );
        assert_eq!(
            folders(paths(&["src/base/amd64"])),
            strings(&[&["src/base/amd64"]])
        );
        assert_eq!(
            folders(paths(&["src/**/amd64", "src/tool/win/Dockerfile"])),
            strings(&[
                &["src/base/amd64", "src/app/amd64"],
                &["src/tool/amd64"],
                &["src/tool/win"]
            ])
        );
        assert_eq!(
            folders(Filters {
                architecture: Some("aarch64".into()),
                ..Filters::default()
            }),
            strings(&[&["src/base/arm64v8", "src/app/arm64v8"]])
        );
        assert_eq!(
            folders(Filters {
                os_type: Some("Windows".into()),
                ..Filters::default()
            }),
            strings(&[&["src/tool/win"]])
        );
        assert_eq!(
            folders(Filters {
                os_type: Some("linux".into()),
                os_version: Some("alpine*".into()),
                architecture: Some("x86_64".into()),
                ..Filters::default()
            }),
            strings(&[&["src/tool/amd64"]])
        );
        assert!(folders(paths(&["src/nothing"])).is_empty());
    }

    #[test]
    fn cached_units_stay_marked_and_legs_without_work_go() {
        let manifest = manifest(MANIFEST);
        let legs = plan_legs(&manifest, &app_from_base(&manifest), &Filters::default());
        let unchanged: BTreeSet<PlatformIdentity> = [
            identity(&manifest, 1, 0, 0),
            identity(&manifest, 1, 0, 1),
            identity(&manifest, 0, 0, 1),
            identity(&manifest, 2, 0, 1),
        ]
        .into();
        let left = leave_out_cached(legs, |unit| unchanged.contains(unit));
        let names: Vec<&str> = left.iter().map(|leg| leg.name.as_str()).collect();
        assert_eq!(
            names,
            ["linux-bookworm-amd64-base", "linux-alpine3-20-amd64-tool"]
        );
        let built: Vec<String> = left[0].to_build().map(BuildUnit::folder).collect();
        assert_eq!(built, ["src/app/amd64"]);
        assert!(left[0].units[0].cached);
    }
}
