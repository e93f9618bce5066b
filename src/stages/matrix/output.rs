//! The matrix as CI systems take it: GitHub's `strategy.matrix` (`{"include": [leg, …]}`) and Azure Pipelines'
//! `strategy.matrix` (`{"configuration": {variable: value}}`), the same fields in both.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::model::legs::Leg;
use crate::model::platform::PlatformIdentity;
use crate::stages::summary;

/// Which CI system's matrix to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    GitHub,
    Azure,
}

/// One leg's fields. Every value is a string (Azure makes each a variable): `variant` is empty for none, and
/// `dockerfiles` lists the folders to build, separated by spaces, for `build --path`.
fn leg_fields(leg: &Leg) -> Map<String, Value> {
    let dockerfiles: Vec<String> = leg.to_build().map(|unit| unit.folder()).collect();
    let fields = json!({
        "leg": leg.name,
        "osType": leg.os,
        "osVersion": leg.os_version,
        "architecture": leg.architecture,
        "variant": leg.variant.clone().unwrap_or_default(),
        "platform": leg.platform().to_string(),
        "dockerfiles": dockerfiles.join(" "),
    });
    match fields {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

/// The matrix of `legs` in `format`.
pub fn matrix(format: Format, legs: &[Leg]) -> Value {
    match format {
        Format::GitHub => {
            let include: Vec<Value> = legs
                .iter()
                .map(|leg| Value::Object(leg_fields(leg)))
                .collect();
            json!({ "include": include })
        }
        // Azure's configuration names are letters, digits and `_`, starting with a letter; leg names start with
        // the OS and hold no other character than `-`.
        Format::Azure => Value::Object(
            legs.iter()
                .map(|leg| (leg.name.replace('-', "_"), Value::Object(leg_fields(leg))))
                .collect(),
        ),
    }
}

/// The units left out as unchanged, for the `cached` output: `[{dockerfile, platform, osVersion}, …]`.
pub fn cached_list(units: &[PlatformIdentity]) -> Value {
    units
        .iter()
        .map(|unit| {
            json!({
                "dockerfile": unit.dockerfile,
                "platform": unit.platform().to_string(),
                "osVersion": unit.os_version,
            })
        })
        .collect()
}

/// The step summary: a row per leg, then the units left out.
pub fn summary_markdown(legs: &[Leg], cached: &[PlatformIdentity]) -> String {
    let platforms: usize = legs.iter().map(|leg| leg.to_build().count()).sum();
    let mut text = format!(
        "### imagepipe matrix\n\n{} building {}",
        summary::count(legs.len(), "leg"),
        summary::count(platforms, "platform")
    );
    if !cached.is_empty() {
        let _ = write!(
            text,
            "; {} left out, unchanged since the published record",
            summary::count(cached.len(), "platform")
        );
    }
    text.push_str("\n\n");
    if !legs.is_empty() {
        text.push_str("| leg | platform | OS version | Dockerfiles |\n|---|---|---|---|\n");
        for leg in legs {
            let folders: Vec<String> = leg
                .to_build()
                .map(|unit| format!("`{}`", unit.folder()))
                .collect();
            let _ = writeln!(
                text,
                "| `{}` | {} | {} | {} |",
                leg.name,
                leg.platform(),
                leg.os_version,
                folders.join(" ")
            );
        }
        text.push('\n');
    }
    if !cached.is_empty() {
        text.push_str("Unchanged:\n\n| Dockerfile | platform | OS version |\n|---|---|---|\n");
        for unit in cached {
            let _ = writeln!(
                text,
                "| `{}` | {} | {} |",
                unit.dockerfile,
                unit.platform(),
                unit.os_version
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dependencies::Dependencies;
    use crate::model::legs::{Filters, plan_legs};
    use crate::model::manifest::Manifest;

    fn legs() -> Vec<Leg> {
        let manifest: Manifest = serde_json::from_str(
            r#"{"repos": [{"name": "acme/app", "images": [{"platforms": [
                {"dockerfile": "app/amd64", "os": "linux", "osVersion": "bookworm"},
                {"dockerfile": "app/arm64v8", "os": "linux", "osVersion": "bookworm", "architecture": "arm64",
                 "variant": "v8"}]}]}]}"#,
        )
        .expect("parses");
        plan_legs(&manifest, &Dependencies::default(), &Filters::default())
    }

    #[test]
    fn github_and_azure_carry_the_same_fields() {
        let legs = legs();
        let github = matrix(Format::GitHub, &legs);
        assert_eq!(
            github["include"][1],
            json!({
                "leg": "linux-bookworm-arm64v8-app",
                "osType": "linux",
                "osVersion": "bookworm",
                "architecture": "arm64",
                "variant": "v8",
                "platform": "linux/arm64/v8",
                "dockerfiles": "app/arm64v8",
            })
        );
        assert_eq!(github["include"][0]["variant"], "");
        let azure = matrix(Format::Azure, &legs);
        assert_eq!(azure["linux_bookworm_arm64v8_app"], github["include"][1]);
        assert_eq!(azure.as_object().map(Map::len), Some(2));
        assert_eq!(matrix(Format::GitHub, &[]), json!({"include": []}));
        assert_eq!(matrix(Format::Azure, &[]), json!({}));
    }

    #[test]
    fn the_summary_lists_legs_and_what_was_left_out() {
        let mut legs = legs();
        let cached = vec![legs.remove(0).units.remove(0).identity];
        let text = summary_markdown(&legs, &cached);
        assert!(
            text.contains("1 leg building 1 platform; 1 platform left out"),
            "{text}"
        );
        assert!(
            text.contains(
                "| `linux-bookworm-arm64v8-app` | linux/arm64/v8 | bookworm | `app/arm64v8` |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| `app/amd64` | linux/amd64 | bookworm |"),
            "{text}"
        );
    }
}
