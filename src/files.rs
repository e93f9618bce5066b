//! Reading JSON files with errors that point into them, and writing files atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::issue::{Issue, JsonPath};
use crate::model::reference::Digest;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read `{file}`", file = .file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{issue}")]
    Parse { issue: Issue },
    #[error("cannot write `{file}`", file = .file.display())]
    Write {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads and parses `file`; a parse error names the JSON path where it stands. `expected` describes the
/// document for messages that serde cannot make specific ("an image-info.json document").
pub fn read<T: DeserializeOwned>(file: &Path, expected: &str) -> Result<T, FileError> {
    let bytes = std::fs::read(file).map_err(|source| FileError::Read {
        file: file.to_owned(),
        source,
    })?;
    parse(&bytes, file, expected)
}

pub fn parse<T: DeserializeOwned>(
    bytes: &[u8],
    file: &Path,
    expected: &str,
) -> Result<T, FileError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        // serde_path_to_error writes the root as ".", and a key or element it had not yet entered when the
        // input broke off (a syntax error) as "?": the path is where it stood.
        let text = error.path().to_string();
        let text = text.strip_suffix(".?").unwrap_or(&text);
        let path = if text == "." || text == "?" {
            JsonPath::root()
        } else {
            JsonPath::from(text)
        };
        FileError::Parse {
            issue: issue_of(file, path, error.inner(), expected),
        }
    })?;
    deserializer.end().map_err(|error| FileError::Parse {
        issue: issue_of(file, JsonPath::root(), &error, expected),
    })?;
    Ok(value)
}

fn issue_of(file: &Path, path: JsonPath, error: &serde_json::Error, expected: &str) -> Issue {
    if error.is_syntax() || error.is_eof() {
        Issue::new(
            file,
            path,
            format!(
                "a syntax error at line {}, column {} ({})",
                error.line(),
                error.column(),
                message_of(error)
            ),
            "well-formed JSON",
        )
    } else {
        Issue::from_serde(file, path, &message_of(error), expected)
    }
}

/// serde_json's message without its " at line L column C" suffix, which the path replaces.
fn message_of(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    message
        .trim_start_matches("invalid type: ")
        .trim_start_matches("invalid value: ")
        .to_owned()
}

/// The JSON text this product writes: two-space indentation and a final newline.
pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Our types serialize to JSON infallibly: string keys only, no non-finite floats.
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Writes `value` to `file` through a temporary file in the same folder and a rename, so a reader sees the old
/// file or the new one, never half of one. Returns the digest of the bytes written.
pub fn write_atomically<T: Serialize>(file: &Path, value: &T) -> Result<Digest, FileError> {
    write_bytes_atomically(file, &to_bytes(value), 0o644)
}

/// Writes `bytes` atomically (as [`write_atomically`]) with permission bits `mode`.
pub fn write_bytes_atomically(file: &Path, bytes: &[u8], mode: u32) -> Result<Digest, FileError> {
    use std::os::unix::fs::PermissionsExt as _;
    let error = |source| FileError::Write {
        file: file.to_owned(),
        source,
    };
    let folder = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(folder).map_err(error)?;
    let mut temporary = tempfile::Builder::new()
        .prefix(".imagepipe-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(folder)
        .map_err(error)?;
    temporary.write_all(bytes).map_err(error)?;
    temporary.as_file().sync_all().map_err(error)?;
    temporary
        .persist(file)
        .map_err(|persist| error(persist.error))?;
    Ok(Digest::of(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        #[allow(dead_code)]
        repos: Vec<BTreeMap<String, u32>>,
    }

    fn parse_error(text: &str) -> Issue {
        match parse::<Doc>(text.as_bytes(), Path::new("f.json"), "a test document") {
            Err(FileError::Parse { issue }) => issue,
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn type_errors_name_the_path() {
        let issue = parse_error(r#"{"repos": [{"a": 1}, {"b": "x"}]}"#);
        assert_eq!(issue.path.to_string(), "repos[1].b");
        assert_eq!(issue.found, "string \"x\"");
        assert_eq!(issue.expected, "u32");
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let issue = parse_error("{\"repos\": [\n  {\"a\": 1,}\n]}");
        assert!(
            issue.found.starts_with("a syntax error at line 2, column"),
            "{}",
            issue.found
        );
        let missing = parse_error("{}");
        assert_eq!(missing.path.to_string(), "(root)");
        assert_eq!(missing.found, "missing field `repos`");
        // Cut off where a key or element would start: the path is where the parser stood, with no `?`.
        for (text, path) in [
            ("{\"repos\": [{\"a\": 1}, ", "repos"),
            ("{\"repos\": [{", "repos[0]"),
            ("{\"repos\": [{\"a\"", "repos[0]"),
            ("{", "(root)"),
        ] {
            assert_eq!(parse_error(text).path.to_string(), path, "{text}");
        }
        let trailing = parse_error(r#"{"repos": []} x"#);
        assert!(
            trailing.found.contains("trailing characters"),
            "{}",
            trailing.found
        );
    }

    #[test]
    fn writes_replace_the_file_whole() {
        let folder = tempfile::tempdir().expect("temp dir");
        let file = folder.path().join("nested/out.json");
        let digest =
            write_atomically(&file, &serde_json::json!({"b": 1, "a": [1]})).expect("writes");
        let written = std::fs::read(&file).expect("reads back");
        assert_eq!(written, b"{\n  \"a\": [\n    1\n  ],\n  \"b\": 1\n}\n");
        assert_eq!(digest, Digest::of(&written));
        let leftovers = std::fs::read_dir(file.parent().expect("parent"))
            .expect("lists")
            .count();
        assert_eq!(leftovers, 1, "no temporary file may remain");
    }
}
