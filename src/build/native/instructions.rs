//! Reading a Dockerfile into what the native builder does: the base image and, in order, the steps of the stage
//! being built. Everything the builder cannot do is refused here, before any store is asked for anything.
//!
//! The stage built is the last one. When its `FROM` names an earlier stage, that stage's steps come first (and so
//! on back to an image): the file is then one stage in effect. Stages the last one does not descend from are not
//! built, as BuildKit skips them.

use std::collections::BTreeMap;
use std::path::Path;

use parse_dockerfile::{Command as ParsedCommand, Flag, Instruction, Source};

use super::words::{self, Variables};
use crate::build::dockerfile::{self, DockerfileError, line_of};
use crate::build::{BuildError, BuildRequest};
use crate::model::platform::Platform;

/// What every refusal suggests instead.
pub(super) const OTHER_BUILDERS: &str = "build it with `--builder buildah` or `--builder buildx`";

/// The Dockerfile, read.
#[derive(Debug)]
pub(super) struct Recipe {
    /// The image the first stage of the chain starts from, `ARG`s substituted: `scratch` or a reference.
    pub base: String,
    pub base_line: usize,
    pub steps: Vec<Step>,
    /// Values of the `ARG`s declared before the first `FROM` and of the platform `ARG`s BuildKit predefines
    /// (`TARGETARCH` …), for a stage's `ARG NAME` without default.
    pub global_args: Variables,
    /// The escape character (`# escape=` directive), `\` by default.
    pub escape: char,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    pub line: usize,
    /// The instruction as written, continuation lines joined: the image history's `created_by`.
    pub text: String,
    pub action: Action,
}

/// One instruction's effect, with its arguments as written (variables are expanded when it is applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// A stage starts that builds on the previous one: `ARG`s leave scope.
    Stage,
    Arg(String),
    Env(String),
    Label(String),
    Workdir(String),
    User(String),
    StopSignal(String),
    Expose(Vec<String>),
    Entrypoint(Command),
    Cmd(Command),
    Copy(Copy),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    Exec(Vec<String>),
    /// Run as `["/bin/sh", "-c", text]`.
    Shell(String),
}

/// `COPY` or `ADD` of files from the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Copy {
    /// `ADD`: a local archive would be unpacked, which the layer builder refuses.
    pub add: bool,
    pub sources: Vec<String>,
    pub destination: String,
}

/// Reads `text`, the Dockerfile of `request`.
pub(super) fn read(text: &str, request: &BuildRequest) -> Result<Recipe, BuildError> {
    let file = &request.declared_dockerfile;
    let from_lines = dockerfile::from_lines(text, file, &request.build_args)?;
    let parsed = parse_dockerfile::parse(text).map_err(|error| DockerfileError::Syntax {
        file: file.clone(),
        line: error.line(),
        message: error.to_string(),
    })?;
    let escape = parsed
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |directive| directive.value.value);
    let stages: Vec<_> = parsed.stages().collect();

    // The last stage, then the stage its `FROM` names, and so on back to an image.
    let mut chain = vec![stages.len() - 1];
    while let Some(&current) = chain.last() {
        let line = &from_lines[current];
        if !line.earlier_stage {
            break;
        }
        let named = from_lines[..current].iter().rposition(|earlier| {
            earlier
                .stage_name
                .as_deref()
                .is_some_and(|name| name.eq_ignore_ascii_case(&line.image))
        });
        match named {
            Some(earlier) => chain.push(earlier),
            None => break,
        }
    }
    chain.reverse();

    let mut global_args = platform_args(&request.platform);
    for arg in parsed.global_args() {
        let visible = global_args.clone();
        declare(
            &arg.arguments.value,
            escape,
            &request.build_args,
            &visible,
            &Variables::new(),
            &mut global_args,
        )
        .map_err(|message| syntax(file, line_of(text, arg.arg.span.start), message))?;
    }

    let mut steps = Vec::new();
    for (position, &index) in chain.iter().enumerate() {
        let stage = &stages[index];
        let from_line = line_of(text, stage.from.from.span.start);
        for flag in &stage.from.options {
            if !is_target_platform(flag, &request.platform) {
                return Err(unsupported(request, from_line, flag_text("FROM", flag)));
            }
        }
        if position > 0 {
            let text = joined(
                &text[stage.from.from.span.start..stage.from.image.span.end],
                escape,
            );
            steps.push(Step {
                line: from_line,
                text,
                action: Action::Stage,
            });
        }
        for instruction in stage.instructions {
            steps.push(step(text, instruction, escape, request)?);
        }
    }
    let first = &from_lines[chain[0]];
    Ok(Recipe {
        base: first.image.clone(),
        base_line: first.line,
        steps,
        global_args,
        escape,
    })
}

