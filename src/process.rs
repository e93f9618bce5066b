//! Starting child processes (external builders, credential helpers).

use std::io;
use std::time::Duration;

/// How often a busy program is tried, [`BUSY_PAUSE`] apart.
const BUSY_ATTEMPTS: u32 = 20;
const BUSY_PAUSE: Duration = Duration::from_millis(50);

/// Starts `command`. A program written just before (a test's fake tool) is busy ("text file busy") while another
/// thread of this process forks with the file still open for writing: it is tried again for about a second.
pub async fn spawn(command: &mut tokio::process::Command) -> io::Result<tokio::process::Child> {
    let mut attempt = 1;
    loop {
        match command.spawn() {
            Err(error) if is_busy(&error) && attempt < BUSY_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            spawned => return spawned,
        }
    }
}

/// [`spawn`] for a caller that blocks anyway.
pub fn spawn_blocking(command: &mut std::process::Command) -> io::Result<std::process::Child> {
    let mut attempt = 1;
    loop {
        match command.spawn() {
            Err(error) if is_busy(&error) && attempt < BUSY_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(BUSY_PAUSE);
            }
            spawned => return spawned,
        }
    }
}

fn is_busy(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::ExecutableFileBusy
}
