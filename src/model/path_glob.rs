//! Path patterns for `--path`: `*` matches within one folder name, `**` any number of folders, `?` one
//! character. A pattern matches a path whole.

/// Whether `path` (components joined by `/`) matches `pattern`. A leading `./` and a trailing `/` on either
/// are ignored.
pub fn matches(pattern: &str, path: &str) -> bool {
    match_components(&components(pattern), &components(path))
}

fn components(text: &str) -> Vec<&str> {
    text.trim_start_matches("./")
        .trim_matches('/')
        .split('/')
        .filter(|component| !component.is_empty())
        .collect()
}

fn match_components(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => {
            (0..=path.len()).any(|skipped| match_components(rest, &path[skipped..]))
        }
        Some((first, rest)) => path.split_first().is_some_and(|(component, path_rest)| {
            match_name(first.as_bytes(), component.as_bytes()) && match_components(rest, path_rest)
        }),
    }
}

/// One folder name against one pattern component, by `*` and `?`.
fn match_name(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skipped| match_name(rest, &name[skipped..])),
        Some((b'?', rest)) => !name.is_empty() && match_name(rest, &name[1..]),
        Some((byte, rest)) => name.first() == Some(byte) && match_name(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_paths() {
        let cases = [
            ("src/app/amd64", "src/app/amd64", true),
            ("./src/app/amd64/", "src/app/amd64", true),
            ("src/app", "src/app/amd64", false),
            ("src/*/amd64", "src/app/amd64", true),
            ("src/*/amd64", "src/app/8.0/amd64", false),
            ("src/**/amd64", "src/app/8.0/amd64", true),
            ("src/**/amd64", "src/amd64", true),
            ("src/**", "src/app/8.0/amd64", true),
            ("**", "src/app", true),
            ("**/arm64v8", "src/app/arm64v8", true),
            (
                "src/runtime/*/bookworm-slim/*",
                "src/runtime/8.0/bookworm-slim/arm32v7",
                true,
            ),
            ("src/runtime/*", "src/runtime-deps/8.0", false),
            ("src/runtime*/8.0", "src/runtime-deps/8.0", true),
            ("src/app/arm??v*", "src/app/arm64v8", true),
            ("src/app/arm?v*", "src/app/arm64v8", false),
            ("*", "", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(matches(pattern, path), expected, "{pattern} vs {path}");
        }
    }
}
