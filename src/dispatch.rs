//! Turns the parsed command line into each stage's settings and runs the stage. The only place that knows both
//! clap's types and the stages'.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::action;
use crate::build::BuilderChoice;
use crate::ci::{self, CiHost, HostKind, RunIdentity};
use crate::cli::{
    BuilderKind, CiCommand, Cli, Command, FilterArgs, IndexKind, MatrixArgs, MatrixFormat,
    RegistryArgs, SchemaFormat, SignatureModeArg, StagingArgs, VariableArgs,
};
use crate::model::legs::Filters;
use crate::sign::keys::KeySource;
use crate::stages::{
    self, InvalidFlag, build, create_manifest, generate_key, matrix, post_build, publish,
    publish_image_info, record, run, schema, sign, test, validate, verify,
};
use crate::store::Location;
use crate::store::registry::credentials::SecretAnnouncer;
use crate::store::registry::{
    ClientSettings, Credential, CredentialSource, StageDeadline, Timeouts,
};

/// The environment variable a password may come in, for CI systems that hand secrets over as variables.
const PASSWORD_VARIABLE: &str = "IMAGEPIPE_PASSWORD";

/// Time the whole command has beyond `--timeout`, so that a request cut off by the deadline can report itself
/// (naming what was pending) before the command as a whole is stopped.
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// The command did not finish within `--timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the command did not finish within {} (`--timeout`)", humantime::format_duration(*.limit))]
pub struct CommandTimedOut {
    pub limit: Duration,
}

pub async fn run(cli: Cli, host: &mut dyn CiHost) -> anyhow::Result<()> {
    let limit = cli.registry.timeout;
    match tokio::time::timeout(limit + TIMEOUT_GRACE, run_command(cli, host)).await {
        Ok(result) => result,
        Err(_) => Err(CommandTimedOut { limit }.into()),
    }
}

