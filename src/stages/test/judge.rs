//! The checks: what staging holds, as read, judged against what image-info and the manifest say it must hold.
//! Pure: every finding becomes a verdict, so the report lists every failed check at once.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::model::platform::same_platform;
use crate::model::reference::Digest;
use crate::stages::summary;

use super::expected::{Expected, ExpectedIndex, ExpectedPlatform, platform_subject};
use super::staging::{Found, IndexEntry, Probe};
use super::{Check, CheckKind, Verdict};

/// Judges what staging holds against what is expected: one check per platform image, tag and index, each once
/// however many images of image-info list it.
pub(super) fn judge(expected: &[Expected], found: &HashMap<Probe, Found>) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |check: Check| {
        if seen.insert((check.kind, check.subject.clone())) {
            checks.push(check);
        }
    };
    let lookup = |probe: &Probe| found.get(probe).unwrap_or(&Found::Missing);
    for image in expected {
        for platform in &image.platforms {
            add(Check {
                kind: CheckKind::PlatformImage,
                subject: platform_subject(&image.repository, platform),
                verdict: judge_platform(
                    image,
                    platform,
                    lookup(&image.image_probe(&platform.digest)),
                ),
            });
            for tag in &platform.simple_tags {
                let verdict = match lookup(&image.tag_probe(tag)) {
                    Found::Missing => {
                        Verdict::Skipped("not in staging (build legs push by digest)".to_owned())
                    }
                    Found::Tagged(digest) if digest == &platform.digest => {
                        Verdict::Passed(format!("points at `{digest}`"))
                    }
                    Found::Tagged(digest) => Verdict::Failed(format!(
                        "points at `{digest}` in staging, where image-info records `{}`",
                        platform.digest
                    )),
                    other => failed_as(other),
                };
                add(Check {
                    kind: CheckKind::SimpleTag,
                    subject: format!("`{}:{tag}`", image.repository),
                    verdict,
                });
            }
        }
        let declared_shared_tags = image.declared_shared_tags.as_deref().unwrap_or_default();
        match (&image.index, declared_shared_tags.first()) {
            (Some(index), _) => {
                add(Check {
                    kind: CheckKind::Index,
                    subject: format!("`{}@{}`", image.repository, index.digest),
                    verdict: judge_index(image, index, found),
                });
                for tag in &index.shared_tags {
                    let verdict = match lookup(&image.tag_probe(tag)) {
                        Found::Tagged(digest) if digest == &index.digest => {
                            Verdict::Passed(format!("points at the index `{digest}`"))
                        }
                        Found::Tagged(digest) => Verdict::Failed(format!(
                            "points at `{digest}` in staging, where image-info records the index `{}`",
                            index.digest
                        )),
                        Found::Missing => Verdict::Failed(
                            "not in staging, where create-manifest pushes every shared tag"
                                .to_owned(),
                        ),
                        other => failed_as(other),
                    };
                    add(Check {
                        kind: CheckKind::SharedTag,
                        subject: format!("`{}:{tag}`", image.repository),
                        verdict,
                    });
                }
            }
            (None, Some(first)) => add(Check {
                kind: CheckKind::Index,
                subject: format!("`{}:{first}`", image.repository),
                verdict: Verdict::Failed(format!(
                    "the manifest gives the image shared tags {}, and image-info records no index",
                    backticked(declared_shared_tags)
                )),
            }),
            (None, None) => {}
        }
    }
    checks
}

fn failed_as(found: &Found) -> Verdict {
    match found {
        Found::Invalid(reason) => Verdict::Failed(reason.clone()),
        Found::Missing => Verdict::Failed("not in staging".to_owned()),
        Found::Image(_) | Found::Index(_) | Found::Tagged(_) => {
            Verdict::Failed("staging answered something unexpected".to_owned())
        }
    }
}

