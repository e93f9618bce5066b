//! What the pipeline needs to know about a Dockerfile before any builder sees it: the images its `FROM` lines
//! name once `ARG`s are substituted, and the same file with some of those images replaced (a base image of
//! this manifest, pinned to the digest just built in staging).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A Dockerfile the pipeline cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    #[error("`{file}` line {line}: {message}", file = .file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
}

/// One `FROM` line, as a build would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromLine {
    /// 1-based.
    pub line: usize,
    /// The image with `ARG`s substituted (`mcr.microsoft.com/dotnet/runtime:8.0-amd64`, `scratch`), or the name of
    /// an earlier stage.
    pub image: String,
    /// `AS name`, if any.
    pub stage_name: Option<String>,
    /// The image names an earlier stage of the same file, not an image.
    pub earlier_stage: bool,
    /// Where the image text stands in the file, to replace it.
    span: std::ops::Range<usize>,
}

/// Every `FROM` of `text` (read from `file`), with `ARG`s declared before the first `FROM` substituted: their
/// defaults, overridden by `args` (the manifest's `buildArgs` and `--build-arg`).
pub fn from_lines(
    text: &str,
    file: &Path,
    args: &BTreeMap<String, String>,
) -> Result<Vec<FromLine>, DockerfileError> {
    let parsed = parse_dockerfile::parse(text).map_err(|error| DockerfileError::Syntax {
        file: file.to_owned(),
        line: error.line(),
        message: error.to_string(),
    })?;
    let mut values = BTreeMap::new();
    for arg in parsed.global_args() {
        for (name, default) in arg_declarations(&arg.arguments.value) {
            let value = args.get(&name).cloned().or(default);
            if let Some(value) = value {
                values.insert(name, value);
            }
        }
    }
    let mut stages: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    for stage in parsed.stages() {
        let from = stage.from;
        let image = substitute(&from.image.value, &values);
        let stage_name = from.as_.as_ref().map(|(_, name)| name.value.to_string());
        let earlier_stage = stages.iter().any(|name| name.eq_ignore_ascii_case(&image));
        if let Some(name) = &stage_name {
            stages.push(name.clone());
        }
        lines.push(FromLine {
            line: line_of(text, from.image.span.start),
            image,
            stage_name,
            earlier_stage,
            span: from.image.span.clone(),
        });
    }
    Ok(lines)
}

/// `text` with the image of each `FROM` line whose substituted image is a key of `replacements` written as its
/// value instead. Other lines, `AS` names and flags stay as written.
pub fn replace_from_images(
    text: &str,
    lines: &[FromLine],
    replacements: &BTreeMap<String, String>,
) -> String {
    let mut rewritten = String::with_capacity(text.len());
    let mut written = 0;
    for line in lines {
        if line.earlier_stage {
            continue;
        }
        if let Some(replacement) = replacements.get(&line.image) {
            rewritten.push_str(&text[written..line.span.start]);
            rewritten.push_str(replacement);
            written = line.span.end;
        }
    }
    rewritten.push_str(&text[written..]);
    rewritten
}

/// `NAME[=default]` pairs of one `ARG` instruction.
fn arg_declarations(arguments: &str) -> Vec<(String, Option<String>)> {
    arguments
        .split_whitespace()
        .map(|declaration| match declaration.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.trim_matches('"').to_owned())),
            None => (declaration.to_owned(), None),
        })
        .collect()
}

/// `$NAME` and `${NAME}` replaced by their values; unknown names become empty, as in a build.
fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        result.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => (braced, braced.len() + 1),
            }
        } else {
            let end = after
                .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            result.push('$');
        } else {
            result.push_str(values.get(name).map(String::as_str).unwrap_or_default());
        }
        rest = &after[consumed..];
    }
    result.push_str(rest);
    result
}

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOTNET_STYLE: &str = "ARG REPO=mcr.microsoft.com/dotnet/runtime-deps\n\
        # comment\n\
        FROM $REPO:8.0.11-bookworm-slim-amd64 AS installer\n\
        COPY a /a\n\
        FROM ${REPO}:8.0.11-bookworm-slim-amd64\n\
        COPY --from=installer /a /b\n\
        FROM installer\n";

    #[test]
    fn from_lines_substitute_global_args() {
        let file = Path::new("src/runtime/8.0/amd64/Dockerfile");
        let defaults = from_lines(DOTNET_STYLE, file, &BTreeMap::new()).expect("parses");
        let images: Vec<&str> = defaults.iter().map(|line| line.image.as_str()).collect();
        assert_eq!(
            images,
            [
                "mcr.microsoft.com/dotnet/runtime-deps:8.0.11-bookworm-slim-amd64",
                "mcr.microsoft.com/dotnet/runtime-deps:8.0.11-bookworm-slim-amd64",
                "installer"
            ]
        );
        assert_eq!(defaults[0].line, 3);
        assert_eq!(defaults[0].stage_name.as_deref(), Some("installer"));
        assert!(defaults[2].earlier_stage);

        let args = BTreeMap::from([(
            "REPO".to_owned(),
            "127.0.0.1:5000/dotnet/runtime-deps".to_owned(),
        )]);
        let overridden = from_lines(DOTNET_STYLE, file, &args).expect("parses");
        assert_eq!(
            overridden[1].image,
            "127.0.0.1:5000/dotnet/runtime-deps:8.0.11-bookworm-slim-amd64"
        );
    }

    #[test]
    fn replacing_from_images_keeps_everything_else() {
        let file = Path::new("Dockerfile");
        let lines = from_lines(DOTNET_STYLE, file, &BTreeMap::new()).expect("parses");
        let pinned = "127.0.0.1:5000/staging/dotnet/runtime-deps@sha256:00";
        let replacements = BTreeMap::from([(
            "mcr.microsoft.com/dotnet/runtime-deps:8.0.11-bookworm-slim-amd64".to_owned(),
            pinned.to_owned(),
        )]);
        let rewritten = replace_from_images(DOTNET_STYLE, &lines, &replacements);
        assert_eq!(
            rewritten,
            DOTNET_STYLE
                .replace("$REPO:8.0.11-bookworm-slim-amd64", pinned)
                .replace("${REPO}:8.0.11-bookworm-slim-amd64", pinned)
        );
        let again = from_lines(&rewritten, file, &BTreeMap::new()).expect("parses");
        assert_eq!(again[0].image, pinned);
        assert_eq!(again[2].image, "installer");
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let error = from_lines(
            "FROM scratch\nCOPY\n",
            Path::new("bad/Dockerfile"),
            &BTreeMap::new(),
        )
        .expect_err("COPY needs arguments");
        let text = error.to_string();
        assert!(text.starts_with("`bad/Dockerfile` line 2"), "{text}");
    }
}
