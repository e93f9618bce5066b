//! The real-world input files in `shared/data`, beside the repository.

use std::path::{Path, PathBuf};

/// `../shared/data` relative to the repository, when it exists.
///
/// When it is absent, a test that needs it passes after a notice on stderr; in CI (env `CI` set), which
/// always has it, that is a failure instead.
pub fn shared_data() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if path.is_dir() {
        return Some(path.canonicalize().unwrap_or(path));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "`{}` is missing, and CI always has it",
        path.display()
    );
    eprintln!(
        "notice: `{}` is missing; this test checks nothing here",
        path.display()
    );
    None
}