fn judge_platform(image: &Expected, platform: &ExpectedPlatform, found: &Found) -> Verdict {
    let config = match found {
        Found::Image(config) => config,
        other => return failed_as(other),
    };
    let mut expected_as = Vec::new();
    if !same_platform(&platform.recorded, config, true) {
        expected_as.push(format!("image-info records `{}`", platform.recorded));
    }
    match &platform.declared {
        Some(declared) if !same_platform(declared, config, false) => {
            expected_as.push(format!("the manifest declares `{declared}`"));
        }
        _ => {}
    }
    let mut problems = Vec::new();
    if !expected_as.is_empty() {
        problems.push(format!(
            "its config says `{config}`, where {}",
            expected_as.join(" and ")
        ));
    }
    if platform.declared.is_none() {
        problems.push(format!(
            "the manifest does not declare the repository `{}`",
            image.repository
        ));
    }
    if problems.is_empty() {
        Verdict::Passed(format!("its config says `{config}`"))
    } else {
        Verdict::Failed(problems.join(", and "))
    }
}

/// Each recorded attestation listed once, annotated for its image, and no other entry listed as one.
fn attestation_problems(recorded: &[&ExpectedPlatform], listed: &[&IndexEntry]) -> Vec<String> {
    let listed_for = |entry: &IndexEntry, platform: &ExpectedPlatform| {
        platform.attestation.as_ref().map(Digest::as_str) == Some(entry.digest.as_str())
            && entry.attests.as_deref() == Some(platform.digest.as_str())
    };
    let mut problems = Vec::new();
    for platform in recorded {
        let Some(attestation) = &platform.attestation else {
            continue;
        };
        match listed
            .iter()
            .filter(|entry| listed_for(entry, platform))
            .count()
        {
            0 => problems.push(format!(
                "lacks the attestation `{attestation}` of `{}`",
                platform.digest
            )),
            1 => {}
            count => problems.push(format!(
                "lists the attestation `{attestation}` {count} times"
            )),
        }
    }
    for entry in listed {
        if !recorded.iter().any(|platform| listed_for(entry, platform)) {
            problems.push(format!(
                "lists `{}` as the attestation of `{}`, which image-info does not record",
                entry.digest,
                entry.attests.as_deref().unwrap_or_default()
            ));
        }
    }
    problems
}

fn judge_index(image: &Expected, index: &ExpectedIndex, found: &HashMap<Probe, Found>) -> Verdict {
    let entries = match found.get(&image.index_probe(&index.digest)) {
        Some(Found::Index(entries)) => entries,
        Some(other) => return failed_as(other),
        None => return failed_as(&Found::Missing),
    };
    let (attestations, entries): (Vec<&IndexEntry>, Vec<&IndexEntry>) =
        entries.iter().partition(|entry| entry.attests.is_some());
    let mut problems = Vec::new();
    let mut listed: HashMap<&str, usize> = HashMap::new();
    for entry in &entries {
        *listed.entry(entry.digest.as_str()).or_default() += 1;
    }
    let recorded: Vec<&ExpectedPlatform> = {
        let mut unique = HashSet::new();
        image
            .platforms
            .iter()
            .filter(|platform| unique.insert(&platform.digest))
            .collect()
    };
    for platform in &recorded {
        if !listed.contains_key(platform.digest.as_str()) {
            problems.push(format!(
                "lacks `{}` ({})",
                platform.digest, platform.recorded
            ));
        }
    }
    let mut reported = HashSet::new();
    for entry in &entries {
        if !reported.insert(entry.digest.as_str()) {
            continue;
        }
        let count = listed
            .get(entry.digest.as_str())
            .copied()
            .unwrap_or_default();
        if count > 1 {
            problems.push(format!("lists `{}` {count} times", entry.digest));
        }
        let Some(platform) = recorded
            .iter()
            .find(|platform| platform.digest.as_str() == entry.digest)
        else {
            problems.push(format!(
                "lists `{}`, which image-info does not record for this image",
                entry.digest
            ));
            continue;
        };
        let config = found.get(&image.image_probe(&platform.digest));
        match (&entry.platform, config) {
            (None, _) => problems.push(format!(
                "its entry for `{}` names no platform",
                entry.digest
            )),
            (Some(described), Some(Found::Image(config)))
                if !same_platform(described, config, false) =>
            {
                problems.push(format!(
                    "its entry for `{}` says `{described}`, where that image's config says `{config}`",
                    entry.digest
                ));
            }
            // A platform image that is missing or invalid fails its own check.
            _ => {}
        }
    }
    problems.extend(attestation_problems(&recorded, &attestations));
    if let Some(declared) = &image.declared_shared_tags {
        let declared: BTreeSet<&String> = declared.iter().collect();
        let recorded: BTreeSet<&String> = index.shared_tags.iter().collect();
        if declared != recorded {
            problems.push(format!(
                "image-info records the shared tags {}, where the manifest declares {}",
                backticked(recorded),
                backticked(declared)
            ));
        }
    }
    if problems.is_empty() {
        let attested = match attestations.len() {
            0 => String::new(),
            count => format!(" and {}", summary::count(count, "attestation")),
        };
        Verdict::Passed(format!(
            "lists exactly the {}{attested}",
            summary::count(recorded.len(), "platform")
        ))
    } else {
        Verdict::Failed(problems.join(", and "))
    }
}

