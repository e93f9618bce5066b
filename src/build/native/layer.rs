//! One layer per `COPY`/`ADD`: the entries [`sources`](super::sources) lists, as a gzip-compressed tar that is
//! the same bytes for the same files whatever the machine, the checkout time or the file owner.
//!
//! - Entries in path order (every folder before what it holds), GNU headers.
//! - Every entry has mtime `timestamp`, uid and gid 0 and empty user and group names.
//! - Modes are normalised: folders 0755, files 0755 when any execute bit is set and 0644 otherwise, symbolic
//!   links 0777.
//! - gzip at level 6 with no file name and mtime 0 in its header, through miniz_oxide (locked in Cargo.lock).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read as _, Write};
use std::path::Path;

use bytes::Bytes;
use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};

use super::config::Files;
use super::sources::{Kind, LayerError, entries, io_error};
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

/// Builds the layer of one `COPY`/`ADD` from `context`.
pub(super) fn build(context: &Path, files: &Files, timestamp: u64) -> Result<Layer, LayerError> {
    let entries = entries(context, files)?;
    write(&entries, timestamp)
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
                // The header announced `size`: a file that grows while it is read is cut there, and one that
                // shrinks is an error rather than a short entry that would corrupt the archive.
                let exact = Exact {
                    inner: file.take(size),
                    remaining: size,
                };
                archive
                    .append_data(&mut header, path, exact)
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

/// A reader of exactly `remaining` more bytes: ending sooner is an error.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: io::Read> io::Read for Exact<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if read == 0 && self.remaining > 0 && !buffer.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file became shorter while it was read",
            ));
        }
        self.remaining = self.remaining.saturating_sub(read as u64);
        Ok(read)
    }
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

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::build::native::tests::{TIMESTAMP, context, files};

    /// One entry of an archive as a reader sees it.
    #[derive(Debug)]
    struct Entry {
        path: String,
        kind: tar::EntryType,
        mode: u32,
        mtime: u64,
        owner: (u64, u64, String, String),
        /// The file's contents or the link's target.
        contents: String,
    }

    fn read(layer: &Layer) -> Vec<Entry> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&layer.blob[..]));
        let mut found = Vec::new();
        for entry in archive.entries().expect("a tar") {
            let mut entry = entry.expect("an entry");
            let header = entry.header().clone();
            let mut contents = String::new();
            entry.read_to_string(&mut contents).expect("reads");
            let name = |bytes: Option<&[u8]>| {
                String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
            };
            let link = header.link_name().expect("link");
            found.push(Entry {
                path: entry.path().expect("path").display().to_string(),
                kind: header.entry_type(),
                mode: header.mode().expect("mode"),
                mtime: header.mtime().expect("mtime"),
                owner: (
                    header.uid().expect("uid"),
                    header.gid().expect("gid"),
                    name(header.username_bytes()),
                    name(header.groupname_bytes()),
                ),
                contents: link.map_or(contents, |link| link.display().to_string()),
            });
        }
        found
    }

    #[test]
    fn entries_are_sorted_owned_by_root_at_the_timestamp_with_normalised_modes() {
        let folder = context(
            "",
            &[
                ("app/z.txt", "z", false),
                ("app/bin/run", "#!", true),
                ("app/a.txt", "a", false),
            ],
        );
        #[cfg(unix)]
        std::os::unix::fs::symlink("bin/run", folder.path().join("app/link")).expect("links");
        let layer = build(folder.path(), &files(&["app"], "/srv/app/"), TIMESTAMP).expect("builds");
        let entries = read(&layer);
        let summary: Vec<(&str, tar::EntryType, u32, &str)> = entries
            .iter()
            .map(|entry| {
                (
                    entry.path.as_str(),
                    entry.kind,
                    entry.mode,
                    entry.contents.as_str(),
                )
            })
            .collect();
        let mut expected = vec![
            ("srv", tar::EntryType::Directory, 0o755, ""),
            ("srv/app", tar::EntryType::Directory, 0o755, ""),
            ("srv/app/a.txt", tar::EntryType::Regular, 0o644, "a"),
            ("srv/app/bin", tar::EntryType::Directory, 0o755, ""),
            ("srv/app/bin/run", tar::EntryType::Regular, 0o755, "#!"),
            ("srv/app/z.txt", tar::EntryType::Regular, 0o644, "z"),
        ];
        #[cfg(unix)]
        expected.insert(
            5,
            ("srv/app/link", tar::EntryType::Symlink, 0o777, "bin/run"),
        );
        assert_eq!(summary, expected);
        for entry in &entries {
            let root = (0, 0, String::new(), String::new());
            assert_eq!(
                (entry.mtime, &entry.owner),
                (TIMESTAMP, &root),
                "{}",
                entry.path
            );
        }
    }

    #[test]
    fn the_same_files_give_the_same_layer_whenever_they_were_written() {
        let folder = context("", &[("a/one", "1", false), ("a/two", "2", true)]);
        let first = build(folder.path(), &files(&["a"], "/a"), TIMESTAMP).expect("builds");
        let earlier = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1);
        File::options()
            .write(true)
            .open(folder.path().join("a/one"))
            .and_then(|file| file.set_modified(earlier))
            .expect("sets the mtime");
        let second = build(folder.path(), &files(&["a"], "/a"), TIMESTAMP).expect("builds");
        assert_eq!(first, second);
        assert_eq!(first.digest, Digest::of(&first.blob));
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&first.blob[..])
            .read_to_end(&mut tar)
            .expect("gunzips");
        assert_eq!(first.diff_id, Digest::of(&tar));
        // gzip header: no file name flag, mtime 0, OS unknown.
        assert_eq!(&first.blob[3..10], &[0, 0, 0, 0, 0, 0, 255][..]);
        let later = build(folder.path(), &files(&["a"], "/a"), TIMESTAMP + 1).expect("builds");
        assert_ne!(later.digest, first.digest);
    }

    #[test]
    fn a_file_shorter_than_its_header_said_is_an_error() {
        let mut short = Exact {
            inner: &b"ab"[..],
            remaining: 3,
        };
        let error = short.read_to_end(&mut Vec::new()).expect_err("too short");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let mut exact = Exact {
            inner: &b"abc"[..],
            remaining: 3,
        };
        let mut read = Vec::new();
        exact.read_to_end(&mut read).expect("exact");
        assert_eq!(read, b"abc");
    }
}