async fn run_command(cli: Cli, host: &mut dyn CiHost) -> anyhow::Result<()> {
    let Cli {
        command,
        verbose,
        registry,
    } = cli;
    let run = RunIdentity::from_environment();
    match command {
        Command::Matrix(arguments) => {
            let MatrixArgs {
                manifest,
                filters,
                image_info,
                format,
            } = arguments;
            let format = match format {
                Some(MatrixFormat::Github) => matrix::Format::GitHub,
                Some(MatrixFormat::Azure) => matrix::Format::Azure,
                None => match ci::detect_kind() {
                    HostKind::AzurePipelines => matrix::Format::Azure,
                    HostKind::GitHubActions | HostKind::Local => matrix::Format::GitHub,
                },
            };
            let settings = matrix::Settings {
                manifest: manifest.manifest,
                variables: variables(manifest.variables, &run),
                filters: filters_of(filters),
                published_image_info: image_info,
                format,
                client: client_settings(registry, None, host)?,
            };
            matrix::run(settings, host).await
        }
        Command::CreateManifest(arguments) => {
            output_apart_from_manifest(
                arguments
                    .output
                    .as_ref()
                    .unwrap_or(&arguments.image_info.image_info),
                &arguments.manifest.manifest,
            )?;
            let staging = staging_location(&arguments.staging)?;
            let settings = create_manifest::Settings {
                manifest: arguments.manifest.manifest,
                variables: variables(arguments.manifest.variables, &run),
                image_info: arguments.image_info.image_info,
                output: arguments.output,
                expect_sha256: expected_sha256(arguments.image_info.expect_sha256)?,
                published_image_info: arguments.published.published_image_info,
                client: client_settings(registry, Some(&staging), host)?,
                staging,
                staging_prefix: arguments.staging.staging_prefix,
                media_type: match arguments.media_type {
                    IndexKind::Oci => create_manifest::IndexMediaType::Oci,
                    IndexKind::Docker => create_manifest::IndexMediaType::Docker,
                },
            };
            create_manifest::run(settings, &run, host).await
        }
        Command::Sign(arguments) => {
            if let Some(manifest) = &arguments.manifest {
                output_apart_from_manifest(
                    arguments
                        .output
                        .as_ref()
                        .unwrap_or(&arguments.image_info.image_info),
                    manifest,
                )?;
            }
            let staging = staging_location(&arguments.staging)?;
            let settings = sign::Settings {
                image_info: arguments.image_info.image_info,
                output: arguments.output,
                expect_sha256: expected_sha256(arguments.image_info.expect_sha256)?,
                manifest: arguments
                    .manifest
                    .map(|manifest| (manifest, variables(arguments.variables, &run))),
                key: signing_key_source(&arguments.key, host)?,
                password: cosign_password(host),
                client: client_settings(registry, Some(&staging), host)?,
                staging,
                staging_prefix: arguments.staging.staging_prefix,
                mode: match arguments.signature_mode {
                    SignatureModeArg::Tag => sign::SignatureMode::Tag,
                    SignatureModeArg::Referrers => sign::SignatureMode::Referrers,
                    SignatureModeArg::Auto => sign::SignatureMode::Auto,
                },
            };
            sign::run(settings, &run, host).await
        }
        Command::Verify(arguments) => {
            let staging = match &arguments.staging_registry {
                Some(registry) => Some(parse_location("--staging-registry", registry)?),
                None => None,
            };
            let client = client_settings(registry, staging.as_ref(), host)?;
            let settings = verify::Settings {
                image_info: arguments.image_info.image_info,
                expect_sha256: expected_sha256(arguments.image_info.expect_sha256)?,
                key: key_source(&arguments.key)?,
                staging: staging.map(|location| (location, arguments.staging_prefix)),
                client,
                verbose,
            };
            verify::run(settings, &run, host).await
        }
        Command::Test(arguments) => {
            let staging = staging_location(&arguments.staging)?;
            let settings = test::Settings {
                manifest: arguments.manifest.manifest,
                variables: variables(arguments.manifest.variables, &run),
                image_info: arguments.image_info.image_info,
                expect_sha256: expected_sha256(arguments.image_info.expect_sha256)?,
                command: arguments.command,
                client: client_settings(registry, Some(&staging), host)?,
                staging,
                staging_prefix: arguments.staging.staging_prefix,
                verbose,
            };
            test::run(settings, &run, host).await
        }
        Command::Publish(arguments) => {
            if let Some(manifest) = &arguments.manifest {
                output_apart_from_manifest(&arguments.output, manifest)?;
            }
            let staging = staging_location(&arguments.staging)?;
            let target = match &arguments.registry_override {
                Some(registry) => Some(parse_location("--registry-override", registry)?),
                None => None,
            };
            let settings = publish::Settings {
                image_info: arguments.image_info.image_info,
                expect_sha256: expected_sha256(arguments.image_info.expect_sha256)?,
                output: arguments.output,
                published_image_info: arguments.published.published_image_info,
                manifest: arguments
                    .manifest
                    .map(|manifest| (manifest, variables(arguments.variables, &run))),
                client: client_settings(registry, Some(&staging), host)?,
                staging,
                staging_prefix: arguments.staging.staging_prefix,
                registry_override: target,
                dry_run: arguments.dry_run,
                require_verify: arguments.require_verify,
                allow_unsigned: arguments.allow_unsigned,
                jobs: arguments.jobs.max(1),
            };
            publish::run(settings, &run, host).await
        }
        Command::PublishImageInfo(arguments) => {
            let token = std::env::var(&arguments.token_env).map_err(|_| {
                InvalidFlag(format!(
                    "--token-env: the environment variable `{}` holding the GitHub token is not set",
                    arguments.token_env
                ))
            })?;
            host.mask(&token);
            let settings = publish_image_info::Settings {
                image_info: arguments.image_info,
                manifest: arguments
                    .manifest
                    .map(|manifest| (manifest, variables(arguments.variables, &run))),
                repository: arguments.repo,
                path: arguments.path,
                branch: arguments.branch,
                token,
                api_url: arguments.api_url,
            };
            publish_image_info::run(settings, host).await
        }
        Command::Build(arguments) => {
            let staging = staging_location(&arguments.staging)?;
            let settings = build::Settings {
                manifest: arguments.manifest.manifest,
                variables: variables(arguments.manifest.variables, &run),
                leg: arguments.leg,
                filters: filters_of(arguments.filters),
                builder: builder_choice(arguments.builder),
                build_args: arguments.build_args.into_iter().collect(),
                fragments: arguments.fragments,
                client: client_settings(registry, Some(&staging), host)?,
                staging,
                staging_prefix: arguments.staging.staging_prefix,
            };
            build::run(settings, &run, host).await
        }
        Command::Run(arguments) => {
            let store = |flag: &str, text: Option<String>| -> anyhow::Result<Option<Location>> {
                text.map(|text| parse_location(flag, &text)).transpose()
            };
            let staging = store("--staging", arguments.staging)?;
            let public = store("--public", arguments.public)?;
            let key = match &arguments.key {
                Some(key) => Some((signing_key_source(key, host)?, cosign_password(host))),
                None => None,
            };
            let settings = run::Settings {
                manifest: arguments.manifest.manifest,
                variables: variables(arguments.manifest.variables, &run),
                work: arguments.work,
                client: client_settings(registry, staging.as_ref(), host)?,
                staging,
                public,
                key,
                builder: builder_choice(arguments.builder),
            };
            run::run(settings, &run, host).await
        }
        Command::Record(arguments) => {
            let staging = staging_location(&arguments.staging)?;
            let digest = arguments
                .digest
                .parse()
                .map_err(|error| InvalidFlag(format!("--digest: {error}")))?;
            let settings = record::Settings {
                manifest: arguments.manifest.manifest,
                variables: variables(arguments.manifest.variables, &run),
                dockerfile: arguments.dockerfile,
                digest,
                output: arguments.output,
                client: client_settings(registry, Some(&staging), host)?,
                staging,
                staging_prefix: arguments.staging.staging_prefix,
            };
            record::run(settings, &run, host).await
        }
        Command::GenerateKey(arguments) => {
            let settings = generate_key::Settings {
                prefix: arguments.output_prefix,
                force: arguments.force,
                password: cosign_password(host),
            };
            generate_key::run(settings)
        }
        Command::PostBuild(arguments) => {
            output_apart_from_manifest(&arguments.output, &arguments.manifest.manifest)?;
            let settings = post_build::Settings {
                manifest: arguments.manifest.manifest,
                variables: variables(arguments.manifest.variables, &run),
                fragments: arguments.fragments,
                output: arguments.output,
            };
            post_build::run(settings, &run, host)
        }
        Command::Validate(arguments) => {
            let settings = validate::Settings {
                manifest: arguments.manifest,
                image_info: arguments.image_info,
                variables: variables(arguments.variables, &run),
            };
            validate::run(settings)
        }
        Command::Ci(CiCommand::Step(arguments)) => {
            action::step::run(arguments.stage.as_deref(), host)
        }
        Command::Ci(CiCommand::Generate(arguments)) => {
            action::generate::run(&arguments.root, arguments.check)
        }
        Command::Schema(arguments) => {
            let format = match arguments.format {
                SchemaFormat::Manifest => schema::Format::Manifest,
                SchemaFormat::ImageInfo => schema::Format::ImageInfo,
            };
            schema::run(format)
        }
    }
}

