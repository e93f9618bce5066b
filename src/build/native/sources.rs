//! What one `COPY`/`ADD` takes from the build context and where each file lands in the image: the entries of its
//! layer, sorted by path, each once (a later source wins over an earlier one for the same path), with an entry
//! for every folder above an entry, as jib and ko write them.
//!
//! Sources are relative to the context (a leading `/` or `..` cannot leave it, as in Docker); `*` and `?` match
//! within one path component. A source named directly is followed if it is a symbolic link, and refused if that
//! leads outside the context; links inside a copied folder stay links. A destination ending in `/` is a folder
//! the sources go into; otherwise a file source becomes that path. A folder source's contents go into the
//! destination.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use super::config::{Files, absolute};

/// Why a layer cannot be built.
#[derive(Debug)]
pub(super) enum LayerError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// A source names nothing in the context.
    NotFound {
        source: String,
    },
    /// `ADD` of a local archive, which Docker would unpack.
    Archive {
        path: PathBuf,
    },
}

/// What an entry of the archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Folder,
    /// `executable`: any execute bit is set.
    File {
        source: PathBuf,
        executable: bool,
    },
    Link {
        target: String,
    },
}

/// The ignore file a build of `dockerfile` in `context` would obey, if it has any rule: this builder does not
/// apply them, so the caller refuses the build.
pub(super) fn ignore_file(context: &Path, dockerfile: &Path) -> Option<PathBuf> {
    let specific = dockerfile.file_name().map(|name| {
        let mut name = name.to_os_string();
        name.push(".dockerignore");
        dockerfile.with_file_name(name)
    });
    let mut candidates = specific
        .into_iter()
        .chain(std::iter::once(context.join(".dockerignore")));
    candidates.find(|candidate| {
        fs::read_to_string(candidate).is_ok_and(|text| {
            text.lines()
                .map(str::trim)
                .any(|line| !line.is_empty() && !line.starts_with('#'))
        })
    })
}

/// Every entry of the layer by its path in the archive (relative, no trailing `/`), sorted.
pub(super) fn entries(context: &Path, files: &Files) -> Result<BTreeMap<String, Kind>, LayerError> {
    let root = fs::canonicalize(context).map_err(|source| io_error(context, source))?;
    let destination = files.destination.trim_start_matches('/');
    let into_folder = files.destination.ends_with('/');
    let mut entries = BTreeMap::new();
    for source in &files.sources {
        let matches = expand(&root, source)?;
        if matches.is_empty() {
            return Err(LayerError::NotFound {
                source: source.clone(),
            });
        }
        for relative in matches {
            let path = root.join(&relative);
            let resolved = fs::canonicalize(&path).map_err(|error| match error.kind() {
                io::ErrorKind::NotFound => LayerError::NotFound {
                    source: source.clone(),
                },
                _ => io_error(&path, error),
            })?;
            if !resolved.starts_with(&root) {
                return Err(io_error(
                    &path,
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "it resolves to outside the build context",
                    ),
                ));
            }
            let metadata = fs::metadata(&resolved).map_err(|error| io_error(&path, error))?;
            if metadata.is_dir() {
                let folder = destination.trim_end_matches('/');
                if !folder.is_empty() {
                    entries.insert(folder.to_owned(), Kind::Folder);
                }
                walk(&resolved, folder, &mut entries)?;
            } else if metadata.is_file() {
                if files.add && is_archive(&resolved)? {
                    return Err(LayerError::Archive { path });
                }
                let target = if into_folder {
                    let name = utf8(&path, relative.file_name().unwrap_or_default())?;
                    format!("{destination}{name}")
                } else {
                    destination.to_owned()
                };
                entries.insert(
                    target,
                    Kind::File {
                        executable: is_executable(&metadata),
                        source: resolved,
                    },
                );
            } else {
                return Err(special(&path));
            }
        }
    }
    let folders: Vec<String> = entries.keys().flat_map(|path| parents(path)).collect();
    for folder in folders {
        entries.entry(folder).or_insert(Kind::Folder);
    }
    Ok(entries)
}

