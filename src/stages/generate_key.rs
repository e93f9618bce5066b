//! `imagepipe generate-key`: a key pair in cosign's format, so teams need no cosign install to start signing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::sign::keys;
use crate::stages::InvalidFlag;

pub struct Settings {
    /// Writes `PREFIX.key` and `PREFIX.pub`.
    pub prefix: PathBuf,
    pub force: bool,
    /// Encrypts the private key; from `COSIGN_PASSWORD`.
    pub password: Vec<u8>,
}

pub fn run(settings: Settings) -> anyhow::Result<()> {
    let Settings {
        prefix,
        force,
        password,
    } = settings;
    // A folder as the prefix would give hidden files (`keys/.key`) that nobody looks for.
    if prefix.as_os_str().is_empty()
        || prefix.as_os_str().to_string_lossy().ends_with('/')
        || prefix.is_dir()
    {
        return Err(InvalidFlag(format!(
            "--output-prefix: `{}` is a folder, not a file name prefix: give one such as `{}`",
            prefix.display(),
            prefix.join("cosign").display()
        ))
        .into());
    }
    let private_file = suffixed(&prefix, ".key");
    let public_file = suffixed(&prefix, ".pub");
    for file in [&private_file, &public_file] {
        if file.exists() && !force {
            return Err(InvalidFlag(format!(
                "`{}` exists; pass `--force` to replace it, or choose another `--output-prefix`",
                file.display()
            ))
            .into());
        }
    }
    if password.is_empty() {
        tracing::warn!(
            "COSIGN_PASSWORD is empty: the private key is encrypted with an empty password"
        );
    }
    let (private_pem, public_key) = keys::generate(&password)?;
    // The private key is readable by its owner only.
    crate::files::write_bytes_atomically(&private_file, private_pem.as_bytes(), 0o600)?;
    crate::files::write_bytes_atomically(&public_file, public_key.to_pem().as_bytes(), 0o644)?;
    tracing::info!(
        "wrote `{}` and `{}` (key id {})",
        private_file.display(),
        public_file.display(),
        public_key.key_id()
    );
    Ok(())
}

/// `PREFIX` with `suffix` appended, as cosign names its files: `Path::with_extension` would take the `.2` of
/// `release-1.2` for an extension and write `release-1.key`.
fn suffixed(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(prefix.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suffix_follows_the_whole_prefix() {
        for (prefix, expected) in [
            ("cosign", "cosign.key"),
            ("release-1.2", "release-1.2.key"),
            ("keys/v1.0.0", "keys/v1.0.0.key"),
            ("keys.d/release", "keys.d/release.key"),
            ("archive.tar", "archive.tar.key"),
        ] {
            assert_eq!(
                suffixed(Path::new(prefix), ".key"),
                PathBuf::from(expected),
                "{prefix}"
            );
        }
    }
}
