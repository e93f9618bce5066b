//! A Docker engine of the test's own (DESIGN.md §9): Debian's dockerd 20.10 on vfs storage, with no iptables and
//! no bridge network, its data, exec root and socket in a temp dir, and a `DOCKER_CONFIG` whose `cli-plugins`
//! holds the buildx plugin. Loopback registries are insecure to it (`--insecure-registry 127.0.0.0/8`, also
//! Docker's default), so it pulls from and pushes to the test registries over plain HTTP.
//!
//! Starting may fail where the kernel or the sandbox does not allow an engine: [`DockerEngine::start`] then
//! says why, and the caller decides. Dropping the engine stops dockerd with SIGTERM (it stops its containerd),
//! and kills both if they linger.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::tools;

/// A loaded 2-core machine starts dockerd in one to three seconds.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct DockerEngine {
    process: Child,
    directory: TempDir,
}

impl DockerEngine {
    /// Starts dockerd and waits until `docker info` answers; the error says why it did not.
    pub fn start() -> Result<Self, String> {
        let dockerd = tools::dockerd();
        let plugin = tools::buildx_plugin();
        // Short paths: the sockets dockerd and containerd make must fit in a socket address (108 bytes).
        let directory = tempfile::Builder::new()
            .prefix("ip-docker-")
            .tempdir_in("/tmp")
            .expect("creating the engine's temp dir");
        let root = directory.path();
        let plugins = root.join("config").join("cli-plugins");
        fs::create_dir_all(&plugins).expect("creating cli-plugins");
        std::os::unix::fs::symlink(&plugin, plugins.join("docker-buildx"))
            .expect("linking the buildx plugin");
        let log = File::create(root.join("dockerd.log")).expect("creating the engine's log");
        let process = Command::new(&dockerd)
            .arg("--storage-driver=vfs")
            .arg("--iptables=false")
            .arg("--ip6tables=false")
            .arg("--bridge=none")
            .arg("--insecure-registry=127.0.0.0/8")
            .arg(format!("--data-root={}", root.join("data").display()))
            .arg(format!("--exec-root={}", root.join("exec").display()))
            .arg(format!("--pidfile={}", root.join("dockerd.pid").display()))
            .arg(format!(
                "--host=unix://{}",
                root.join("docker.sock").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicating the log file handle"))
            .stderr(log)
            .spawn()
            .map_err(|error| format!("`{}` could not be started: {error}", dockerd.display()))?;
        let mut engine = Self { process, directory };
        engine.wait_until_answering()?;
        Ok(engine)
    }

    /// `unix://…/docker.sock`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!(
            "unix://{}",
            self.directory.path().join("docker.sock").display()
        )
    }

    /// A `DOCKER_CONFIG` folder whose `cli-plugins` holds buildx.
    pub fn docker_config(&self) -> PathBuf {
        self.directory.path().join("config")
    }

    /// The engine's log so far, for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.directory.path().join("dockerd.log")).unwrap_or_default()
    }

    /// `docker ARGS` against this engine.
    pub fn docker(&self) -> Command {
        let mut command = Command::new(tools::docker());
        command
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.docker_config());
        command
    }

    fn wait_until_answering(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.process.try_wait() {
                return Err(format!(
                    "dockerd exited ({status}) before answering; its log ends:\n{}",
                    last_lines(&self.log(), 30)
                ));
            }
            let answered = self
                .docker()
                .arg("info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if answered {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "dockerd did not answer `docker info` within {START_TIMEOUT:?}; its log ends:\n{}",
                    last_lines(&self.log(), 30)
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The containerd dockerd started, by the pid file it writes in its exec root.
    fn containerd_pid(&self) -> Option<String> {
        let file = self
            .directory
            .path()
            .join("exec")
            .join("containerd")
            .join("containerd.pid");
        fs::read_to_string(file)
            .ok()
            .map(|pid| pid.trim().to_owned())
            .filter(|pid| !pid.is_empty())
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        let containerd = self.containerd_pid();
        signal("TERM", &self.process.id().to_string());
        let stopping = Instant::now();
        while stopping.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(_)) = self.process.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        // dockerd stops the containerd it started; should it linger, it goes too, so that the temp dir can go.
        if let Some(pid) = containerd {
            let command_line =
                fs::read(Path::new("/proc").join(&pid).join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&command_line).contains("containerd") {
                signal("KILL", &pid);
            }
        }
    }
}

fn signal(name: &str, pid: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid)
        .stderr(Stdio::null())
        .status();
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}