/// The context-relative paths `source` names: itself, or with `*` and `?` the existing paths that match, sorted.
fn expand(root: &Path, source: &str) -> Result<Vec<PathBuf>, LayerError> {
    let mut candidates = vec![PathBuf::new()];
    // Cleaned as if the context were `/`, so that `..` cannot leave it.
    let cleaned = absolute(source, "/");
    for part in cleaned.split('/').filter(|part| !part.is_empty()) {
        if !part.contains(['*', '?']) {
            candidates.iter_mut().for_each(|path| path.push(part));
            continue;
        }
        let mut matched = Vec::new();
        for folder in &candidates {
            let Ok(listing) = fs::read_dir(root.join(folder)) else {
                continue;
            };
            for entry in listing {
                let entry = entry.map_err(|error| io_error(&root.join(folder), error))?;
                let name = entry.file_name();
                if name.to_str().is_some_and(|name| matches(part, name)) {
                    matched.push(folder.join(name));
                }
            }
        }
        matched.sort();
        candidates = matched;
    }
    Ok(candidates)
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` any one character.
fn matches(pattern: &str, name: &str) -> bool {
    let (pattern, name): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), name.chars().collect());
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Adds what `folder` holds, recursively, under `prefix` in the archive.
fn walk(
    folder: &Path,
    prefix: &str,
    entries: &mut BTreeMap<String, Kind>,
) -> Result<(), LayerError> {
    let listing = fs::read_dir(folder).map_err(|error| io_error(folder, error))?;
    for entry in listing {
        let entry = entry.map_err(|error| io_error(folder, error))?;
        let path = entry.path();
        let name = utf8(&path, &entry.file_name())?;
        let archived = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let metadata = fs::symlink_metadata(&path).map_err(|error| io_error(&path, error))?;
        let kind = if metadata.is_symlink() {
            let target = fs::read_link(&path).map_err(|error| io_error(&path, error))?;
            Kind::Link {
                target: utf8(&path, target.as_os_str())?,
            }
        } else if metadata.is_dir() {
            walk(&path, &archived, entries)?;
            Kind::Folder
        } else if metadata.is_file() {
            Kind::File {
                executable: is_executable(&metadata),
                source: path,
            }
        } else {
            return Err(special(&path));
        };
        entries.insert(archived, kind);
    }
    Ok(())
}

/// `a` and `a/b` for `a/b/c`.
fn parents(path: &str) -> impl Iterator<Item = String> + '_ {
    path.match_indices('/')
        .map(|(end, _)| path[..end].to_owned())
}

/// Whether a file starts like an archive `ADD` unpacks: tar, gzip, bzip2, xz or zstd.
fn is_archive(path: &Path) -> Result<bool, LayerError> {
    let mut start = Vec::with_capacity(262);
    File::open(path)
        .and_then(|file| file.take(262).read_to_end(&mut start))
        .map_err(|error| io_error(path, error))?;
    let compressed = [
        &[0x1f, 0x8b][..],
        b"BZh",
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00],
        &[0x28, 0xb5, 0x2f, 0xfd],
    ];
    Ok(compressed.iter().any(|magic| start.starts_with(magic))
        || start.get(257..262) == Some(b"ustar"))
}

#[cfg(unix)]
fn is_executable(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    metadata.permissions().mode() & 0o111 != 0
}

/// Windows has no execute bits: every file is 0644.
#[cfg(not(unix))]
fn is_executable(_metadata: &fs::Metadata) -> bool {
    false
}

fn utf8(path: &Path, name: &std::ffi::OsStr) -> Result<String, LayerError> {
    name.to_str().map(str::to_owned).ok_or_else(|| {
        io_error(
            path,
            io::Error::new(io::ErrorKind::InvalidData, "its name is not UTF-8"),
        )
    })
}

fn special(path: &Path) -> LayerError {
    io_error(
        path,
        io::Error::new(
            io::ErrorKind::Unsupported,
            "it is neither a file, a folder nor a symbolic link",
        ),
    )
}

pub(super) fn io_error(path: &Path, source: io::Error) -> LayerError {
    LayerError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::native::tests::{context, files};

    fn paths(context: &Path, files: &Files) -> Result<Vec<String>, LayerError> {
        Ok(entries(context, files)?.into_keys().collect())
    }

    #[test]
    fn destinations_follow_docker() {
        let folder = context(
            "",
            &[
                ("a.txt", "a", false),
                ("b.txt", "b", false),
                ("c.md", "c", false),
                ("dir/x", "x", false),
            ],
        );
        let cases: [(&[&str], &str, &[&str]); 6] = [
            (&["a.txt"], "/etc/renamed", &["etc", "etc/renamed"]),
            (&["a.txt"], "/etc/", &["etc", "etc/a.txt"]),
            (&["*.txt"], "/", &["a.txt", "b.txt"]),
            (&["dir"], "/", &["x"]),
            (
                &["./dir/../c.md", "dir/"],
                "/in/",
                &["in", "in/c.md", "in/x"],
            ),
            // `..` cannot leave the context, as in Docker.
            (&["../../a.txt"], "/a", &["a"]),
        ];
        for (sources, destination, expected) in cases {
            let found = paths(folder.path(), &files(sources, destination)).expect("resolves");
            assert_eq!(found, expected, "{sources:?} {destination}");
        }
    }

    #[test]
    fn missing_sources_links_out_of_the_context_and_archives_for_add_are_errors() {
        let folder = context("", &[("a.tar", "", false)]);
        for source in ["missing", "*.none"] {
            let error = entries(folder.path(), &files(&[source], "/"));
            assert!(
                matches!(error, Err(LayerError::NotFound { .. })),
                "{source}: {error:?}"
            );
        }
        let mut tar = vec![0_u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        std::fs::write(folder.path().join("a.tar"), tar).expect("writes");
        let mut add = files(&["a.tar"], "/");
        add.add = true;
        assert!(matches!(
            entries(folder.path(), &add),
            Err(LayerError::Archive { .. })
        ));
        add.add = false;
        assert!(
            entries(folder.path(), &add).is_ok(),
            "COPY keeps an archive as it is"
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", folder.path().join("outside")).expect("links");
            let error = entries(folder.path(), &files(&["outside"], "/"));
            assert!(matches!(error, Err(LayerError::Io { .. })), "{error:?}");
        }
    }

    #[test]
    fn wildcards_match_within_one_component() {
        let cases = [
            ("*", "anything", true),
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txt.bak", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*b*", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(matches(pattern, name), expected, "{pattern} {name}");
        }
    }

    #[test]
    fn only_an_ignore_file_with_rules_counts() {
        let folder = context("", &[(".dockerignore", "# nothing\n\n", false)]);
        let dockerfile = folder.path().join("Dockerfile");
        assert_eq!(ignore_file(folder.path(), &dockerfile), None);
        std::fs::write(folder.path().join("Dockerfile.dockerignore"), "*.log\n").expect("writes");
        assert_eq!(
            ignore_file(folder.path(), &dockerfile),
            Some(folder.path().join("Dockerfile.dockerignore"))
        );
    }
}
