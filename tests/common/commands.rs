//! Finding the external programs the harness runs, and running them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What to do when a program is missing.
pub const INSTALL_HINT: &str =
    "run `scripts/install-test-deps.sh` (as root) to install the test dependencies";

/// The path of `program` on `PATH`; panics with [`INSTALL_HINT`] when it is not there.
pub fn require(program: &str) -> PathBuf {
    find_on_path(program).unwrap_or_else(|| panic!("`{program}` is not on PATH: {INSTALL_HINT}"))
}

/// `path` itself when it is an executable file; panics with [`INSTALL_HINT`] otherwise.
pub fn require_executable(path: PathBuf) -> PathBuf {
    assert!(
        is_executable(&path),
        "`{}` is missing: {INSTALL_HINT}",
        path.display()
    );
    path
}

pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Runs `command` to completion and returns its output; panics with its stderr when it fails.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
