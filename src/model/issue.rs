//! Problems found in an input file, each pointing at the exact place in the JSON.

use std::fmt;
use std::path::{Path, PathBuf};

/// A location inside a JSON document, written as users read it: `repos[2].images[0].platforms[1].architecture`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JsonPath(String);

impl JsonPath {
    pub fn root() -> Self {
        Self::default()
    }

    /// The path of a member of this object.
    pub fn key(&self, name: &str) -> Self {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let segment = if plain {
            name.to_owned()
        } else {
            format!("[{}]", serde_json::Value::from(name))
        };
        match (self.0.is_empty(), plain) {
            (true, true) => Self(segment),
            (false, true) => Self(format!("{}.{segment}", self.0)),
            (_, false) => Self(format!("{}{segment}", self.0)),
        }
    }

    /// The path of an element of this array.
    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(root)")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl From<&str> for JsonPath {
    fn from(path: &str) -> Self {
        Self(path.to_owned())
    }
}

/// One problem in one file: where it stands, what was there and what should have been.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Issue {
    pub file: PathBuf,
    pub path: JsonPath,
    pub found: String,
    pub expected: String,
}

impl Issue {
    pub fn new(
        file: &Path,
        path: JsonPath,
        found: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            path,
            found: found.into(),
            expected: expected.into(),
        }
    }
}

impl Issue {
    /// An issue from a serde message such as "invalid type: integer `5`, expected a string", split into what was
    /// found and what was expected where serde says both.
    pub fn from_serde(file: &Path, path: JsonPath, message: &str, fallback_expected: &str) -> Self {
        match message.split_once(", expected ") {
            Some((found, expected)) => Self::new(file, path, found, expected),
            None => Self::new(file, path, message, fallback_expected),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` at `{}`: found {}, expected {}",
            self.file.display(),
            self.path,
            self.found,
            self.expected
        )
    }
}

/// Remembers where each key was first seen, so that a repeat is reported against its first use.
#[derive(Debug)]
pub struct FirstSeen<K>(std::collections::BTreeMap<K, JsonPath>);

impl<K: Ord> Default for FirstSeen<K> {
    fn default() -> Self {
        Self(std::collections::BTreeMap::new())
    }
}

impl<K: Ord> FirstSeen<K> {
    /// Where `key` was seen before, if it was; otherwise notes it at `path`.
    pub fn repeat_of(&mut self, key: K, path: &JsonPath) -> Option<JsonPath> {
        match self.0.entry(key) {
            std::collections::btree_map::Entry::Occupied(first) => Some(first.get().clone()),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(path.clone());
                None
            }
        }
    }
}

/// Quotes a found value the way messages show values: in backticks.
pub fn quoted(value: &str) -> String {
    format!("`{value}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_javascript_accessors() {
        let path = JsonPath::root()
            .key("repos")
            .index(2)
            .key("images")
            .index(0)
            .key("platforms")
            .index(1)
            .key("architecture");
        assert_eq!(
            path.to_string(),
            "repos[2].images[0].platforms[1].architecture"
        );
    }

    #[test]
    fn keys_with_punctuation_are_bracketed() {
        let path = JsonPath::root()
            .key("variables")
            .key("dotnet|8.0|product-version");
        assert_eq!(
            path.to_string(),
            r#"variables["dotnet|8.0|product-version"]"#
        );
        let tag = JsonPath::root().key("sharedTags").key("8.0");
        assert_eq!(tag.to_string(), r#"sharedTags["8.0"]"#);
    }

    #[test]
    fn root_is_named() {
        assert_eq!(JsonPath::root().to_string(), "(root)");
    }
}
