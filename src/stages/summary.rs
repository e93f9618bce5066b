//! The markdown table of images that stages add to the CI step or job summary.

use std::fmt::Write;

use crate::model::image_info::ImageInfo;

/// One row per platform and one per manifest list: repository, what it is, digest, tags, signatures.
pub fn image_table(title: &str, info: &ImageInfo) -> String {
    let mut table = format!(
        "### {title}\n\n| repository | image | digest | tags | signatures |\n|---|---|---|---|---|\n"
    );
    for repo in &info.repos {
        for image in &repo.images {
            if let Some(manifest) = &image.manifest {
                let _ = writeln!(
                    table,
                    "| `{}` | manifest list | `{}` | {} | {} |",
                    repo.repo,
                    short_digest(&manifest.digest),
                    tags(&manifest.shared_tags),
                    manifest.signatures.len()
                );
            }
            for platform in &image.platforms {
                let _ = writeln!(
                    table,
                    "| `{}` | {} | `{}` | {} | {} |",
                    repo.repo,
                    platform.identity().platform(),
                    short_digest(&platform.digest),
                    tags(&platform.simple_tags),
                    platform.signatures.len()
                );
            }
        }
    }
    table
}

/// `1 repo`, `2 repos`, `2 indexes`: counts as log lines show them.
pub fn count(number: usize, noun: &str) -> String {
    if number == 1 {
        format!("1 {noun}")
    } else if ["s", "x", "sh", "ch"]
        .iter()
        .any(|ending| noun.ends_with(ending))
    {
        format!("{number} {noun}es")
    } else {
        format!("{number} {noun}s")
    }
}

/// Names in a refusal: all of them up to `limit`, else the first `limit` and how many more, so one line stays
/// readable when a whole release is affected.
pub fn listing(names: &[String], limit: usize) -> String {
    match names.len().checked_sub(limit) {
        Some(more) if more > 0 => format!("{} and {more} more", names[..limit].join(", ")),
        _ => names.join(", "),
    }
}

/// `sha256:` and the first 12 hex digits: enough to tell digests apart in a table.
fn short_digest(reference: &str) -> &str {
    let digest = reference
        .rsplit_once('@')
        .map_or(reference, |(_, digest)| digest);
    digest.get(..19).unwrap_or(digest)
}

fn tags(tags: &[String]) -> String {
    if tags.is_empty() {
        return "–".to_owned();
    }
    tags.iter()
        .map(|tag| format!("`{tag}`"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_name_the_first_few_and_count_the_rest() {
        let names =
            |count: usize| -> Vec<String> { (1..=count).map(|n| format!("`{n}`")).collect() };
        for (count, expected) in [
            (0, ""),
            (1, "`1`"),
            (3, "`1`, `2`, `3`"),
            (4, "`1`, `2`, `3` and 1 more"),
            (10, "`1`, `2`, `3` and 7 more"),
        ] {
            assert_eq!(listing(&names(count), 3), expected, "{count}");
        }
    }

    #[test]
    fn counts_take_their_plural() {
        assert_eq!(count(1, "index"), "1 index");
        assert_eq!(count(208, "index"), "208 indexes");
        assert_eq!(count(0, "image"), "0 images");
        assert_eq!(count(2, "digest"), "2 digests");
    }
}
