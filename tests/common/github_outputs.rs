//! Reading a `GITHUB_OUTPUT` file back as the runner does: `name<<DELIMITER`, the value's lines, `DELIMITER`
//! (and the single-line `name=value` form, which the runner also reads).

use std::path::Path;

/// Every output in the order written, `(name, value)`; empty when the file does not exist.
pub fn read(file: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut outputs = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let mut value = Vec::new();
            for line in lines.by_ref() {
                if line == delimiter {
                    break;
                }
                value.push(line);
            }
            outputs.push((name.to_owned(), value.join("\n")));
        } else if let Some((name, value)) = line.split_once('=') {
            outputs.push((name.to_owned(), value.to_owned()));
        }
    }
    outputs
}

/// The outputs as `name=value` lines, for comparing whole files.
pub fn lines(file: &Path) -> String {
    read(file)
        .into_iter()
        .map(|(name, value)| format!("{name}={value}\n"))
        .collect()
}
