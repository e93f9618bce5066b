//! A real registry (`docker-registry`, distribution 2.8) as a child process on a free loopback port.

use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::commands::require;
use super::credentials::Credentials;
use super::tls::{self, TlsFiles};
use super::token_server::{self, Anonymous, TokenServer};

const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at a free port: another test may take the port between our probe and the registry's bind.
const PORT_ATTEMPTS: usize = 3;

/// A running registry, with its storage, config and log in its own temp dir. Dropping it kills the process.
pub struct Registry {
    process: Child,
    port: u16,
    tls: Option<TlsFiles>,
    credentials: Option<Credentials>,
    log_path: PathBuf,
    directory: TempDir,
    /// The server a registry with token auth trusts; it stops after the registry (see `Drop`).
    token_server: Option<TokenServer>,
}

impl Registry {
    /// A plain HTTP registry without authentication.
    pub fn start() -> Self {
        Self::launch(Security::Plain)
    }

    /// An HTTPS registry (certificate from a fresh CA, see [`Registry::ca_cert`]) that requires basic auth
    /// as `user`/`password` (htpasswd, bcrypt).
    pub fn start_tls_with_htpasswd(user: &str, password: &str) -> Self {
        Self::launch(Security::TlsWithHtpasswd(Credentials::new(user, password)))
    }

    /// A plain HTTP registry with bearer-token auth: it challenges with
    /// `Bearer realm="<token server>/token",service="imagepipe-test"` and trusts tokens from a
    /// [`TokenServer`] that knows `user`/`password` and gives anonymous clients a token granting nothing.
    /// See [`Registry::token_server`] for its request log; [`Registry::credentials`] returns the user.
    pub fn start_with_token_auth(user: &str, password: &str) -> Self {
        Self::start_with_token_server(TokenServer::start(
            Credentials::new(user, password),
            Anonymous::EmptyAccess,
        ))
    }

    /// A plain HTTP registry that trusts tokens from `token_server`, for a server started with other options.
    pub fn start_with_token_server(token_server: TokenServer) -> Self {
        Self::launch(Security::Token(token_server))
    }

    /// `127.0.0.1:PORT`, as in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`, or `https://…` for a TLS registry.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The registry's stderr (log level warn).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The registry's log so far, for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The PEM certificate of the CA that signed a TLS registry's certificate.
    pub fn ca_cert(&self) -> &Path {
        &self
            .tls
            .as_ref()
            .expect("a plain HTTP registry has no CA certificate")
            .ca_cert
    }

    /// The user and password of a registry with htpasswd auth, or of its token server.
    pub fn credentials(&self) -> &Credentials {
        self.credentials
            .as_ref()
            .expect("this registry has no htpasswd auth")
    }

    /// A directory holding a Docker `config.json` with this registry's credentials: the value for
    /// `DOCKER_CONFIG`. It lives as long as the registry.
    pub fn docker_config_dir(&self) -> PathBuf {
        self.credentials()
            .write_docker_config(&self.directory.path().join("docker-config"), &self.host())
    }

    /// The token server of a registry with token auth.
    pub fn token_server(&self) -> &TokenServer {
        self.token_server
            .as_ref()
            .expect("this registry has no token auth")
    }

    /// Kills the registry process, as a crash would; its storage stays for [`Registry::restart`].
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// Starts the registry again on the same port, config and storage.
    pub fn restart(&mut self) {
        self.kill();
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .expect("opening the registry log");
        self.process = Command::new(require("docker-registry"))
            .arg("serve")
            .arg(self.directory.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicating the log file handle"))
            .stderr(log)
            .spawn()
            .expect("restarting the registry");
        if let Err(problem) = wait_until_answering(&mut self.process, self.port) {
            panic!(
                "the restarted registry on port {} {problem}; its log:\n{}",
                self.port,
                self.log()
            );
        }
    }

    fn launch(security: Security) -> Self {
        let program = require("docker-registry");
        let directory = tempfile::Builder::new()
            .prefix("imagepipe-registry-")
            .tempdir()
            .expect("creating the registry's temp dir");
        let root = directory.path();
        let (tls, credentials, token_server) = match security {
            Security::Plain => (None, None, None),
            Security::TlsWithHtpasswd(credentials) => {
                (Some(tls::generate(root)), Some(credentials), None)
            }
            Security::Token(server) => (None, Some(server.credentials().clone()), Some(server)),
        };
        let htpasswd = credentials
            .as_ref()
            .filter(|_| token_server.is_none())
            .map(|credentials| {
                let path = root.join("htpasswd");
                credentials.write_htpasswd(&path);
                path
            });
        let log_path = root.join("registry.log");
        let config_path = root.join("config.yml");

        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let config = config_yaml(
                port,
                &root.join("storage"),
                tls.as_ref(),
                htpasswd.as_deref(),
                token_server.as_ref(),
            );
            fs::write(&config_path, config).expect("writing the registry config");
            let log = File::create(&log_path).expect("creating the registry log");
            let mut process = Command::new(&program)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("duplicating the log file handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|error| panic!("starting `{}`: {error}", program.display()));

            match wait_until_answering(&mut process, port) {
                Ok(()) => {
                    return Self {
                        process,
                        port,
                        tls,
                        credentials,
                        log_path,
                        directory,
                        token_server,
                    };
                }
                Err(problem) => {
                    let _ = process.kill();
                    let _ = process.wait();
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    if log.contains("address already in use") {
                        continue;
                    }
                    panic!("the registry on port {port} {problem}; its log:\n{log}");
                }
            }
        }
        panic!("the registry found no free port in {PORT_ATTEMPTS} attempts");
    }
}

enum Security {
    Plain,
    TlsWithHtpasswd(Credentials),
    Token(TokenServer),
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("finding a free loopback port")
        .port()
}

/// Paths are written as JSON strings, which YAML reads as they are.
fn config_yaml(
    port: u16,
    storage: &Path,
    tls: Option<&TlsFiles>,
    htpasswd: Option<&Path>,
    token_server: Option<&TokenServer>,
) -> String {
    let quoted = |path: &Path| serde_json::Value::from(path.to_string_lossy()).to_string();
    let mut config = format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: imagepipe-test-secret
",
        storage = quoted(storage),
    );
    if let Some(tls) = tls {
        config += &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            quoted(&tls.server_cert),
            quoted(&tls.server_key)
        );
    }
    if let Some(htpasswd) = htpasswd {
        config += &format!(
            "auth:\n  htpasswd:\n    realm: imagepipe-test\n    path: {}\n",
            quoted(htpasswd)
        );
    }
    if let Some(server) = token_server {
        config += &format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            serde_json::Value::from(server.realm()),
            serde_json::Value::from(token_server::SERVICE),
            serde_json::Value::from(token_server::ISSUER),
            quoted(server.cert_path())
        );
    }
    config
}

/// Polls `GET /v2/` over plain HTTP until a status line comes back. A TLS registry answers that request too,
/// with Go's `400 Bad Request` for plain HTTP on an HTTPS port, which equally shows it is serving.
fn wait_until_answering(process: &mut Child, port: u16) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if let Some(status) = process
            .try_wait()
            .map_err(|error| format!("cannot be waited on: {error}"))?
        {
            return Err(format!("exited ({status}) before answering"));
        }
        if status_line(port).is_some() {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(format!(
                "did not answer `GET /v2/` within {START_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn status_line(port: u16) -> Option<String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.starts_with("HTTP/")
        .then(|| line.trim_end().to_owned())
}