fn variables(arguments: VariableArgs, run: &RunIdentity) -> BTreeMap<String, String> {
    let VariableArgs { variables } = arguments;
    stages::manifest_variables(variables, run)
}

fn filters_of(arguments: FilterArgs) -> Filters {
    let FilterArgs {
        os_type,
        os_version,
        architecture,
        path,
    } = arguments;
    Filters {
        os_type,
        os_version,
        architecture,
        paths: path.into_iter().filter(|path| !path.is_empty()).collect(),
    }
}

fn builder_choice(kind: BuilderKind) -> BuilderChoice {
    match kind {
        BuilderKind::Auto => BuilderChoice::Auto,
        BuilderKind::Buildah => BuilderChoice::Buildah,
        BuilderKind::Buildx => BuilderChoice::Buildx,
        BuilderKind::Native => BuilderChoice::Native,
    }
}

fn staging_location(arguments: &StagingArgs) -> anyhow::Result<Location> {
    parse_location("--staging-registry", &arguments.staging_registry)
}

/// A store location given with `flag`, which the error names.
fn parse_location(flag: &str, text: &str) -> anyhow::Result<Location> {
    let location = text
        .parse()
        .map_err(|error| anyhow::Error::new(InvalidFlag(format!("{flag}: {error}"))))?;
    if let Location::Layout(folder) = &location {
        if folder.exists() && !folder.is_dir() {
            return Err(InvalidFlag(format!(
                "{flag}: `{text}` names a file, but an OCI layout store is a folder"
            ))
            .into());
        }
    }
    Ok(location)
}

/// Refuses an `--output` that is the manifest the stage reads: a template slip that would replace it.
fn output_apart_from_manifest(output: &Path, manifest: &Path) -> anyhow::Result<()> {
    match (output.canonicalize(), manifest.canonicalize()) {
        (Ok(output_file), Ok(manifest_file)) if output_file == manifest_file => Err(InvalidFlag(
            format!(
                "--output: `{}` is the manifest given with `--manifest`; writing image-info there would replace it",
                output.display()
            ),
        )
        .into()),
        _ => Ok(()),
    }
}

