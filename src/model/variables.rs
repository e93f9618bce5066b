//! `$(name)` substitution as manifest.json files use it.
//!
//! Three kinds of reference exist in real manifests: a variable from `variables` (names may hold `|`, `-`, `.`,
//! as in `$(dotnet|8.0|product-version)`, and values may refer to other variables), `$(Repo:<id>)` for the
//! qualified name of the repository with that id, and built-ins such as `$(UniqueId)`.

use std::collections::BTreeMap;

/// The prefix of a reference to a repository by its id.
const REPO_PREFIX: &str = "Repo:";

/// How deep variables may refer to each other before we call it a cycle we failed to see.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    #[error("`$({name})` is not defined")]
    Undefined { name: String },
    #[error("`$({name})` names no repository id")]
    UnknownRepository { name: String },
    #[error("`$({name})` refers to itself through {chain}")]
    Cycle { name: String, chain: String },
    #[error("`$(` at byte {offset} has no closing `)`")]
    Unterminated { offset: usize },
}

/// Everything a reference can resolve to.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: BTreeMap<String, String>,
    repositories: BTreeMap<String, String>,
}

impl Variables {
    /// `values` are the manifest's variables with built-ins and overrides already applied;
    /// `repositories` maps repository ids to their qualified names.
    pub fn new(values: BTreeMap<String, String>, repositories: BTreeMap<String, String>) -> Self {
        Self {
            values,
            repositories,
        }
    }

    /// Replaces every reference in `text`.
    pub fn resolve(&self, text: &str) -> Result<String, VariableError> {
        self.resolve_within(text, &mut Vec::new())
    }

    fn resolve_within(&self, text: &str, stack: &mut Vec<String>) -> Result<String, VariableError> {
        if !text.contains("$(") {
            return Ok(text.to_owned());
        }
        let mut resolved = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("$(") {
            resolved.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find(')').ok_or(VariableError::Unterminated {
                offset: text.len() - rest.len() + start,
            })?;
            resolved.push_str(&self.value_of(&after[..end], stack)?);
            rest = &after[end + 1..];
        }
        resolved.push_str(rest);
        Ok(resolved)
    }

    fn value_of(&self, name: &str, stack: &mut Vec<String>) -> Result<String, VariableError> {
        if let Some(id) = name.strip_prefix(REPO_PREFIX) {
            return self.repositories.get(id).cloned().ok_or_else(|| {
                VariableError::UnknownRepository {
                    name: name.to_owned(),
                }
            });
        }
        let value = self
            .values
            .get(name)
            .ok_or_else(|| VariableError::Undefined {
                name: name.to_owned(),
            })?;
        if stack.iter().any(|seen| seen == name) || stack.len() >= MAX_DEPTH {
            let mut chain: Vec<String> = stack.iter().map(|seen| format!("`$({seen})`")).collect();
            chain.push(format!("`$({name})`"));
            return Err(VariableError::Cycle {
                name: name.to_owned(),
                chain: chain.join(" → "),
            });
        }
        stack.push(name.to_owned());
        let resolved = self.resolve_within(value, stack);
        stack.pop();
        resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables(pairs: &[(&str, &str)]) -> Variables {
        let values = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let repositories = BTreeMap::from([(
            "runtime-deps".to_owned(),
            "mcr.microsoft.com/dotnet/runtime-deps".to_owned(),
        )]);
        Variables::new(values, repositories)
    }

    #[test]
    fn resolves_the_reference_kinds_of_real_manifests() {
        let vars = variables(&[
            ("dotnet|8.0|product-version", "8.0.11"),
            ("dotnet|8.0|fixed-tag", "$(dotnet|8.0|product-version)"),
            ("alpine|floating-tag-version", "alpine3.20"),
            ("UniqueId", "20261129"),
        ]);
        let cases = [
            ("plain", "plain"),
            (
                "$(dotnet|8.0|fixed-tag)-$(alpine|floating-tag-version)",
                "8.0.11-alpine3.20",
            ),
            (
                "$(Repo:runtime-deps)",
                "mcr.microsoft.com/dotnet/runtime-deps",
            ),
            ("linux-amd64-$(UniqueId)", "linux-amd64-20261129"),
            (
                "$(dotnet|8.0|product-version)$(dotnet|8.0|product-version)",
                "8.0.118.0.11",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(vars.resolve(text).as_deref(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn reports_what_cannot_be_resolved() {
        let vars = variables(&[("a", "$(b)"), ("b", "$(a)"), ("self", "x$(self)")]);
        assert_eq!(
            vars.resolve("$(missing|name)"),
            Err(VariableError::Undefined {
                name: "missing|name".to_owned()
            })
        );
        assert_eq!(
            vars.resolve("$(Repo:sdk)"),
            Err(VariableError::UnknownRepository {
                name: "Repo:sdk".to_owned()
            })
        );
        assert_eq!(
            vars.resolve("ab$(a"),
            Err(VariableError::Unterminated { offset: 2 })
        );
        let cycle = vars.resolve("$(a)").expect_err("a cycle must fail");
        assert_eq!(
            cycle.to_string(),
            "`$(a)` refers to itself through `$(a)` → `$(b)` → `$(a)`"
        );
        assert!(matches!(
            vars.resolve("$(self)"),
            Err(VariableError::Cycle { .. })
        ));
    }
}
