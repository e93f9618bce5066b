//! Signing keys against the real cosign 2.x (DESIGN.md §5): keys and signatures either side writes, the other reads.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use imagepipe::sign::keys::{self, KeyError, KeySource, PublicKey, SigningKey};

use common::commands::{require, run};
use common::tools;

const PASSWORD: &str = "pw";

/// cosign working in `directory`, with `COSIGN_PASSWORD` set and its home (TUF cache, config) inside the directory.
fn cosign(directory: &Path) -> Command {
    let mut command = Command::new(tools::cosign());
    command
        .current_dir(directory)
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("HOME", directory)
        .env("TUF_ROOT", directory.join(".sigstore"));
    command
}

/// `cosign sign-blob` of `blob` with the private key `key`, offline: the base64 signature it writes.
fn cosign_sign_blob(directory: &Path, key: &Path, blob: &Path) -> String {
    let signature = directory.join("cosign.sig");
    run(cosign(directory)
        .args(["sign-blob", "--tlog-upload=false", "--yes", "--key"])
        .arg(key)
        .arg("--output-signature")
        .arg(&signature)
        .arg(blob));
    std::fs::read_to_string(&signature).expect("read cosign's signature")
}

/// `cosign verify-blob` of `blob` against the public key `key` and the base64 signature in `signature`, offline.
fn cosign_verify_blob(directory: &Path, key: &Path, signature: &Path, blob: &Path) -> Output {
    cosign(directory)
        .args(["verify-blob", "--insecure-ignore-tlog=true", "--key"])
        .arg(key)
        .arg("--signature")
        .arg(signature)
        .arg(blob)
        .output()
        .expect("run cosign verify-blob")
}

fn assert_cosign_accepts(output: &Output) {
    assert!(
        output.status.success(),
        "cosign verify-blob refused the signature ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn file(path: &Path) -> KeySource {
    KeySource::File(path.to_owned())
}

fn write(directory: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, contents).expect("write a test file");
    path
}

/// The same private key PEM under the older label cosign still reads.
fn relabelled(pem: &str) -> String {
    let relabelled = pem.replace(
        "ENCRYPTED SIGSTORE PRIVATE KEY",
        "ENCRYPTED COSIGN PRIVATE KEY",
    );
    assert_ne!(
        relabelled, pem,
        "the key was labelled `ENCRYPTED SIGSTORE PRIVATE KEY`"
    );
    relabelled
}

#[test]
fn keys_cosign_generates_load() {
    let directory = tempfile::tempdir().expect("temp dir");
    let directory = directory.path();
    run(cosign(directory).arg("generate-key-pair"));
    let private_pem =
        std::fs::read_to_string(directory.join("cosign.key")).expect("read cosign.key");
    let public_pem =
        std::fs::read_to_string(directory.join("cosign.pub")).expect("read cosign.pub");
    assert!(
        private_pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"),
        "cosign 2.x labels its keys `ENCRYPTED SIGSTORE PRIVATE KEY`:\n{}",
        private_pem.lines().next().unwrap_or_default()
    );

    let key = SigningKey::load(&file(&directory.join("cosign.key")), PASSWORD.as_bytes())
        .expect("load cosign.key");
    let public = PublicKey::load(&file(&directory.join("cosign.pub"))).expect("load cosign.pub");
    assert_eq!(key.public_key(), public);
    assert_eq!(
        public.to_pem(),
        public_pem,
        "our public key PEM is cosign's, byte for byte"
    );

    // The older label.
    let old = write(directory, "old.key", relabelled(&private_pem));
    let key = SigningKey::load(&file(&old), PASSWORD.as_bytes()).expect("load the relabelled key");
    assert_eq!(key.public_key(), public);

    // A wrong password.
    let error = SigningKey::load(&file(&directory.join("cosign.key")), b"not pw")
        .expect_err("a wrong password");
    assert!(matches!(error, KeyError::WrongPassword { .. }), "{error:?}");

    // Our signature with cosign's key, checked by cosign against cosign's public key.
    let blob = write(directory, "blob", "signed with a key cosign generated\n");
    let signature = write(
        directory,
        "our.sig",
        BASE64.encode(key.sign(b"signed with a key cosign generated\n")),
    );
    assert_cosign_accepts(&cosign_verify_blob(
        directory,
        &directory.join("cosign.pub"),
        &signature,
        &blob,
    ));
}