/// `` `a`, `b` `` (or `none`).
fn backticked<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|item| format!("`{}`", item.as_ref()))
        .collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{digest, entry, good_staging, image, platform};
    use super::super::report_table;
    use super::*;
    use crate::stages::result_table::Rows;

    fn verdicts(checks: &[Check], kind: CheckKind) -> Vec<&Verdict> {
        checks
            .iter()
            .filter(|check| check.kind == kind)
            .map(|check| &check.verdict)
            .collect()
    }

    fn failures(checks: &[Check]) -> Vec<String> {
        checks
            .iter()
            .filter(|check| check.failed())
            .map(Check::to_string)
            .collect()
    }

    #[test]
    fn good_staging_passes_and_absent_simple_tags_are_skipped() {
        let image = image();
        let checks = judge(std::slice::from_ref(&image), &good_staging(&image));
        assert_eq!(failures(&checks), Vec::<String>::new());
        assert_eq!(checks.len(), 7, "{checks:#?}");
        assert!(
            verdicts(&checks, CheckKind::SimpleTag)
                .iter()
                .all(|verdict| matches!(verdict, Verdict::Skipped(_)))
        );
        let table = report_table(&checks).markdown(Rows::All);
        assert!(table.starts_with("| check | subject | result |\n|---|---|---|\n"));
        assert_eq!(table.lines().count(), 9);
        assert_eq!(report_table(&checks).markdown(Rows::Failed), "");
    }

    #[test]
    fn findings_that_fail() {
        type Breaker = fn(&Expected, &mut HashMap<Probe, Found>);
        let cases: &[(&str, Breaker, &[&str])] = &[
            (
                "a shared tag pointing elsewhere",
                |image, found| {
                    found.insert(image.tag_probe("latest"), Found::Tagged(digest('a')));
                },
                &[&format!(
                    "shared tag `acme/app:latest`: points at `{}` in staging, where image-info records the index `{}`",
                    digest('a'),
                    digest('c')
                )],
            ),
            (
                "a simple tag pointing elsewhere",
                |image, found| {
                    found.insert(image.tag_probe("1-amd64"), Found::Tagged(digest('b')));
                },
                &["simple tag `acme/app:1-amd64`: points at"],
            ),
            (
                "a missing shared tag",
                |image, found| {
                    found.insert(image.tag_probe("1"), Found::Missing);
                },
                &["shared tag `acme/app:1`: not in staging"],
            ),
            (
                "another architecture in a config",
                |image, found| {
                    found.insert(
                        image.image_probe(&digest('b')),
                        Found::Image(platform("linux/s390x")),
                    );
                },
                &[
                    "platform image `acme/app@sha256:bbbb",
                    "its config says `linux/s390x`, where image-info records `linux/arm64/v8`",
                    "its entry for `sha256:bbbb",
                ],
            ),
            (
                "an index lacking a platform and listing another",
                |image, found| {
                    let index = image.index_probe(&digest('c'));
                    found.insert(
                        index,
                        Found::Index(vec![entry('a', "linux/amd64"), entry('d', "linux/arm64")]),
                    );
                },
                &["lacks `sha256:bbbb", "lists `sha256:dddd"],
            ),
            (
                "an index entry without platform",
                |image, found| {
                    let index = image.index_probe(&digest('c'));
                    let mut bare = entry('b', "linux/arm64");
                    bare.platform = None;
                    found.insert(index, Found::Index(vec![entry('a', "linux/amd64"), bare]));
                },
                &["names no platform"],
            ),
            (
                "a missing platform image",
                |image, found| {
                    found.insert(image.image_probe(&digest('a')), Found::Missing);
                },
                &["platform image `acme/app@sha256:aaaa"],
            ),
        ];
        for (case, breaker, expected) in cases {
            let image = image();
            let mut found = good_staging(&image);
            breaker(&image, &mut found);
            let failures = failures(&judge(std::slice::from_ref(&image), &found)).join("\n");
            for fragment in *expected {
                assert!(failures.contains(fragment), "{case}: {failures}");
            }
        }
    }

    /// `image()` with attestations `e` and `f` for its platforms, and staging listing `listed` after them.
    fn attested(listed: &[(char, char)]) -> Vec<String> {
        let mut image = image();
        image.platforms[0].attestation = Some(digest('e'));
        image.platforms[1].attestation = Some(digest('f'));
        let mut found = good_staging(&image);
        let mut entries = vec![entry('a', "linux/amd64"), entry('b', "linux/arm64/v8")];
        for (attestation, image) in listed {
            entries.push(IndexEntry {
                digest: digest(*attestation).to_string(),
                platform: Some(platform("unknown/unknown")),
                attests: Some(digest(*image).to_string()),
            });
        }
        found.insert(image.index_probe(&digest('c')), Found::Index(entries));
        let checks = judge(std::slice::from_ref(&image), &found);
        let index = checks
            .iter()
            .find(|check| check.kind == CheckKind::Index)
            .expect("an index check");
        assert_eq!(checks.len(), 7, "attestations are no platform checks");
        match &index.verdict {
            Verdict::Passed(text) => vec![text.clone()],
            _ => failures(&checks),
        }
    }

    #[test]
    fn attestations_are_listed_once_for_their_image_and_not_counted_as_platforms() {
        assert_eq!(
            attested(&[('e', 'a'), ('f', 'b')]),
            ["lists exactly the 2 platforms and 2 attestations"]
        );
        let missing = attested(&[('e', 'a')]).join("\n");
        assert!(
            missing.contains(&format!(
                "lacks the attestation `{}` of `{}`",
                digest('f'),
                digest('b')
            )),
            "{missing}"
        );
        let crossed = attested(&[('e', 'b'), ('f', 'b')]).join("\n");
        assert!(
            crossed.contains(&format!(
                "lists `{}` as the attestation of `{}`, which image-info does not record",
                digest('e'),
                digest('b')
            )),
            "{crossed}"
        );
        let twice = attested(&[('e', 'a'), ('e', 'a'), ('f', 'b')]).join("\n");
        assert!(twice.contains("2 times"), "{twice}");
    }

    #[test]
    fn an_image_with_declared_shared_tags_needs_an_index() {
        let mut image = image();
        image.index = None;
        let checks = judge(std::slice::from_ref(&image), &good_staging(&image));
        assert_eq!(
            failures(&checks),
            [
                "index `acme/app:1`: the manifest gives the image shared tags `1`, `latest`, and image-info records no index"
            ]
        );
    }

    #[test]
    fn platforms_are_compared_with_image_info_and_the_manifest() {
        let mut image = image();
        // image-info 1.0 records no variant, and `arm32` for 32-bit ARM.
        image.platforms[1].recorded = platform("Linux/arm64");
        let found = good_staging(&image);
        assert_eq!(
            failures(&judge(std::slice::from_ref(&image), &found)),
            Vec::<String>::new()
        );
        image.platforms[1].declared = Some(platform("linux/arm64/v9"));
        assert_eq!(
            failures(&judge(std::slice::from_ref(&image), &found)),
            [format!(
                "platform image `acme/app@{}` (linux/arm64): its config says `linux/arm64/v8`, where the manifest declares `linux/arm64/v9`",
                digest('b')
            )]
        );
        let mut undeclared = self::image();
        undeclared.declared_shared_tags = None;
        for platform in &mut undeclared.platforms {
            platform.declared = None;
        }
        let failed = failures(&judge(std::slice::from_ref(&undeclared), &found));
        assert_eq!(failed.len(), 2, "{failed:#?}");
        assert!(failed[0].ends_with("the manifest does not declare the repository `acme/app`"));
    }
}
