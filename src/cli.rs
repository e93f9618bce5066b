//! The command line: clap types only. Dispatch turns these into each stage's settings, so clap never reaches
//! the stages.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "imagepipe",
    version,
    about = "Release multi-architecture container images in typed stages, with every published digest signed",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log more detail (each file read and written, each decision) and print every row of the verify and test
    /// reports, not only the failed ones
    #[arg(long, short, global = true, env = "IMAGEPIPE_VERBOSE")]
    pub verbose: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How registries are reached; these apply to every command that talks to one.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Allow plain HTTP and unverified TLS for this registry host (repeatable); loopback hosts need no flag
    #[arg(
        long,
        value_name = "HOST",
        global = true,
        env = "IMAGEPIPE_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,

    /// Trust this CA certificate (PEM) in addition to the system's (repeatable)
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        env = "IMAGEPIPE_CA_CERT",
        value_delimiter = ','
    )]
    pub ca_cert: Vec<PathBuf>,

    /// User name for the staging registry; the password comes from `--password-stdin` or `IMAGEPIPE_PASSWORD`.
    /// Without it, credentials come from Docker's config.json (`DOCKER_CONFIG`)
    #[arg(long, value_name = "NAME", global = true, env = "IMAGEPIPE_USERNAME")]
    pub username: Option<String>,

    /// Read the staging registry's password from standard input
    #[arg(
        long,
        global = true,
        env = "IMAGEPIPE_PASSWORD_STDIN",
        requires = "username"
    )]
    pub password_stdin: bool,

    /// The stage's time limit, e.g. `90s`, `30m` or `2h`: no registry request, retry or wait runs past it, and a
    /// stage still running then stops with exit code 1, naming what was pending
    #[arg(
        long,
        value_name = "DURATION",
        global = true,
        env = "IMAGEPIPE_TIMEOUT",
        default_value = "60m",
        value_parser = humantime::parse_duration
    )]
    pub timeout: std::time::Duration,
}

/// Where staging is: the registry (or `oci:DIR`) images are pushed to before publishing.
#[derive(Debug, Args)]
pub struct StagingArgs {
    /// The staging store: `HOST[:PORT]` of a registry, or `oci:DIR` for an OCI layout folder
    #[arg(long, value_name = "R", env = "IMAGEPIPE_STAGING_REGISTRY")]
    pub staging_registry: String,

    /// A path put before each repository in staging, e.g. `staging/<run-id>`
    #[arg(long, value_name = "P", env = "IMAGEPIPE_STAGING_PREFIX")]
    pub staging_prefix: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the build legs as a GitHub or Azure Pipelines job matrix, leaving out what is unchanged
    Matrix(MatrixArgs),
    /// Merge the build legs' image-info fragments into one image-info.json
    PostBuild(PostBuildArgs),
    /// Create and push one manifest list per image with shared tags, before anything is signed
    CreateManifest(CreateManifestArgs),
    /// Sign every digest in image-info, platform images and manifest lists alike
    Sign(SignArgs),
    /// Check that every digest in image-info carries a valid signature by a key
    Verify(VerifyArgs),
    /// Check that staging holds exactly what image-info records, and run a test command per platform
    Test(TestArgs),
    /// Copy what was signed, byte for byte with its signatures, to the public registry, then tag it
    Publish(PublishArgs),
    /// Commit the final image-info.json into a GitHub repository
    PublishImageInfo(PublishImageInfoArgs),
    /// Write the fragment for an image another tool built and pushed to staging by digest
    Record(RecordArgs),
    /// Build one leg's platforms (or every leg) in dependency order, push them to staging, write fragments
    Build(BuildArgs),
    /// The whole release on this machine: build, post-build, create-manifest, sign, verify, test, publish
    Run(RunArgs),
    /// Write a cosign-compatible key pair, the private key encrypted with COSIGN_PASSWORD
    GenerateKey(GenerateKeyArgs),
    /// Check manifest.json and image-info.json files, listing every problem
    Validate(ValidateArgs),
    /// Print the JSON Schema of manifest.json or image-info.json
    Schema(SchemaArgs),
    /// Run as a GitHub Action or Azure Pipelines step, or generate the files that declare the steps
    #[command(subcommand)]
    Ci(CiCommand),
}