/// `--ca-cert` files: each must be readable and hold a PEM certificate, checked here so that a wrong path is
/// an invalid flag (exit 2) even for a command that reaches no registry.
fn checked_ca_certificates(files: Vec<PathBuf>) -> anyhow::Result<Vec<PathBuf>> {
    for file in &files {
        let text = std::fs::read(file).map_err(|error| {
            InvalidFlag(format!(
                "--ca-cert: cannot read `{}`: {error}",
                file.display()
            ))
        })?;
        if !String::from_utf8_lossy(&text).contains("-----BEGIN CERTIFICATE-----") {
            return Err(InvalidFlag(format!(
                "--ca-cert: `{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                file.display()
            ))
            .into());
        }
    }
    Ok(files)
}

/// `--expect-sha256`, checked for form: a value that is no SHA-256 at all is a wrong flag (a template passing
/// the wrong output), not a file changed on the way.
fn expected_sha256(value: Option<String>) -> anyhow::Result<Option<String>> {
    if let Some(text) = &value {
        let hex = text.trim().trim_start_matches("sha256:");
        if hex.len() != 64 || !hex.chars().all(|character| character.is_ascii_hexdigit()) {
            return Err(InvalidFlag(format!(
                "--expect-sha256: `{text}` is not a SHA-256: expected 64 hex digits, the `image-info-sha256` output of the previous stage"
            ))
            .into());
        }
    }
    Ok(value)
}

fn key_source(text: &str) -> anyhow::Result<KeySource> {
    text.parse()
        .map_err(|error| anyhow::Error::new(InvalidFlag(format!("--key: {error}"))))
}

/// A private key's source; a key given as `env://VAR` is masked first, since its text is a secret the CI host
/// may not know (a variable set by a script rather than a declared secret).
fn signing_key_source(text: &str, host: &mut dyn CiHost) -> anyhow::Result<KeySource> {
    let source = key_source(text)?;
    if let KeySource::Environment(variable) = &source {
        if let Some(key) = std::env::var_os(variable) {
            host.mask(&key.to_string_lossy());
        }
    }
    Ok(source)
}

/// The password of a cosign key, from where cosign reads it, masked; empty when unset, as cosign allows.
fn cosign_password(host: &mut dyn CiHost) -> Vec<u8> {
    let password = std::env::var_os("COSIGN_PASSWORD").unwrap_or_default();
    if !password.is_empty() {
        host.mask(&password.to_string_lossy());
    }
    password.into_encoded_bytes()
}

/// The registry client's settings. Explicit credentials (`--username` with `--password-stdin` or
/// `IMAGEPIPE_PASSWORD`) are for the staging registry only; every other registry's come from Docker's config.
fn client_settings(
    arguments: RegistryArgs,
    staging: Option<&Location>,
    host: &mut dyn CiHost,
) -> anyhow::Result<ClientSettings> {
    let RegistryArgs {
        insecure_registry,
        ca_cert,
        username,
        password_stdin,
        timeout,
    } = arguments;
    // Docker's config is read when a registry is first reached: the host masks each secret found there
    // before the request that uses it.
    let masker = host.masker();
    let mut credentials = CredentialSource::from_environment()
        .announcing_secrets_to(SecretAnnouncer::new(move |secret| masker(secret)));
    if let (Some(username), Some(Location::Registry(registry))) = (username, staging) {
        let password = if password_stdin {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).map_err(|error| {
                InvalidFlag(format!(
                    "--password-stdin: cannot read standard input: {error}"
                ))
            })?;
            password.trim_end_matches(['\r', '\n']).to_owned()
        } else {
            std::env::var(PASSWORD_VARIABLE).map_err(|_| {
                InvalidFlag(format!("--username needs a password: pass it on standard input with --password-stdin, or set {PASSWORD_VARIABLE}"))
            })?
        };
        let credential = Credential::Basic { username, password };
        for secret in credential.secrets() {
            host.mask(&secret);
        }
        credentials = credentials.with_explicit(registry, credential);
    }
    Ok(ClientSettings {
        insecure_registries: insecure_registry,
        ca_certificates: checked_ca_certificates(ca_cert)?,
        credentials,
        timeouts: Timeouts {
            stage: Some(StageDeadline::after(timeout)),
            ..Timeouts::default()
        },
        ..ClientSettings::default()
    })
}
