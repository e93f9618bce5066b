//! Applying a recipe's steps to the image's runtime configuration (the config's `config` object: `Env`, `Cmd`,
//! `Labels` …), as a Docker build would, and listing the history they leave and the files they copy.
//!
//! Variables are expanded in `ENV`, `LABEL`, `WORKDIR`, `USER`, `STOPSIGNAL`, `EXPOSE` and `COPY`/`ADD` paths
//! with the `ARG`s in scope, overridden by `ENV` (the base image's included). `WORKDIR` only sets the working
//! directory: the runtime creates it when the container starts, so no layer is made for it.

use serde_json::{Map, Value, json};

use super::instructions::{self, Action, Command, Copy, Recipe, Step};
use super::words::{self, Variables};
use crate::build::{BuildError, BuildRequest};

/// What one step leaves in the image's history; a `COPY` or `ADD` also a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub created_by: String,
    pub files: Option<Files>,
}

/// The files one `COPY` or `ADD` puts in its layer, paths expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Files {
    pub line: usize,
    pub add: bool,
    /// Relative to the build context.
    pub sources: Vec<String>,
    /// Absolute; a trailing `/` says it is a folder.
    pub destination: String,
}

/// The runtime configuration of an image `FROM scratch`: the `PATH` BuildKit gives such images.
pub(super) fn scratch() -> Map<String, Value> {
    let mut config = Map::new();
    config.insert(
        "Env".to_owned(),
        json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
    );
    config
}

/// Applies every step of `recipe` to `config`, the base image's runtime configuration.
pub(super) fn apply(
    recipe: &Recipe,
    request: &BuildRequest,
    config: &mut Map<String, Value>,
) -> Result<Vec<Record>, BuildError> {
    let mut applier = Applier {
        recipe,
        request,
        config,
        args: Variables::new(),
        cmd_set: false,
    };
    let mut records = Vec::new();
    for step in &recipe.steps {
        let files = applier.step(step).map_err(|message| {
            instructions::syntax(&request.declared_dockerfile, step.line, message)
        })?;
        if !matches!(step.action, Action::Arg(_) | Action::Stage) {
            records.push(Record {
                created_by: step.text.clone(),
                files,
            });
        }
    }
    Ok(records)
}

struct Applier<'a> {
    recipe: &'a Recipe,
    request: &'a BuildRequest,
    config: &'a mut Map<String, Value>,
    /// `ARG`s of the current stage.
    args: Variables,
    /// `CMD` was set in the current stage, so an `ENTRYPOINT` keeps it.
    cmd_set: bool,
}

impl Applier<'_> {
    fn step(&mut self, step: &Step) -> Result<Option<Files>, String> {
        let escape = self.recipe.escape;
        let variables = self.variables();
        let word = |text: &str| words::single(text, escape, &variables);
        match &step.action {
            Action::Stage => {
                self.args.clear();
                self.cmd_set = false;
            }
            Action::Arg(arguments) => instructions::declare(
                arguments,
                escape,
                &self.request.build_args,
                &variables,
                &self.recipe.global_args,
                &mut self.args,
            )?,
            Action::Env(arguments) => {
                for (name, value) in pairs(arguments, escape, &variables)? {
                    set_env(self.config, &name, &value);
                }
            }
            Action::Label(arguments) => {
                for (name, value) in pairs(arguments, escape, &variables)? {
                    object(self.config, "Labels").insert(name, Value::String(value));
                }
            }
            Action::Workdir(path) => {
                let current = self.config.get("WorkingDir").and_then(Value::as_str);
                let directory = absolute(&word(path)?, current.unwrap_or("/"));
                self.config
                    .insert("WorkingDir".to_owned(), Value::String(directory));
            }
            Action::User(user) => {
                self.config
                    .insert("User".to_owned(), Value::String(word(user)?));
            }
            Action::StopSignal(signal) => {
                self.config
                    .insert("StopSignal".to_owned(), Value::String(word(signal)?));
            }
            Action::Expose(ports) => {
                for port in ports {
                    for exposed in exposed_ports(&word(port)?)? {
                        object(self.config, "ExposedPorts").insert(exposed, json!({}));
                    }
                }
            }
            Action::Entrypoint(command) => {
                self.config
                    .insert("Entrypoint".to_owned(), arguments(command));
                // An entrypoint resets the `CMD` inherited from the base, as Docker does.
                if !self.cmd_set {
                    self.config.remove("Cmd");
                }
            }
            Action::Cmd(command) => {
                self.config.insert("Cmd".to_owned(), arguments(command));
                self.cmd_set = true;
            }
            Action::Copy(copy) => return self.files(step.line, copy, &variables).map(Some),
        }
        Ok(None)
    }

    fn files(&self, line: usize, copy: &Copy, variables: &Variables) -> Result<Files, String> {
        let escape = self.recipe.escape;
        let sources = copy
            .sources
            .iter()
            .map(|source| words::single(source, escape, variables))
            .collect::<Result<Vec<_>, _>>()?;
        let written = words::single(&copy.destination, escape, variables)?;
        let folder = written.ends_with('/') || written.ends_with("/.") || written == ".";
        if sources.len() > 1 && !folder {
            return Err(format!(
                "with more than one source the destination must be a folder ending in `/`, not `{written}`"
            ));
        }
        let workdir = self.config.get("WorkingDir").and_then(Value::as_str);
        let mut destination = absolute(&written, workdir.unwrap_or("/"));
        if folder && !destination.ends_with('/') {
            destination.push('/');
        }
        Ok(Files {
            line,
            add: copy.add,
            sources,
            destination,
        })
    }

    /// The variables an instruction sees: `ARG`s in scope, overridden by the image's `ENV`.
    fn variables(&self) -> Variables {
        let mut variables = self.args.clone();
        let env = self.config.get("Env").and_then(Value::as_array);
        for entry in env.into_iter().flatten().filter_map(Value::as_str) {
            if let Some((name, value)) = entry.split_once('=') {
                variables.insert(name.to_owned(), value.to_owned());
            }
        }
        variables
    }
}