#[derive(Debug, Subcommand)]
pub enum CiCommand {
    /// Run one stage from the CI host's `INPUT_*` variables (what the action and the task run)
    Step(StepArgs),
    /// Write action.yml, dist/<stage>/, the Azure task.json and docs/inputs.md from the stages' declarations
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct StepArgs {
    /// The stage; read from the `stage` input when not given
    pub stage: Option<String>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The repository to write into
    #[arg(long, value_name = "DIR", default_value = ".", env = "IMAGEPIPE_ROOT")]
    pub root: PathBuf,

    /// Write nothing; fail, naming them, when generated files differ from what the declarations make
    #[arg(long, env = "IMAGEPIPE_CHECK")]
    pub check: bool,
}

/// How a manifest is read: the file, and values for its `$(name)` references.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The manifest.json describing what to build
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_MANIFEST")]
    pub manifest: PathBuf,

    #[command(flatten)]
    pub variables: VariableArgs,
}

/// Values for a manifest's `$(name)` references.
#[derive(Debug, Args)]
pub struct VariableArgs {
    /// Set a manifest variable, overriding its value in the file (repeatable; `UniqueId` sets the built-in)
    #[arg(
        long = "var",
        value_name = "NAME=VALUE",
        env = "IMAGEPIPE_VAR",
        value_delimiter = '\n',
        value_parser = parse_variable
    )]
    pub variables: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// The image-info.json last published: platforms whose Dockerfile folder and base image are unchanged since
    /// are left out
    #[arg(long, value_name = "PUBLISHED", env = "IMAGEPIPE_IMAGE_INFO")]
    pub image_info: Option<PathBuf>,

    /// The matrix's form (default: Azure under Azure Pipelines, else GitHub)
    #[arg(long, value_enum, env = "IMAGEPIPE_FORMAT")]
    pub format: Option<MatrixFormat>,
}

/// Which platforms of the manifest a stage plans or builds.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Plan only platforms of this OS (`linux`, `windows`)
    #[arg(long, value_name = "T", env = "IMAGEPIPE_OS_TYPE")]
    pub os_type: Option<String>,

    /// Plan only platforms of this OS version, or of a pattern of one (`*bookworm*`)
    #[arg(long, value_name = "V", env = "IMAGEPIPE_OS_VERSION")]
    pub os_version: Option<String>,

    /// Plan only platforms of this architecture (`amd64`, `arm64`, `arm`)
    #[arg(long, value_name = "A", env = "IMAGEPIPE_ARCHITECTURE")]
    pub architecture: Option<String>,

    /// Plan only the Dockerfiles whose folder matches (repeatable, or separated by spaces; `*` within a folder
    /// name, `**` across folders), with the Dockerfiles they are built from
    #[arg(
        long,
        value_name = "GLOB",
        env = "IMAGEPIPE_PATH",
        value_delimiter = ' '
    )]
    pub path: Vec<String>,
}

