//! One layer per `COPY`/`ADD`: the files it names in the build context, as a gzip-compressed tar that is the
//! same bytes for the same files whatever the machine, the checkout time or the file owner.
//!
//! - Entries are sorted by path, each written once (a later source wins over an earlier one for the same path),
//!   and every folder above an entry has an entry of its own (mode 0755), as jib and ko write them.
//! - Every entry has mtime `timestamp`, uid and gid 0 and empty user and group names (GNU headers).
//! - Modes are normalised: folders 0755, files 0755 when any execute bit is set and 0644 otherwise, symbolic
//!   links 0777 (links inside a copied folder stay links; a source named directly is followed, as Docker does).
//! - gzip at level 6 with no file name and mtime 0 in its header, through miniz_oxide (locked in Cargo.lock).
//!
//! Sources are relative to the context (a leading `/` or `..` cannot leave it, as in Docker); `*` and `?`
//! match within one path component. A source that resolves through a symbolic link to outside the context is
//! refused.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read as _, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};

use super::config::Files;
use crate::model::reference::Digest;

const GZIP_LEVEL: u32 = 6;
const FOLDER_MODE: u32 = 0o755;
const EXECUTABLE_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;
const LINK_MODE: u32 = 0o777;

/// A layer ready to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layer {
    /// The gzip-compressed tar.
    pub blob: Bytes,
    pub digest: Digest,
    /// The digest of the uncompressed tar, for the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
}

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
enum Kind {
    Folder,
    File { source: PathBuf, executable: bool },
    Link { target: String },
}

/// Builds the layer of one `COPY`/`ADD` from `context`.
pub(super) fn build(context: &Path, files: &Files, timestamp: u64) -> Result<Layer, LayerError> {
    let entries = entries(context, files)?;
    write(&entries, timestamp)
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
fn entries(context: &Path, files: &Files) -> Result<BTreeMap<String, Kind>, LayerError> {
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
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    for part in parts {
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

/// Writes the archive and compresses it, hashing both as they are written.
fn write(entries: &BTreeMap<String, Kind>, timestamp: u64) -> Result<Layer, LayerError> {
    let blob = Hashing::new(Vec::new());
    let gzip = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(blob, Compression::new(GZIP_LEVEL));
    let mut archive = tar::Builder::new(Hashing::new(gzip));
    for (path, kind) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(timestamp);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        let written = match kind {
            Kind::Folder => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(FOLDER_MODE);
                archive.append_data(&mut header, path, io::empty())
            }
            Kind::Link { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(LINK_MODE);
                archive.append_link(&mut header, path, target)
            }
            Kind::File { source, executable } => {
                let file = File::open(source).map_err(|error| io_error(source, error))?;
                let size = file
                    .metadata()
                    .map_err(|error| io_error(source, error))?
                    .len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if *executable {
                    EXECUTABLE_MODE
                } else {
                    FILE_MODE
                });
                header.set_size(size);
                // A file that grows while it is read is cut at the size the header announced.
                archive
                    .append_data(&mut header, path, file.take(size))
                    .map_err(|error| io_error(source, error))?;
                continue;
            }
        };
        written.map_err(|error| io_error(Path::new(path), error))?;
    }
    let finished = |error| io_error(Path::new("<layer>"), error);
    let (gzip, diff_id) = archive.into_inner().map_err(finished)?.finish();
    let (blob, digest) = gzip.finish().map_err(finished)?.finish();
    Ok(Layer {
        blob: Bytes::from(blob),
        digest,
        diff_id,
    })
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> (W, Digest) {
        let digest = format!("sha256:{:x}", self.hasher.finalize())
            .parse()
            .unwrap_or_else(|_| unreachable!("a SHA-256 in hex is a digest"));
        (self.inner, digest)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
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

fn io_error(path: &Path, source: io::Error) -> LayerError {
    LayerError::Io {
        path: path.to_owned(),
        source,
    }
}