/// The arguments BuildKit defines for the target platform.
fn platform_args(platform: &Platform) -> Variables {
    let variant = platform.variant.clone().unwrap_or_default();
    Variables::from([
        ("TARGETPLATFORM".to_owned(), platform.to_string()),
        ("TARGETOS".to_owned(), platform.os.clone()),
        ("TARGETARCH".to_owned(), platform.architecture.clone()),
        ("TARGETVARIANT".to_owned(), variant),
    ])
}

/// Applies one `ARG` instruction's declarations to `scope`: a build argument wins over the default (expanded with
/// `visible`), which wins over `inherited` (the global value of an `ARG` declared again in a stage). A name with
/// no value stays unset.
pub(super) fn declare(
    arguments: &str,
    escape: char,
    build_args: &BTreeMap<String, String>,
    visible: &Variables,
    inherited: &Variables,
    scope: &mut Variables,
) -> Result<(), String> {
    for declaration in words::split(arguments, escape, visible)? {
        let (name, default) = match declaration.split_once('=') {
            Some((name, default)) => (name.to_owned(), Some(default.to_owned())),
            None => (declaration, None),
        };
        let value = build_args
            .get(&name)
            .cloned()
            .or(default)
            .or_else(|| inherited.get(&name).cloned());
        if let Some(value) = value {
            scope.insert(name, value);
        }
    }
    Ok(())
}

/// `FROM --platform=$TARGETPLATFORM` (or the platform itself) changes nothing; any other flag is refused.
fn is_target_platform(flag: &Flag<'_>, platform: &Platform) -> bool {
    let value = flag.value.as_ref().map(|value| value.value.as_ref());
    flag.name.value == "platform"
        && matches!(value, Some(value) if value == "$TARGETPLATFORM"
            || value == "${TARGETPLATFORM}"
            || value == platform.to_string())
}

fn step(
    text: &str,
    instruction: &Instruction<'_>,
    escape: char,
    request: &BuildRequest,
) -> Result<Step, BuildError> {
    let Some((keyword, start, end)) = extent(instruction) else {
        return Err(unsupported(
            request,
            1,
            "an instruction this builder does not know".to_owned(),
        ));
    };
    let line = line_of(text, start);
    let refuse = |what: String| unsupported(request, line, what);
    let action = match instruction {
        Instruction::Arg(arg) => Action::Arg(arg.arguments.value.to_string()),
        Instruction::Env(env) => Action::Env(env.arguments.value.to_string()),
        Instruction::Label(label) => Action::Label(label.arguments.value.to_string()),
        Instruction::Workdir(workdir) => Action::Workdir(workdir.arguments.value.to_string()),
        Instruction::User(user) => Action::User(user.arguments.value.to_string()),
        Instruction::Stopsignal(signal) => Action::StopSignal(signal.arguments.value.to_string()),
        Instruction::Expose(expose) => Action::Expose(
            expose
                .arguments
                .iter()
                .map(|port| port.value.to_string())
                .collect(),
        ),
        Instruction::Entrypoint(entrypoint) => {
            Action::Entrypoint(command(keyword, &entrypoint.arguments, escape).map_err(refuse)?)
        }
        Instruction::Cmd(cmd) => {
            Action::Cmd(command(keyword, &cmd.arguments, escape).map_err(refuse)?)
        }
        Instruction::Copy(copy) => Action::Copy(
            files(keyword, &copy.options, &copy.src, &copy.dest.value, false).map_err(refuse)?,
        ),
        Instruction::Add(add) => Action::Copy(
            files(keyword, &add.options, &add.src, &add.dest.value, true).map_err(refuse)?,
        ),
        _ => return Err(refuse(keyword.to_owned())),
    };
    Ok(Step {
        line,
        text: joined(&text[start..end], escape),
        action,
    })
}