/// Which builder builds the images.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BuilderKind {
    /// buildx when a Docker engine answers, else buildah when installed, else native
    Auto,
    Buildah,
    Buildx,
    /// Daemonless, for Dockerfiles without `RUN`: every architecture on any machine
    Native,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// The leg to build, as `imagepipe matrix` names it (default: every leg the filters keep)
    #[arg(long, value_name = "NAME", env = "IMAGEPIPE_LEG")]
    pub leg: Option<String>,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[arg(long, value_enum, default_value_t = BuilderKind::Auto, env = "IMAGEPIPE_BUILDER")]
    pub builder: BuilderKind,

    /// A build argument over the manifest's `buildArgs` (repeatable)
    #[arg(long = "build-arg", value_name = "NAME=VALUE", env = "IMAGEPIPE_BUILD_ARG", value_delimiter = '\n', value_parser = parse_variable)]
    pub build_args: Vec<(String, String)>,

    #[command(flatten)]
    pub staging: StagingArgs,

    /// The folder the fragments `<leg>.attempt-<N>.json` are written to
    #[arg(
        long,
        value_name = "DIR",
        default_value = "fragments",
        env = "IMAGEPIPE_FRAGMENTS"
    )]
    pub fragments: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// The folder for fragments, image-info files, the generated key and the default stores
    #[arg(
        long,
        value_name = "DIR",
        default_value = "imagepipe-work",
        env = "IMAGEPIPE_WORK"
    )]
    pub work: PathBuf,

    /// Staging (`HOST[:PORT]` or `oci:DIR`; default: `oci:WORK/staging`)
    #[arg(long, value_name = "R", env = "IMAGEPIPE_STAGING")]
    pub staging: Option<String>,

    /// Where to publish (`HOST[:PORT]` or `oci:DIR`; default: `oci:WORK/public`)
    #[arg(long, value_name = "R", env = "IMAGEPIPE_PUBLIC")]
    pub public: Option<String>,

    /// The signing key (password in COSIGN_PASSWORD); default: a key pair generated into WORK
    #[arg(long, value_name = "KEY", env = "IMAGEPIPE_KEY")]
    pub key: Option<String>,

    #[arg(long, value_enum, default_value_t = BuilderKind::Auto, env = "IMAGEPIPE_BUILDER")]
    pub builder: BuilderKind,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MatrixFormat {
    /// `{"include": [leg, …]}` for `strategy.matrix: ${{ fromJSON(…) }}`
    Github,
    /// `{"leg_name": {variable: value}, …}` for `strategy.matrix: $[ … ]`
    Azure,
}

#[derive(Debug, Args)]
pub struct PostBuildArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// The folder holding the fragments (`*.json`) the build legs wrote
    #[arg(long, value_name = "DIR", env = "IMAGEPIPE_FRAGMENTS")]
    pub fragments: PathBuf,

    /// Where to write the merged image-info.json
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_OUTPUT")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct CreateManifestArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    #[command(flatten)]
    pub image_info: ImageInfoArgs,

    /// Where to write the updated image-info.json (default: `--image-info`, replaced atomically)
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_OUTPUT")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub published: PublishedImageInfoArgs,

    #[command(flatten)]
    pub staging: StagingArgs,

    /// The kind of manifest list to write
    #[arg(long, value_enum, default_value_t = IndexKind::Oci, env = "IMAGEPIPE_MEDIA_TYPE")]
    pub media_type: IndexKind,
}

/// The record of what is published, which a partial run completes.
#[derive(Debug, Args)]
pub struct PublishedImageInfoArgs {
    /// The image-info.json last published: the record of every platform this run does not rebuild
    #[arg(
        long,
        value_name = "FILE",
        env = "IMAGEPIPE_PUBLISHED_IMAGE_INFO",
        requires = "manifest"
    )]
    pub published_image_info: Option<PathBuf>,
}

/// The image-info a stage reads and updates, and the check that it is the file the previous stage wrote.
#[derive(Debug, Args)]
pub struct ImageInfoArgs {
    /// The image-info.json the previous stage wrote
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_IMAGE_INFO")]
    pub image_info: PathBuf,

    /// Refuse an image-info whose SHA-256 differs (the `image-info-sha256` output of the previous stage)
    #[arg(long, value_name = "HEX", env = "IMAGEPIPE_EXPECT_SHA256")]
    pub expect_sha256: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub image_info: ImageInfoArgs,

    /// Where to write the updated image-info.json (default: `--image-info`, replaced atomically)
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_OUTPUT")]
    pub output: Option<PathBuf>,