/// `NAME=value …` of `ENV` and `LABEL`, or the older `NAME value with spaces`. Every value is expanded with the
/// variables from before the instruction.
fn pairs(
    arguments: &str,
    escape: char,
    variables: &Variables,
) -> Result<Vec<(String, String)>, String> {
    let words = words::split(arguments, escape, variables)?;
    match words.first() {
        None => Err("a name and a value are needed".to_owned()),
        Some(first) if !first.contains('=') => {
            let trimmed = arguments.trim_start();
            let rest =
                trimmed[trimmed.find(char::is_whitespace).unwrap_or(trimmed.len())..].trim_start();
            Ok(vec![(
                first.clone(),
                words::single(rest, escape, variables)?,
            )])
        }
        Some(_) => words
            .into_iter()
            .map(|word| match word.split_once('=') {
                Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
                _ => Err(format!("`{word}` is not `NAME=value`")),
            })
            .collect(),
    }
}

fn set_env(config: &mut Map<String, Value>, name: &str, value: &str) {
    let entry = Value::String(format!("{name}={value}"));
    let env = config
        .entry("Env")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !env.is_array() {
        *env = Value::Array(Vec::new());
    }
    let Value::Array(env) = env else {
        return;
    };
    let same_name = |existing: &Value| {
        existing
            .as_str()
            .and_then(|text| text.split_once('='))
            .is_some_and(|(existing, _)| existing == name)
    };
    match env.iter_mut().find(|existing| same_name(existing)) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// The object at `key` of `config`, made one if it is missing or null.
fn object<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let value = config.entry(key).or_insert_with(|| json!({}));
    if !value.is_object() {
        *value = json!({});
    }
    match value {
        Value::Object(object) => object,
        _ => unreachable!("replaced by an object above"),
    }
}

fn arguments(command: &Command) -> Value {
    match command {
        Command::Exec(words) => json!(words),
        Command::Shell(text) => json!(["/bin/sh", "-c", text]),
    }
}

