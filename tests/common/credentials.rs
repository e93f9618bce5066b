//! Basic-auth credentials: the registry's htpasswd file, and the Docker `config.json` clients read them from.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::commands::{require, run};

/// A test user; the password is no secret, so `Debug` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    pub fn new(user: &str, password: &str) -> Self {
        Self {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// `base64(user:password)`, as in `Authorization: Basic …` and in a Docker config's `auth`.
    pub fn basic_token(&self) -> String {
        STANDARD.encode(format!("{}:{}", self.user, self.password))
    }

    /// Writes an htpasswd file with a bcrypt hash (`htpasswd -Bbn`) to `path`.
    pub fn write_htpasswd(&self, path: &Path) {
        let output =
            run(Command::new(require("htpasswd")).args(["-Bbn", &self.user, &self.password]));
        fs::write(path, output.stdout)
            .unwrap_or_else(|error| panic!("writing `{}`: {error}", path.display()));
    }

    /// Writes `directory/config.json` holding these credentials for `host` (`127.0.0.1:PORT`) and returns
    /// `directory`, the value for `DOCKER_CONFIG`.
    pub fn write_docker_config(&self, directory: &Path, host: &str) -> PathBuf {
        let config = serde_json::json!({ "auths": { host: { "auth": self.basic_token() } } });
        fs::create_dir_all(directory)
            .and_then(|()| fs::write(directory.join("config.json"), config.to_string()))
            .unwrap_or_else(|error| {
                panic!(
                    "writing a Docker config in `{}`: {error}",
                    directory.display()
                )
            });
        directory.to_owned()
    }
}