    /// The private key: a cosign key file (password in COSIGN_PASSWORD), a PKCS#8 PEM file, or `env://VAR`
    #[arg(long, value_name = "KEY", env = "IMAGEPIPE_KEY")]
    pub key: String,

    /// The manifest.json: with it, every image it gives shared tags must have its manifest list first
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_MANIFEST")]
    pub manifest: Option<PathBuf>,

    #[command(flatten)]
    pub variables: VariableArgs,

    #[command(flatten)]
    pub staging: StagingArgs,

    /// Where signatures are stored: the `.sig` tag, OCI 1.1 referrers, or referrers where the registry has the API
    #[arg(long, value_enum, default_value_t = SignatureModeArg::Tag, env = "IMAGEPIPE_SIGNATURE_MODE")]
    pub signature_mode: SignatureModeArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SignatureModeArg {
    Tag,
    Referrers,
    Auto,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub image_info: ImageInfoArgs,

    /// The public key (PEM) signatures must verify with, or `env://VAR`
    #[arg(long, value_name = "PUBLIC_KEY", env = "IMAGEPIPE_KEY")]
    pub key: String,

    /// Check staging instead of the public registry the digests name
    #[arg(long, value_name = "R", env = "IMAGEPIPE_STAGING_REGISTRY")]
    pub staging_registry: Option<String>,

    /// The path put before each repository in staging
    #[arg(
        long,
        value_name = "P",
        env = "IMAGEPIPE_STAGING_PREFIX",
        requires = "staging_registry"
    )]
    pub staging_prefix: Option<String>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    #[command(flatten)]
    pub image_info: ImageInfoArgs,

    #[command(flatten)]
    pub staging: StagingArgs,

    /// A command run once per platform image, with IMAGEPIPE_IMAGE, IMAGEPIPE_PLATFORM, IMAGEPIPE_REPO and
    /// IMAGEPIPE_TAGS in its environment (run by `sh -c`)
    #[arg(long, value_name = "CMD", env = "IMAGEPIPE_COMMAND")]
    pub command: Option<String>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub image_info: ImageInfoArgs,

    #[command(flatten)]
    pub staging: StagingArgs,

    /// Publish to this registry instead of the one image-info names (`HOST[:PORT]` or `oci:DIR`)
    #[arg(long, value_name = "R2", env = "IMAGEPIPE_REGISTRY_OVERRIDE")]
    pub registry_override: Option<String>,

    /// Print what would be copied and tagged, and touch nothing
    #[arg(long, env = "IMAGEPIPE_DRY_RUN")]
    pub dry_run: bool,

    /// Where to write the final image-info.json: with `--published-image-info`, the published record with this
    /// run's images replacing theirs
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_OUTPUT")]
    pub output: PathBuf,

    #[command(flatten)]
    pub published: PublishedImageInfoArgs,

    /// The manifest.json: needed with `--published-image-info`, to drop what it no longer declares
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_MANIFEST")]
    pub manifest: Option<PathBuf>,

    #[command(flatten)]
    pub variables: VariableArgs,

    /// Refuse unless `verify` ran after `sign`
    #[arg(long, env = "IMAGEPIPE_REQUIRE_VERIFY")]
    pub require_verify: bool,

    /// Publish without signatures (for projects that do not sign); logged loudly
    #[arg(
        long,
        env = "IMAGEPIPE_ALLOW_UNSIGNED",
        conflicts_with = "require_verify"
    )]
    pub allow_unsigned: bool,

    /// Images copied at once, and lookups and tags set at once (each image's own objects are copied
    /// concurrently too): a remote registry is latency-bound, so many small requests in flight pay off
    #[arg(long, value_name = "N", default_value_t = 64, env = "IMAGEPIPE_JOBS")]
    pub jobs: usize,
}

#[derive(Debug, Args)]
pub struct PublishImageInfoArgs {
    /// The final image-info.json to commit
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_IMAGE_INFO")]
    pub image_info: PathBuf,

