//! `imagepipe generate-key`: a key pair in cosign's format, so teams need no cosign install to start signing.

use std::path::PathBuf;

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
    let private_file = prefix.with_extension("key");
    let public_file = prefix.with_extension("pub");
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
