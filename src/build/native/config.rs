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