    /// The manifest.json: with it, the file is merged into the one already committed (this run's images
    /// replacing theirs, what the manifest no longer declares dropped) instead of replacing it
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_MANIFEST")]
    pub manifest: Option<PathBuf>,

    #[command(flatten)]
    pub variables: VariableArgs,

    /// The GitHub repository, `OWNER/NAME`
    #[arg(long, value_name = "OWNER/NAME", env = "IMAGEPIPE_REPO")]
    pub repo: String,

    /// The file's path in the repository
    #[arg(long, value_name = "P", env = "IMAGEPIPE_PATH")]
    pub path: String,

    /// The branch to commit to (default: the repository's default branch)
    #[arg(long, value_name = "B", env = "IMAGEPIPE_BRANCH")]
    pub branch: Option<String>,

    /// The environment variable holding the token
    #[arg(
        long,
        value_name = "VAR",
        default_value = "GITHUB_TOKEN",
        env = "IMAGEPIPE_TOKEN_ENV"
    )]
    pub token_env: String,

    /// The GitHub API, for GitHub Enterprise Server (e.g. `https://github.example.com/api/v3`)
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://api.github.com",
        env = "IMAGEPIPE_API_URL"
    )]
    pub api_url: String,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// The Dockerfile (or its folder) as the manifest names it
    #[arg(long, value_name = "PATH", env = "IMAGEPIPE_DOCKERFILE")]
    pub dockerfile: String,

    /// The digest the other tool pushed to staging (`sha256:…`)
    #[arg(long, value_name = "DIGEST", env = "IMAGEPIPE_DIGEST")]
    pub digest: String,

    #[command(flatten)]
    pub staging: StagingArgs,

    /// Where to write the fragment, e.g. `fragments/<leg>.attempt-<N>.json`
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_OUTPUT")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct GenerateKeyArgs {
    /// Write PREFIX.key and PREFIX.pub
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "cosign",
        env = "IMAGEPIPE_OUTPUT_PREFIX"
    )]
    pub output_prefix: PathBuf,

    /// Replace existing key files
    #[arg(long, env = "IMAGEPIPE_FORCE")]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IndexKind {
    /// An OCI image index
    Oci,
    /// A Docker manifest list
    Docker,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("files").required(true).multiple(true).args(["manifest", "image_info"]))]
pub struct ValidateArgs {
    /// A manifest.json to check (its includes are checked too)
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_MANIFEST")]
    pub manifest: Option<PathBuf>,

    /// An image-info.json to check
    #[arg(long, value_name = "FILE", env = "IMAGEPIPE_IMAGE_INFO")]
    pub image_info: Option<PathBuf>,

    #[command(flatten)]
    pub variables: VariableArgs,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file format
    #[arg(value_enum)]
    pub format: SchemaFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemaFormat {
    Manifest,
    ImageInfo,
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected `NAME=VALUE`, found `{text}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_reads_its_environment_variable() {
        fn visit(command: &clap::Command, missing: &mut Vec<String>) {
            for argument in command.get_arguments() {
                let Some(long) = argument.get_long() else {
                    continue;
                };
                if matches!(long, "help" | "version") {
                    continue;
                }
                let expected = format!("IMAGEPIPE_{}", long.to_uppercase().replace('-', "_"));
                if argument.get_env().and_then(|name| name.to_str()) != Some(expected.as_str()) {
                    missing.push(format!(
                        "{} --{long}: expected env {expected}",
                        command.get_name()
                    ));
                }
            }
            for subcommand in command.get_subcommands() {
                visit(subcommand, missing);
            }
        }
        let mut missing = Vec::new();
        visit(&Cli::command(), &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn variables_need_a_name() {
        assert_eq!(parse_variable("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_variable("a="), Ok(("a".into(), String::new())));
        assert!(parse_variable("=b").is_err());
        assert!(parse_variable("ab").is_err());
    }
}