#[test]
fn keys_we_generate_sign_with_cosign() {
    let directory = tempfile::tempdir().expect("temp dir");
    let directory = directory.path();
    let (private_pem, public) = keys::generate(PASSWORD.as_bytes()).expect("generate");
    let private_key = write(directory, "our.key", &private_pem);
    let public_key = write(directory, "our.pub", public.to_pem());

    // cosign reads our public key from our private key as we do.
    let printed = run(cosign(directory)
        .args(["public-key", "--key"])
        .arg(&private_key));
    assert_eq!(String::from_utf8_lossy(&printed.stdout), public.to_pem());

    let contents = b"a blob cosign signs with our key\n";
    let blob = write(directory, "blob", contents);
    // Go does not normalize s, so about half of cosign's signatures carry the high s: a few cover both.
    for _ in 0..4 {
        let signature = cosign_sign_blob(directory, &private_key, &blob);
        assert_cosign_accepts(&cosign_verify_blob(
            directory,
            &public_key,
            &directory.join("cosign.sig"),
            &blob,
        ));
        let signature = BASE64
            .decode(signature.trim())
            .expect("cosign writes base64");
        assert!(
            public.verifies(contents, &signature),
            "our verifier accepts cosign's signature"
        );
        assert!(!public.verifies(b"another blob", &signature));
    }

    // The older label.
    let old = write(directory, "old.key", relabelled(&private_pem));
    let signature = BASE64
        .decode(cosign_sign_blob(directory, &old, &blob).trim())
        .expect("base64");
    assert!(public.verifies(contents, &signature));
}

#[test]
fn keys_cosign_verifies_our_signatures() {
    let directory = tempfile::tempdir().expect("temp dir");
    let directory = directory.path();
    let (private_pem, public) = keys::generate(PASSWORD.as_bytes()).expect("generate");
    let private_key = write(directory, "our.key", &private_pem);
    let public_key = write(directory, "our.pub", public.to_pem());
    let key = SigningKey::load(&file(&private_key), PASSWORD.as_bytes()).expect("load our key");

    let contents = b"a blob we sign\n";
    let blob = write(directory, "blob", contents);
    let signature = write(directory, "our.sig", BASE64.encode(key.sign(contents)));
    assert_cosign_accepts(&cosign_verify_blob(
        directory,
        &public_key,
        &signature,
        &blob,
    ));

    // cosign's check is a real one: another blob, or another key, fails it.
    let other_blob = write(directory, "other-blob", b"a blob we did not sign\n");
    let output = cosign_verify_blob(directory, &public_key, &signature, &other_blob);
    assert!(
        !output.status.success(),
        "cosign accepted a signature of another blob"
    );
    let (_, other_public) = keys::generate(b"").expect("generate");
    let other_key = write(directory, "other.pub", other_public.to_pem());
    let output = cosign_verify_blob(directory, &other_key, &signature, &blob);
    assert!(
        !output.status.success(),
        "cosign accepted a signature by another key"
    );
}

#[test]
fn keys_plain_pkcs8_from_openssl_sign_for_cosign() {
    let directory = tempfile::tempdir().expect("temp dir");
    let directory = directory.path();
    let openssl = require("openssl");
    run(Command::new(&openssl).current_dir(directory).args([
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "plain.pem",
    ]));
    run(Command::new(&openssl).current_dir(directory).args([
        "pkey",
        "-in",
        "plain.pem",
        "-pubout",
        "-out",
        "plain.pub",
    ]));

    let key = SigningKey::load(&file(&directory.join("plain.pem")), b"")
        .expect("load a plain PKCS#8 key");
    let public =
        PublicKey::load(&file(&directory.join("plain.pub"))).expect("load openssl's public key");
    assert_eq!(key.public_key(), public);

    let contents = b"signed with a plain key\n";
    let blob = write(directory, "blob", contents);
    let signature = write(directory, "our.sig", BASE64.encode(key.sign(contents)));
    assert_cosign_accepts(&cosign_verify_blob(
        directory,
        &directory.join("plain.pub"),
        &signature,
        &blob,
    ));
}

/// `generate-key --output-prefix release-1.2` writes `release-1.2.key` and `release-1.2.pub`: a dot in the
/// prefix is part of the name, not an extension to replace (issue #8 item 11b).
#[test]
fn generate_key_keeps_every_dot_of_the_prefix() {
    let directory = tempfile::tempdir().expect("temp dir");
    let directory = directory.path();
    let prefix = directory.join("release-1.2");
    common::Imagepipe::new()
        .args(["generate-key", "--output-prefix"])
        .arg(&prefix)
        .env("COSIGN_PASSWORD", PASSWORD)
        .run()
        .succeeded();
    let mut written: Vec<String> = std::fs::read_dir(directory)
        .expect("lists")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    written.sort();
    assert_eq!(written, ["release-1.2.key", "release-1.2.pub"]);

    // The pair is usable: the private key loads and its public half is the one written.
    let private = SigningKey::load(
        &file(&directory.join("release-1.2.key")),
        PASSWORD.as_bytes(),
    )
    .expect("loads");
    let public = std::fs::read_to_string(directory.join("release-1.2.pub")).expect("reads");
    assert_eq!(private.public_key().to_pem(), public);

    // A second run refuses to replace them, naming the exact file.
    let again = common::Imagepipe::new()
        .args(["generate-key", "--output-prefix"])
        .arg(&prefix)
        .env("COSIGN_PASSWORD", PASSWORD)
        .run();
    assert_eq!(again.code, Some(2), "{}", again.stderr);
    assert!(again.stderr.contains("release-1.2.key"), "{}", again.stderr);
}