/// `path` made absolute against `base` and cleaned (`.` and `..` resolved, never above `/`).
pub(super) fn absolute(path: &str, base: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{base}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `80`, `53/udp`, `8000-8002/tcp` as the config's `ExposedPorts` keys.
fn exposed_ports(text: &str) -> Result<Vec<String>, String> {
    let (ports, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    let invalid = || format!("`{text}` is not a port, `PORT/PROTOCOL` or `FIRST-LAST/PROTOCOL`");
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid());
    }
    let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
    let first: u16 = first.parse().map_err(|_| invalid())?;
    let last: u16 = last.parse().map_err(|_| invalid())?;
    if first > last {
        return Err(invalid());
    }
    Ok((first..=last)
        .map(|port| format!("{port}/{protocol}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::build::native::tests::request;

    /// The runtime configuration and records of `text` built on `base` for linux/arm64.
    fn applied(
        text: &str,
        base: Map<String, Value>,
        build_args: &[(&str, &str)],
    ) -> Result<(Map<String, Value>, Vec<Record>), BuildError> {
        let mut request = request(Path::new("/context"), "linux/arm64");
        for (name, value) in build_args {
            request
                .build_args
                .insert((*name).to_owned(), (*value).to_owned());
        }
        let recipe = instructions::read(text, &request)?;
        let mut config = base;
        let records = apply(&recipe, &request, &mut config)?;
        Ok((config, records))
    }

    fn config(text: &str) -> Map<String, Value> {
        applied(text, scratch(), &[]).expect("applies").0
    }

    #[test]
    fn env_values_see_the_variables_from_before_the_instruction() {
        let config = config(
            "FROM scratch\n\
             ENV A=1\n\
             ENV A=2 B=$A C=\"x y\" D='$A'\n\
             ENV LEGACY spaced   value $B\n\
             ENV PATH=/app/bin:$PATH\n",
        );
        assert_eq!(
            config["Env"],
            json!([
                "PATH=/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "A=2",
                "B=1",
                "C=x y",
                "D=$A",
                "LEGACY=spaced   value 1"
            ])
        );
    }

    #[test]
    fn args_are_scoped_to_their_stage_and_env_wins_over_them() {
        let text = "ARG GLOBAL=g\n\
            ARG HIDDEN=h\n\
            FROM scratch AS one\n\
            ARG GLOBAL\n\
            ARG LOCAL=l-$GLOBAL\n\
            ARG TARGETARCH\n\
            ARG OVERRIDDEN=default\n\
            LABEL global=$GLOBAL hidden=\"[$HIDDEN]\" local=$LOCAL arch=$TARGETARCH over=$OVERRIDDEN\n\
            ENV LOCAL=from-env\n\
            LABEL shadowed=$LOCAL\n\
            FROM one\n\
            LABEL next=\"[$LOCAL]\" gone=\"[$GLOBAL]\"\n";
        let (config, _) = applied(text, scratch(), &[("OVERRIDDEN", "given")]).expect("applies");
        assert_eq!(
            config["Labels"],
            json!({
                "global": "g", "hidden": "[]", "local": "l-g", "arch": "arm64", "over": "given",
                "shadowed": "from-env", "next": "[from-env]", "gone": "[]"
            })
        );
    }

    #[test]
    fn workdir_user_stopsignal_and_ports() {
        let config = config(
            "FROM scratch\n\
             ENV BASE=/srv\n\
             WORKDIR $BASE\n\
             WORKDIR app/./bin\n\
             WORKDIR ../data\n\
             USER 1000:1000\n\
             STOPSIGNAL SIGTERM\n\
             EXPOSE 80 53/udp 9000-9002/TCP\n",
        );
        assert_eq!(config["WorkingDir"], "/srv/app/data");
        assert_eq!(config["User"], "1000:1000");
        assert_eq!(config["StopSignal"], "SIGTERM");
        assert_eq!(
            config["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "9000/tcp": {}, "9001/tcp": {}, "9002/tcp": {}})
        );
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_but_not_one_set_in_the_stage() {
        let base = json!({"Cmd": ["base"], "Env": ["HOME=/root"]});
        let Value::Object(base) = base else {
            unreachable!()
        };
        let (inherited, _) =
            applied("FROM x.io/base\nENTRYPOINT [\"/app\"]\n", base.clone(), &[]).expect("applies");
        assert_eq!(inherited.get("Cmd"), None);
        assert_eq!(
            inherited["Env"],
            json!(["HOME=/root"]),
            "the base's env is kept"
        );
        let (set, _) = applied(
            "FROM x.io/base\nCMD run --fast\nENTRYPOINT /app/start $HOME\n",
            base,
            &[],
        )
        .expect("applies");
        assert_eq!(set["Cmd"], json!(["/bin/sh", "-c", "run --fast"]));
        assert_eq!(
            set["Entrypoint"],
            json!(["/bin/sh", "-c", "/app/start $HOME"]),
            "a shell form is left to the shell"
        );
    }

    #[test]
    fn copies_are_placed_relative_to_the_workdir() {
        let (_, records) = applied(
            "FROM scratch\nARG DIR=conf\nWORKDIR /app\nCOPY $DIR/a.json b ./\nCOPY x /abs\nADD y .\n",
            scratch(),
            &[],
        )
        .expect("applies");
        let copies: Vec<&Files> = records
            .iter()
            .filter_map(|record| record.files.as_ref())
            .collect();
        assert_eq!(
            copies,
            [
                &Files {
                    line: 4,
                    add: false,
                    sources: vec!["conf/a.json".to_owned(), "b".to_owned()],
                    destination: "/app/".to_owned()
                },
                &Files {
                    line: 5,
                    add: false,
                    sources: vec!["x".to_owned()],
                    destination: "/abs".to_owned()
                },
                &Files {
                    line: 6,
                    add: true,
                    sources: vec!["y".to_owned()],
                    destination: "/app/".to_owned()
                },
            ]
        );
        assert_eq!(
            records.len(),
            4,
            "WORKDIR and three copies; ARG leaves no history"
        );
    }

    #[test]
    fn malformed_arguments_name_the_line() {
        let cases = [
            (
                "FROM scratch\nCOPY a b /not-a-folder\n",
                2,
                "destination must be a folder",
            ),
            ("FROM scratch\n\nEXPOSE 80/http\n", 3, "is not a port"),
            ("FROM scratch\nENV A=1 B\n", 2, "`B` is not `NAME=value`"),
            (
                "FROM scratch\nLABEL a=\"open\n",
                2,
                "double quote is not closed",
            ),
        ];
        for (text, line, message) in cases {
            let error = applied(text, scratch(), &[]).expect_err(text);
            let text_of = error.to_string();
            assert!(
                text_of.starts_with(&format!("`src/app/Dockerfile` line {line}: "))
                    && text_of.contains(message),
                "{text}: {text_of}"
            );
        }
    }

    #[test]
    fn paths_are_made_absolute_and_clean() {
        let cases = [
            ("a", "/", "/a"),
            ("a/../b", "/w", "/w/b"),
            ("../../..", "/w", "/"),
            ("/x/./y/", "/w", "/x/y"),
            (".", "/w", "/w"),
        ];
        for (path, base, expected) in cases {
            assert_eq!(absolute(path, base), expected, "{path} {base}");
        }
    }
}
