//! Leg names: `linux-bookworm-arm64v8-app`, readable in a CI system's job list and usable as its job and
//! artifact names (lowercase letters, digits and `-`; Azure takes them with `_` for `-`).

use std::collections::BTreeSet;

use super::legs::BuildUnit;
use super::manifest::Manifest;
use super::platform::PlatformIdentity;
use super::platform_record::architecture_name;

/// The longest leg name: Azure Pipelines refuses matrix configuration names past 100 characters.
const NAME_MAX_LENGTH: usize = 100;
/// Room kept for a `-N` suffix that makes a name unique.
const SUFFIX_ROOM: usize = 6;

/// What a leg's name says of its first unit beyond its platform: the Dockerfile's folder without the part all
/// folders of the manifest share (`src/`) and without the parts the platform already says (`amd64`,
/// `bookworm-slim`); the repository's last name where nothing is left.
pub struct LabelContext<'a> {
    manifest: &'a Manifest,
    shared_prefix: usize,
}

impl<'a> LabelContext<'a> {
    pub fn new(manifest: &'a Manifest, units: &[BuildUnit]) -> Self {
        let mut prefix: Option<Vec<String>> = None;
        for unit in units {
            let folder = unit.folder();
            let components: Vec<&str> = folder.split('/').collect();
            let parents = &components[..components.len().saturating_sub(1)];
            prefix = Some(match prefix {
                None => parents.iter().map(|&part| part.to_owned()).collect(),
                Some(prefix) => prefix
                    .into_iter()
                    .zip(parents)
                    .take_while(|(shared, part)| shared == *part)
                    .map(|(shared, _)| shared)
                    .collect(),
            });
        }
        Self {
            manifest,
            shared_prefix: prefix.map_or(0, |prefix| prefix.len()),
        }
    }

    pub fn label(&self, unit: &BuildUnit) -> String {
        let identity = &unit.identity;
        let variant = identity.variant.as_deref().unwrap_or_default();
        let said: BTreeSet<String> = [
            identity.os.clone(),
            identity.os_version.clone(),
            identity.architecture.clone(),
            format!("{}{variant}", identity.architecture),
            architecture_name(&identity.architecture),
            format!("{}{variant}", architecture_name(&identity.architecture)),
        ]
        .iter()
        .map(|part| name_text(part))
        .collect();
        let folder = unit.folder();
        let parts: Vec<String> = folder
            .split('/')
            .skip(self.shared_prefix)
            .map(name_text)
            .map(|part| without_said_prefix(part, &said))
            .filter(|part| !part.is_empty() && !said.contains(part))
            .collect();
        if !parts.is_empty() {
            return parts.join("-");
        }
        let repo = unit
            .positions
            .first()
            .and_then(|position| self.manifest.repos.get(position.repo))
            .map(|repo| repo.name.rsplit('/').next().unwrap_or_default())
            .unwrap_or_default();
        name_text(repo)
    }
}

/// `part` without a leading part the platform already says: `composite` of `bookworm-slim-composite`.
fn without_said_prefix(part: String, said: &BTreeSet<String>) -> String {
    said.iter()
        .filter(|token| !token.is_empty())
        .filter_map(|token| part.strip_prefix(token.as_str())?.strip_prefix('-'))
        .min_by_key(|rest| rest.len())
        .map_or_else(|| part.clone(), str::to_owned)
}

/// `{os}-{osVersion}-{architecture}{variant}-{label}`, in name characters, within the length Azure allows.
pub fn leg_name(identity: &PlatformIdentity, label: &str) -> String {
    let variant = identity.variant.as_deref().unwrap_or_default();
    let text = [
        identity.os.as_str(),
        identity.os_version.as_str(),
        &format!("{}{variant}", identity.architecture),
        label,
    ]
    .join("-");
    let mut name = name_text(&text);
    name.truncate(NAME_MAX_LENGTH - SUFFIX_ROOM);
    name.trim_end_matches('-').to_owned()
}

/// `text` in lowercase letters, digits and single inner `-`.
fn name_text(text: &str) -> String {
    let mut name = String::with_capacity(text.len());
    for character in text.chars().map(|character| character.to_ascii_lowercase()) {
        if character.is_ascii_lowercase() || character.is_ascii_digit() {
            name.push(character);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    name.trim_end_matches('-').to_owned()
}

/// Names handed out so far: a name taken again gains `-2`, `-3`, … in the order asked.
#[derive(Default)]
pub struct UniqueNames {
    taken: BTreeSet<String>,
}

impl UniqueNames {
    pub fn take(&mut self, name: &str) -> String {
        let mut candidate = name.to_owned();
        let mut number = 1;
        while self.taken.contains(&candidate) {
            number += 1;
            candidate = format!("{name}-{number}");
        }
        self.taken.insert(candidate.clone());
        candidate
    }
}
