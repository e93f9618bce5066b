//! The digest of a build's context: the folder holding the Dockerfile, as it is on disk.
//!
//! The build stage records it in each fragment (`contextDigest`) and the matrix compares it with the published
//! record, so both must compute it the same way: this function. SHA-256 over every entry below the folder in
//! the order of their relative paths (`/`-separated, compared as bytes), each written as its kind (`file`,
//! `exec` for a file with an execute bit, `link`), NUL, its relative path, NUL, its length in decimal, NUL, and
//! its content (a link's target). Folders count only through what they hold, so an empty one changes nothing;
//! names, contents, execute bits and links all do.

use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::BuildError;
use crate::model::reference::Digest;

/// The digest of `folder`'s content; see the module's description for what counts.
pub fn context_digest(folder: &Path) -> Result<Digest, BuildError> {
    let mut entries = Vec::new();
    collect(folder, "", &mut entries)?;
    entries.sort_by(|left, right| left.relative.cmp(&right.relative));
    let mut hasher = sha2::Sha256::new();
    for entry in &entries {
        let io = |source| BuildError::Io {
            path: entry.path.clone(),
            source,
        };
        let (kind, content) = match entry.kind {
            Kind::Link => {
                let target = std::fs::read_link(&entry.path).map_err(io)?;
                ("link", target.to_string_lossy().into_owned().into_bytes())
            }
            Kind::File { executable } => {
                let kind = if executable { "exec" } else { "file" };
                (kind, std::fs::read(&entry.path).map_err(io)?)
            }
        };
        for part in [kind.as_bytes(), entry.relative.as_bytes()] {
            hasher.update(part);
            hasher.update([0]);
        }
        hasher.update(content.len().to_string());
        hasher.update([0]);
        hasher.update(&content);
    }
    Ok(Digest::from_hasher(hasher))
}

enum Kind {
    File { executable: bool },
    Link,
}

struct Entry {
    relative: String,
    path: PathBuf,
    kind: Kind,
}

/// Every file and link below `folder`, named relative to the context (`prefix` is `folder`'s own relative
/// path, empty or ending in `/`).
fn collect(folder: &Path, prefix: &str, entries: &mut Vec<Entry>) -> Result<(), BuildError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BuildError::Io { path, source }
    };
    for item in std::fs::read_dir(folder).map_err(io(folder))? {
        let item = item.map_err(io(folder))?;
        let path = item.path();
        let relative = format!("{prefix}{}", item.file_name().to_string_lossy());
        let metadata = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if metadata.is_dir() {
            collect(&path, &format!("{relative}/"), entries)?;
        } else if metadata.file_type().is_symlink() {
            entries.push(Entry {
                relative,
                path,
                kind: Kind::Link,
            });
        } else {
            entries.push(Entry {
                relative,
                path,
                kind: Kind::File {
                    executable: is_executable(&metadata),
                },
            });
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_metadata: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(folder: &Path) -> String {
        context_digest(folder).expect("digest").to_string()
    }

    #[test]
    fn the_digest_follows_names_and_contents_only() {
        let root = tempfile::tempdir().expect("temp dir");
        let folder = root.path().join("app");
        std::fs::create_dir_all(folder.join("files/empty")).expect("creates");
        std::fs::write(folder.join("Dockerfile"), "FROM scratch\n").expect("writes");
        std::fs::write(folder.join("files/a.txt"), "a").expect("writes");
        let first = digest(&folder);
        assert!(first.starts_with("sha256:"), "{first}");

        // The same content elsewhere, written in another order, with no empty folder: the same digest.
        let copy = root.path().join("copy");
        std::fs::create_dir_all(copy.join("files")).expect("creates");
        std::fs::write(copy.join("files/a.txt"), "a").expect("writes");
        std::fs::write(copy.join("Dockerfile"), "FROM scratch\n").expect("writes");
        assert_eq!(digest(&copy), first);

        std::fs::write(copy.join("files/a.txt"), "b").expect("writes");
        assert_ne!(digest(&copy), first, "content counts");
        std::fs::write(copy.join("files/a.txt"), "a").expect("writes");
        std::fs::rename(copy.join("files/a.txt"), copy.join("files/b.txt")).expect("renames");
        assert_ne!(digest(&copy), first, "names count");
        std::fs::rename(copy.join("files/b.txt"), copy.join("files/a.txt")).expect("renames");
        assert_eq!(digest(&copy), first);
    }

    #[cfg(unix)]
    #[test]
    fn execute_bits_and_links_count() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().expect("temp dir");
        let script = root.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").expect("writes");
        let plain = digest(root.path());
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let executable = digest(root.path());
        assert_ne!(executable, plain);
        std::os::unix::fs::symlink("run.sh", root.path().join("link")).expect("links");
        assert_ne!(digest(root.path()), executable);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let error = context_digest(Path::new("/nonexistent/context")).expect_err("missing");
        assert!(
            error.to_string().contains("/nonexistent/context"),
            "{error}"
        );
    }
}