/// The keyword of an instruction, where it starts and where its arguments end.
fn extent(instruction: &Instruction<'_>) -> Option<(&'static str, usize, usize)> {
    let command_end =
        |command: &ParsedCommand<'_>, keyword: &parse_dockerfile::Keyword| match command {
            ParsedCommand::Exec(exec) => exec.span.end,
            ParsedCommand::Shell(shell) => shell.span.end,
            _ => keyword.span.end,
        };
    Some(match instruction {
        Instruction::Add(add) => ("ADD", add.add.span.start, add.dest.span.end),
        Instruction::Arg(arg) => ("ARG", arg.arg.span.start, arg.arguments.span.end),
        Instruction::Cmd(cmd) => (
            "CMD",
            cmd.cmd.span.start,
            command_end(&cmd.arguments, &cmd.cmd),
        ),
        Instruction::Copy(copy) => ("COPY", copy.copy.span.start, copy.dest.span.end),
        Instruction::Entrypoint(entrypoint) => (
            "ENTRYPOINT",
            entrypoint.entrypoint.span.start,
            command_end(&entrypoint.arguments, &entrypoint.entrypoint),
        ),
        Instruction::Env(env) => ("ENV", env.env.span.start, env.arguments.span.end),
        Instruction::Expose(expose) => {
            let end = expose
                .arguments
                .last()
                .map_or(expose.expose.span.end, |last| last.span.end);
            ("EXPOSE", expose.expose.span.start, end)
        }
        Instruction::Label(label) => ("LABEL", label.label.span.start, label.arguments.span.end),
        Instruction::Stopsignal(signal) => (
            "STOPSIGNAL",
            signal.stopsignal.span.start,
            signal.arguments.span.end,
        ),
        Instruction::User(user) => ("USER", user.user.span.start, user.arguments.span.end),
        Instruction::Workdir(workdir) => (
            "WORKDIR",
            workdir.workdir.span.start,
            workdir.arguments.span.end,
        ),
        // Refused whatever their arguments: only the keyword is needed.
        Instruction::Run(run) => ("RUN", run.run.span.start, run.run.span.end),
        Instruction::Healthcheck(check) => (
            "HEALTHCHECK",
            check.healthcheck.span.start,
            check.healthcheck.span.end,
        ),
        Instruction::Maintainer(maintainer) => (
            "MAINTAINER",
            maintainer.maintainer.span.start,
            maintainer.maintainer.span.end,
        ),
        Instruction::Onbuild(onbuild) => (
            "ONBUILD",
            onbuild.onbuild.span.start,
            onbuild.onbuild.span.end,
        ),
        Instruction::Shell(shell) => ("SHELL", shell.shell.span.start, shell.shell.span.end),
        Instruction::Volume(volume) => ("VOLUME", volume.volume.span.start, volume.volume.span.end),
        _ => return None,
    })
}

