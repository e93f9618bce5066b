//! A fresh certificate authority and a server certificate for `127.0.0.1` and `localhost`, made with the
//! `openssl` CLI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::commands::{require, run};

const CA_CONFIG: &str = "\
[req]
distinguished_name = subject
x509_extensions = ca
prompt = no
[subject]
CN = imagepipe test CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
";

const SERVER_EXTENSIONS: &str = "\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// PEM files in a directory of the caller's.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate clients trust (`--ca-cert`).
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Writes a new CA and a server certificate signed by it into `directory`. P-256 keys, valid for two days.
pub fn generate(directory: &Path) -> TlsFiles {
    let openssl = require("openssl");
    let path = |name: &str| directory.join(name);
    let write = |name: &str, contents: &str| {
        fs::write(path(name), contents).unwrap_or_else(|error| panic!("writing `{name}`: {error}"));
    };
    write("ca.cnf", CA_CONFIG);
    write("server.ext", SERVER_EXTENSIONS);
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];

    run(Command::new(&openssl)
        .current_dir(directory)
        .args(["req", "-x509", "-config", "ca.cnf", "-days", "2"])
        .args(new_key)
        .args(["-keyout", "ca.key", "-out", "ca.pem"]));
    run(Command::new(&openssl)
        .current_dir(directory)
        .args(["req", "-new", "-config", "ca.cnf", "-subj", "/CN=localhost"])
        .args(new_key)
        .args(["-keyout", "server.key", "-out", "server.csr"]));
    run(Command::new(&openssl).current_dir(directory).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]));

    TlsFiles {
        ca_cert: path("ca.pem"),
        server_cert: path("server.pem"),
        server_key: path("server.key"),
    }
}
