//! Small conversions the tests share: paths as arguments, argument lists, JSON files.

use std::path::Path;

use serde_json::Value;

/// `path` as an argument: its display text.
pub fn path(path: &Path) -> String {
    path.display().to_string()
}

/// Owned arguments as the `&str` slice the runners take.
pub fn strings(arguments: &[String]) -> Vec<&str> {
    arguments.iter().map(String::as_str).collect()
}

/// The JSON in `file`; panics naming the file when it is missing or not JSON.
pub fn read_json(file: &Path) -> Value {
    let bytes =
        std::fs::read(file).unwrap_or_else(|error| panic!("reading `{}`: {error}", file.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|error| panic!("`{}` is not JSON: {error}", file.display()))
}

/// Writes `value` to `file` as pretty JSON; panics naming the file when it cannot.
pub fn write_json(file: &Path, value: &Value) {
    let bytes = serde_json::to_vec_pretty(value).expect("JSON values serialize");
    std::fs::write(file, bytes)
        .unwrap_or_else(|error| panic!("writing `{}`: {error}", file.display()));
}