/// A `COPY` or `ADD` this builder can do, or what it cannot.
fn files(
    keyword: &str,
    options: &[Flag<'_>],
    sources: &[Source<'_>],
    destination: &str,
    add: bool,
) -> Result<Copy, String> {
    for flag in options {
        let value = flag.value.as_ref().map(|value| value.value.as_ref());
        let harmless = match flag.name.value.as_ref() {
            // Files are owned by root anyway.
            "chown" => matches!(value, Some("0" | "0:0")),
            // Each layer stands on its own already.
            "link" => matches!(value, None | Some("true")),
            _ => false,
        };
        if !harmless {
            return Err(flag_text(keyword, flag));
        }
    }
    let mut paths = Vec::new();
    for source in sources {
        match source {
            Source::Path(path) if add && is_remote(&path.value) => {
                return Err(format!("{keyword} of a URL"));
            }
            Source::Path(path) => paths.push(path.value.to_string()),
            _ => return Err(format!("{keyword} of a here-document")),
        }
    }
    Ok(Copy {
        add,
        sources: paths,
        destination: destination.to_owned(),
    })
}

fn is_remote(source: &str) -> bool {
    source.contains("://") || source.starts_with("git@")
}

fn command(keyword: &str, command: &ParsedCommand<'_>, escape: char) -> Result<Command, String> {
    match command {
        ParsedCommand::Exec(exec) => Ok(Command::Exec(
            exec.value
                .iter()
                .map(|word| word.value.to_string())
                .collect(),
        )),
        ParsedCommand::Shell(shell) => Ok(Command::Shell(joined(shell.value, escape))),
        _ => Err(format!("{keyword} in a form this builder does not know")),
    }
}

/// `text` with its line continuations (the escape character at the end of a line) removed.
fn joined(text: &str, escape: char) -> String {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find(escape) {
        result.push_str(&rest[..position]);
        let after = &rest[position + escape.len_utf8()..];
        let trimmed = after.trim_start_matches([' ', '\t', '\r']);
        match trimmed.strip_prefix('\n') {
            Some(next_line) => rest = next_line,
            None => {
                result.push(escape);
                rest = after;
            }
        }
    }
    result.push_str(rest);
    result
}

fn flag_text(keyword: &str, flag: &Flag<'_>) -> String {
    match &flag.value {
        Some(value) => format!("{keyword} --{}={}", flag.name.value, value.value),
        None => format!("{keyword} --{}", flag.name.value),
    }
}

pub(super) fn unsupported(request: &BuildRequest, line: usize, instruction: String) -> BuildError {
    BuildError::Unsupported {
        file: request.declared_dockerfile.clone(),
        line,
        instruction,
        builder: "native",
        hint: OTHER_BUILDERS.to_owned(),
    }
}

pub(super) fn syntax(file: &Path, line: usize, message: String) -> BuildError {
    BuildError::Dockerfile(DockerfileError::Syntax {
        file: file.to_owned(),
        line,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::native::tests::request;

    fn recipe(text: &str) -> Result<Recipe, BuildError> {
        read(text, &request(Path::new("/context"), "linux/amd64"))
    }

    fn actions(recipe: &Recipe) -> Vec<&Action> {
        recipe.steps.iter().map(|step| &step.action).collect()
    }

    #[test]
    fn the_last_stage_is_built_with_the_stages_it_descends_from() {
        let text = "ARG BASE=127.0.0.1:5000/base\n\
            FROM scratch AS tools\n\
            RUN make\n\
            FROM $BASE AS one\n\
            ENV A=1\n\
            FROM one AS two\n\
            COPY a /a\n\
            FROM two\n\
            CMD [\"x\"]\n";
        let recipe = recipe(text).expect("reads");
        assert_eq!(
            (recipe.base.as_str(), recipe.base_line),
            ("127.0.0.1:5000/base", 4)
        );
        assert_eq!(
            actions(&recipe),
            [
                &Action::Env("A=1".to_owned()),
                &Action::Stage,
                &Action::Copy(Copy {
                    add: false,
                    sources: vec!["a".to_owned()],
                    destination: "/a".to_owned()
                }),
                &Action::Stage,
                &Action::Cmd(Command::Exec(vec!["x".to_owned()])),
            ]
        );
        let lines: Vec<usize> = recipe.steps.iter().map(|step| step.line).collect();
        assert_eq!(lines, [5, 6, 7, 8, 9]);
    }

    #[test]
    fn refusals_name_the_line_and_what_is_refused() {
        let cases = [
            ("FROM scratch\nRUN echo hi\n", 2, "RUN"),
            (
                "FROM scratch\nCOPY --from=build /a /a\n",
                2,
                "COPY --from=build",
            ),
            (
                "FROM scratch\nCOPY --chmod=755 a /a\n",
                2,
                "COPY --chmod=755",
            ),
            (
                "FROM scratch\nCOPY --chown=1000:1000 a /a\n",
                2,
                "COPY --chown=1000:1000",
            ),
            (
                "FROM scratch\n\nADD https://example.com/x.tgz /x\n",
                3,
                "ADD of a URL",
            ),
            (
                "FROM scratch\nADD git@github.com:a/b.git /b\n",
                2,
                "ADD of a URL",
            ),
            (
                "FROM scratch\nCOPY <<EOF /a\nhello\nEOF\n",
                2,
                "COPY of a here-document",
            ),
            ("FROM scratch\nSHELL [\"/bin/bash\", \"-c\"]\n", 2, "SHELL"),
            ("FROM scratch\nVOLUME /data\n", 2, "VOLUME"),
            ("FROM scratch\nONBUILD COPY a /a\n", 2, "ONBUILD"),
            (
                "FROM --platform=linux/arm64 scratch\n",
                1,
                "FROM --platform=linux/arm64",
            ),
            ("FROM scratch AS a\nRUN x\nFROM a\nCOPY a /a\n", 2, "RUN"),
        ];
        for (text, line, instruction) in cases {
            match recipe(text) {
                Err(BuildError::Unsupported {
                    line: found,
                    instruction: what,
                    file,
                    ..
                }) => {
                    assert_eq!((found, what.as_str()), (line, instruction), "{text}");
                    assert_eq!(file, Path::new("src/app/Dockerfile"));
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn harmless_flags_are_accepted() {
        let text = "FROM --platform=$TARGETPLATFORM scratch\n\
            COPY --chown=0:0 --link a /a\n\
            ADD --chown=0 b /b\n";
        let recipe = recipe(text).expect("reads");
        assert_eq!(recipe.steps.len(), 2);
    }

    #[test]
    fn history_text_joins_continuation_lines() {
        let recipe =
            recipe("FROM scratch\nENV A=1 \\\n    B=2\nCMD echo a \\\n  b\n").expect("reads");
        let texts: Vec<&str> = recipe.steps.iter().map(|step| step.text.as_str()).collect();
        assert_eq!(texts, ["ENV A=1     B=2", "CMD echo a   b"]);
        assert_eq!(
            recipe.steps[1].action,
            Action::Cmd(Command::Shell("echo a   b".to_owned()))
        );
        let backtick = read(
            "# escape=`\nFROM scratch\nCMD echo a `\n  b\n",
            &request(Path::new("/context"), "linux/amd64"),
        )
        .expect("reads");
        assert_eq!(backtick.escape, '`');
        assert_eq!(
            backtick.steps[0].action,
            Action::Cmd(Command::Shell("echo a   b".to_owned()))
        );
    }

    #[test]
    fn global_args_take_build_args_and_the_platform() {
        let mut request = request(Path::new("/context"), "linux/arm/v7");
        request
            .build_args
            .insert("TAG".to_owned(), "2.0".to_owned());
        // As with `ENV`, a value sees the variables from before its instruction.
        let text = "ARG TAG=1.0 SAME=[$TAG]\nARG SUFFIX=-$TAG\nARG UNSET\nFROM scratch\n";
        let recipe = read(text, &request).expect("reads");
        let value = |name: &str| recipe.global_args.get(name).map(String::as_str);
        assert_eq!(value("TAG"), Some("2.0"));
        assert_eq!(value("SUFFIX"), Some("-2.0"));
        assert_eq!(value("SAME"), Some("[]"));
        assert_eq!(value("UNSET"), None);
        assert_eq!(value("TARGETPLATFORM"), Some("linux/arm/v7"));
        assert_eq!(value("TARGETARCH"), Some("arm"));
        assert_eq!(value("TARGETVARIANT"), Some("v7"));
    }

    #[test]
    fn a_syntax_error_is_the_dockerfiles() {
        let error = recipe("FROM scratch\nCOPY\n").expect_err("COPY needs arguments");
        assert!(matches!(error, BuildError::Dockerfile(_)), "{error}");
        assert!(error.is_invalid_input());
    }
}
