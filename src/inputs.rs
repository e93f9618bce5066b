//! Loading the pipeline's input files: manifests with their includes, image-info files and fragment folders.
//! Everything loaded here has been checked, so stages work from valid data only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::files::{self, FileError};
use crate::model::image_info::ImageInfo;
use crate::model::issue::{Issue, JsonPath, quoted};
use crate::model::manifest::Manifest;
use crate::model::merge::Fragment;
use crate::model::naming::PublicRegistry;

const MANIFEST_DOCUMENT: &str = "a manifest.json document (see `imagepipe schema manifest`)";
const IMAGE_INFO_DOCUMENT: &str = "an image-info.json document (see `imagepipe schema image-info`)";

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{}", invalid_summary(.file, .issues))]
    Invalid {
        file: PathBuf,
        /// Every problem, so a user fixes the file in one pass rather than one error per run.
        issues: Vec<Issue>,
    },
    #[error("cannot list `{folder}`", folder = .folder.display())]
    List {
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{folder}` holds no fragments (`*.json` files)", folder = .folder.display())]
    NoFragments { folder: PathBuf },
    #[error("`{file}` has SHA-256 `{actual}`, but the previous stage wrote `{expected}`", file = .file.display())]
    Changed {
        file: PathBuf,
        expected: String,
        actual: String,
    },
}

/// One problem is the message itself; several are counted here and listed one per line by the reporter.
fn invalid_summary(file: &Path, issues: &[Issue]) -> String {
    match issues {
        [only] => only.to_string(),
        all => format!("`{}` has {} problems", file.display(), all.len()),
    }
}

impl InputError {
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoFragments { .. } => Some(
                "point `--fragments` at the folder the build legs' artifacts were downloaded into"
                    .to_owned(),
            ),
            Self::Changed { .. } => Some(
                "pass the image-info artifact of the previous stage unchanged, or drop `--expect-sha256` (the input `expect-image-info-sha256`)".to_owned(),
            ),
            _ => None,
        }
    }

    /// Every problem found, for reporting one per line.
    pub fn issues(&self) -> &[Issue] {
        match self {
            Self::Invalid { issues, .. } => issues,
            Self::File(FileError::Parse { issue }) => std::slice::from_ref(issue),
            _ => &[],
        }
    }
}

/// Loads a manifest, merges its includes, expands its variables (`overrides` win) and checks it.
pub fn load_manifest(
    file: &Path,
    overrides: &BTreeMap<String, String>,
) -> Result<Manifest, InputError> {
    let mut issues = Vec::new();
    let written = read_with_includes(file, &mut Vec::new(), &mut issues)?;
    let invalid = |issues: Vec<Issue>| InputError::Invalid {
        file: file.to_owned(),
        issues,
    };
    if !issues.is_empty() {
        return Err(invalid(issues));
    }
    let (resolved, mut issues) = written.resolve(overrides);
    // A reference that could not be expanded also makes a bad tag or path there: report the cause only.
    let unresolved: Vec<JsonPath> = issues.iter().map(|issue| issue.path.clone()).collect();
    issues.extend(
        resolved
            .check()
            .into_iter()
            .filter(|issue| !unresolved.contains(&issue.path)),
    );
    if issues.is_empty() {
        Ok(resolved)
    } else {
        Err(invalid(issues))
    }
}

/// Reads `file` and, depth first, the files it includes (relative to it). `stack` holds the files being read,
/// to catch a file that includes itself.
fn read_with_includes(
    file: &Path,
    stack: &mut Vec<PathBuf>,
    issues: &mut Vec<Issue>,
) -> Result<Manifest, InputError> {
    let mut manifest: Manifest = files::read(file, MANIFEST_DOCUMENT)?;
    manifest.locate(file);
    let identity = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    stack.push(identity);
    let folder = file.parent().unwrap_or(Path::new(""));
    for (index, include) in manifest.includes.clone().iter().enumerate() {
        let included_file = folder.join(include);
        let included_identity =
            std::fs::canonicalize(&included_file).unwrap_or_else(|_| included_file.clone());
        if stack.contains(&included_identity) {
            issues.push(Issue::new(
                file,
                JsonPath::root().key("includes").index(index),
                format!("{}, which includes this file again", quoted(include)),
                "includes that form no cycle",
            ));
            continue;
        }
        let included = read_with_includes(&included_file, stack, issues)?;
        issues.extend(manifest.include(file, included));
    }
    manifest.includes.clear();
    stack.pop();
    Ok(manifest)
}

/// Reads a manifest exactly as written, without includes or variable expansion: what a round trip saves.
pub fn read_manifest_as_written(file: &Path) -> Result<Manifest, InputError> {
    Ok(files::read(file, MANIFEST_DOCUMENT)?)
}

/// Loads and checks an image-info file.
pub fn load_image_info(file: &Path) -> Result<ImageInfo, InputError> {
    let info: ImageInfo = files::read(file, IMAGE_INFO_DOCUMENT)?;
    check_image_info(info, file)
}

/// Parses and checks image-info read from elsewhere than a file (a repository's committed copy); `name` says
/// where it came from in messages.
pub fn parse_image_info(bytes: &[u8], name: &Path) -> Result<ImageInfo, InputError> {
    let info: ImageInfo = files::parse(bytes, name, IMAGE_INFO_DOCUMENT)?;
    check_image_info(info, name)
}

fn check_image_info(info: ImageInfo, file: &Path) -> Result<ImageInfo, InputError> {
    let issues = info.check(file);
    if issues.is_empty() {
        Ok(info)
    } else {
        Err(InputError::Invalid {
            file: file.to_owned(),
            issues,
        })
    }
}

/// Refuses image-info whose digests name another registry than `manifest`'s: the name is what gets signed and
/// published. (Loading already held the file to the registry most of its digests name.)
pub fn require_manifest_registry(
    info: &ImageInfo,
    file: &Path,
    manifest: &Manifest,
) -> Result<(), InputError> {
    let public = PublicRegistry::from_manifest(manifest.registry.as_deref());
    let issues = info.check_registry(file, &public);
    if issues.is_empty() {
        Ok(())
    } else {
        Err(InputError::Invalid {
            file: file.to_owned(),
            issues,
        })
    }
}

/// Loads the image-info last published from `manifest`'s repositories, held to its registry.
pub fn load_published_image_info(
    file: &Path,
    manifest: &Manifest,
) -> Result<ImageInfo, InputError> {
    let published = load_image_info(file)?;
    require_manifest_registry(&published, file, manifest)?;
    Ok(published)
}

/// Loads an image-info file handed on by the previous stage, refusing one whose SHA-256 is not the one that
/// stage announced (`expect-sha256`): a file changed on the way is not what was built.
pub fn load_image_info_expecting(
    file: &Path,
    expected_sha256: Option<&str>,
) -> Result<ImageInfo, InputError> {
    if let Some(expected) = expected_sha256 {
        let bytes = std::fs::read(file).map_err(|source| FileError::Read {
            file: file.to_owned(),
            source,
        })?;
        let actual = crate::model::reference::Digest::of(&bytes);
        let expected = expected
            .trim()
            .trim_start_matches("sha256:")
            .to_ascii_lowercase();
        if actual.hex() != expected {
            return Err(InputError::Changed {
                file: file.to_owned(),
                expected,
                actual: actual.hex().to_owned(),
            });
        }
    }
    load_image_info(file)
}

/// The `*.json` files directly in `folder`, in name order.
pub fn list_fragments(folder: &Path) -> Result<Vec<PathBuf>, InputError> {
    let error = |source| InputError::List {
        folder: folder.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(error)? {
        let path = entry.map_err(error)?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "json")
            && path.is_file()
        {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(InputError::NoFragments {
            folder: folder.to_owned(),
        });
    }
    files.sort();
    Ok(files)
}

pub fn load_fragments(files: &[PathBuf]) -> Result<Vec<Fragment>, InputError> {
    files
        .iter()
        .map(|file| {
            Ok(Fragment {
                file: file.clone(),
                info: load_image_info(file)?,
            })
        })
        .collect()
}
