//! cosign's password-encrypted private key, as cosign's `pkg/cosign/keys.go` and go-securesystemslib's
//! `encrypted` package write it: a PEM block labelled `ENCRYPTED SIGSTORE PRIVATE KEY` (older cosign:
//! `ENCRYPTED COSIGN PRIVATE KEY`) whose body is the JSON `{"kdf":{"name":"scrypt","params":{"N":…,"r":8,"p":1},
//! "salt":…},"cipher":{"name":"nacl/secretbox","nonce":…},"ciphertext":…}`, byte strings in padded standard
//! base64. The box key is scrypt(password, salt, N, r, p) of 32 bytes; the ciphertext is NaCl's secretbox
//! (XSalsa20-Poly1305, tag first) of the PKCS#8 DER private key.
//!
//! This module seals and opens that JSON body; [`super::keys`] reads and writes the PEM around it. No message
//! or `Debug` output of this module holds key material, a password or a ciphertext.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key as BoxKey, Nonce, XSalsa20Poly1305};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keys::{KeyError, KeySource, fill_random};

/// The label cosign 2.x writes on encrypted private keys.
pub(super) const SIGSTORE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label older cosign wrote on encrypted private keys; cosign still reads it.
pub(super) const COSIGN_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

const KDF_NAME: &str = "scrypt";
const CIPHER_NAME: &str = "nacl/secretbox";
/// The scrypt cost written: N = 2^15, go-securesystemslib's "legacy" set, the one every cosign version reads
/// (cosign 2.5 itself writes N = 2^16, which cosign releases before the parameter sets were added reject).
const WRITTEN_LOG_N: u8 = 15;
/// The scrypt parameter sets read, as (N, log2 N), all with r = 8 and p = 1: go-securesystemslib's "legacy",
/// "standard" and "OWASP" sets. Anything else is refused before scrypt runs, so a tampered file cannot make us
/// spend unbounded time or memory.
const READ_SCRYPT_COSTS: [(u64, u8); 3] = [(1 << 15, 15), (1 << 16, 16), (1 << 17, 17)];
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const BOX_KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// The JSON body of an encrypted key. Byte strings stay strings here, so that a serde error can never quote
/// them. No `Debug`, on purpose.
#[derive(Serialize, Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParameters,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParameters {
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// The JSON body that seals the PKCS#8 DER private key `der` under `password`, as cosign's
/// `generate-key-pair` writes it: scrypt N=32768 r=8 p=1, random salt and nonce.
pub(super) fn encrypt(der: &[u8], password: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut salt = [0_u8; SALT_LEN];
    fill_random(&mut salt)?;
    let mut nonce = [0_u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let box_key = derive_box_key(password, &salt, WRITTEN_LOG_N).ok_or(KeyError::Generation {
        step: "deriving the encryption key",
    })?;
    let ciphertext = XSalsa20Poly1305::new(BoxKey::from_slice(&box_key[..]))
        .encrypt(Nonce::from_slice(&nonce), der)
        .map_err(|_| KeyError::Generation {
            step: "encrypting the private key",
        })?;

    let sealed = EncryptedKey {
        kdf: Kdf {
            name: KDF_NAME.to_owned(),
            params: ScryptParameters {
                n: 1 << WRITTEN_LOG_N,
                r: SCRYPT_R.into(),
                p: SCRYPT_P.into(),
            },
            salt: BASE64.encode(salt),
        },
        cipher: Cipher {
            name: CIPHER_NAME.to_owned(),
            nonce: BASE64.encode(nonce),
        },
        ciphertext: BASE64.encode(ciphertext),
    };
    serde_json::to_vec(&sealed).map_err(|_| KeyError::Generation {
        step: "encoding the encrypted key",
    })
}

/// The PKCS#8 DER inside an encrypted key's JSON body.
pub(super) fn decrypt(
    json: &[u8],
    password: &[u8],
    source: &KeySource,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let sealed: EncryptedKey =
        serde_json::from_slice(json).map_err(|error| KeyError::MalformedEncryptedKey {
            key: source.clone(),
            error,
        })?;
    let unsupported = |what, found: &str, expected| KeyError::UnsupportedEncryption {
        key: source.clone(),
        what,
        found: found.to_owned(),
        expected,
    };
    if sealed.kdf.name != KDF_NAME {
        return Err(unsupported("key derivation", &sealed.kdf.name, KDF_NAME));
    }
    if sealed.cipher.name != CIPHER_NAME {
        return Err(unsupported("cipher", &sealed.cipher.name, CIPHER_NAME));
    }
    let ScryptParameters { n, r, p } = sealed.kdf.params;
    let log_n = READ_SCRYPT_COSTS
        .iter()
        .find(|(cost, _)| *cost == n && r == u64::from(SCRYPT_R) && p == u64::from(SCRYPT_P))
        .map(|(_, log_n)| *log_n)
        .ok_or(KeyError::UnsupportedScryptParameters {
            key: source.clone(),
            n,
            r,
            p,
        })?;

    let field = |field, problem| KeyError::InvalidEncryptedKeyField {
        key: source.clone(),
        field,
        problem,
    };
    let not_base64 = "is not valid base64";
    let salt = BASE64
        .decode(&sealed.kdf.salt)
        .map_err(|_| field("kdf.salt", not_base64))?;
    let nonce = BASE64
        .decode(&sealed.cipher.nonce)
        .map_err(|_| field("cipher.nonce", not_base64))?;
    let ciphertext = BASE64
        .decode(&sealed.ciphertext)
        .map_err(|_| field("ciphertext", not_base64))?;
    if nonce.len() != NONCE_LEN {
        return Err(field("cipher.nonce", "is not 24 bytes long"));
    }
    if ciphertext.len() < TAG_LEN {
        return Err(field(
            "ciphertext",
            "is shorter than its 16-byte authentication tag",
        ));
    }

    let box_key =
        derive_box_key(password, &salt, log_n).ok_or(KeyError::UnsupportedScryptParameters {
            key: source.clone(),
            n,
            r,
            p,
        })?;
    XSalsa20Poly1305::new(BoxKey::from_slice(&box_key[..]))
        .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| KeyError::WrongPassword {
            key: source.clone(),
        })
}

/// scrypt(password, salt, N = 2^log_n, r = 8, p = 1) of 32 bytes: the secretbox key.
fn derive_box_key(password: &[u8], salt: &[u8], log_n: u8) -> Option<Zeroizing<[u8; BOX_KEY_LEN]>> {
    let parameters = scrypt::Params::new(log_n, SCRYPT_R, SCRYPT_P, BOX_KEY_LEN).ok()?;
    let mut key = Zeroizing::new([0_u8; BOX_KEY_LEN]);
    scrypt::scrypt(password, salt, &parameters, &mut key[..]).ok()?;
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::keys::SigningKey;
    use crate::sign::pem;
    use crate::sign::test_keys::{PASSWORD, body_of, generated, source};

    fn with_body(label: &str, body: &serde_json::Value) -> String {
        pem::encode(label, &serde_json::to_vec(body).expect("JSON"))
    }

    #[test]
    fn generated_key_is_written_as_cosign_writes_it() {
        let (private_pem, _) = generated();
        assert!(private_pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert!(private_pem.ends_with("\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert!(private_pem.lines().all(|line| line.len() <= 64));
        let body = body_of(private_pem);
        assert_eq!(body["kdf"]["name"], "scrypt");
        assert_eq!(
            body["kdf"]["params"],
            serde_json::json!({"N": 32768, "r": 8, "p": 1})
        );
        assert_eq!(body["cipher"]["name"], "nacl/secretbox");
        let decoded = |value: &serde_json::Value| {
            BASE64
                .decode(value.as_str().expect("a string"))
                .expect("base64")
        };
        assert_eq!(decoded(&body["kdf"]["salt"]).len(), 32);
        assert_eq!(decoded(&body["cipher"]["nonce"]).len(), 24);
        // The field order of Go's encoding/json, which writes struct fields in declaration order.
        let json =
            String::from_utf8(pem::decode(private_pem).expect("PEM").body.to_vec()).expect("UTF-8");
        assert!(
            json.starts_with(
                r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":""#
            ),
            "{json}"
        );
    }

    #[test]
    fn older_cosign_label_loads() {
        let (private_pem, public) = generated();
        let relabelled = private_pem.replace(SIGSTORE_LABEL, COSIGN_LABEL);
        assert!(relabelled.starts_with("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n"));
        let key = SigningKey::from_pem(&relabelled, PASSWORD, &source("old.key")).expect("load");
        assert_eq!(&key.public_key(), public);
    }

    /// go-securesystemslib's own test vector (`encrypted_test.go`, `TestDecrypt`): "reallyimportant" under
    /// "supersecret".
    #[test]
    fn decrypts_go_securesystemslib_vector() {
        let json = br#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}"#;
        let plaintext = decrypt(json, b"supersecret", &source("vector")).expect("decrypt");
        assert_eq!(plaintext.as_slice(), b"reallyimportant");
    }

    #[test]
    fn wrong_password_is_one_clear_error_without_secrets() {
        let (private_pem, _) = generated();
        let password = "not the password, but a secret all the same";
        let error =
            SigningKey::from_pem(private_pem, password.as_bytes(), &source("keys/cosign.key"))
                .expect_err("a wrong password");
        assert!(matches!(error, KeyError::WrongPassword { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "wrong password for `keys/cosign.key`: set COSIGN_PASSWORD to the key's password"
        );
        assert_no_secrets(
            &error,
            private_pem,
            &[password, std::str::from_utf8(PASSWORD).expect("UTF-8")],
        );
    }

    /// Neither the message nor the Debug form of `error` holds a password, a line of the key's PEM body or any
    /// of its base64 fields.
    fn assert_no_secrets(error: &KeyError, pem: &str, passwords: &[&str]) {
        let texts = [error.to_string(), format!("{error:?}")];
        let body = body_of(pem);
        let fields: Vec<String> = [
            &body["kdf"]["salt"],
            &body["cipher"]["nonce"],
            &body["ciphertext"],
        ]
        .iter()
        .filter_map(|value| value.as_str().map(str::to_owned))
        .collect();
        let pem_lines = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .map(str::to_owned);
        for text in &texts {
            for secret in passwords
                .iter()
                .map(|password| password.to_string())
                .chain(fields.clone())
                .chain(pem_lines.clone())
            {
                assert!(!text.contains(&secret), "`{text}` holds `{secret}`");
            }
            for part in fields.iter().filter_map(|field| field.get(..16)) {
                assert!(!text.contains(part), "`{text}` holds `{part}`");
            }
        }
    }

    #[test]
    fn corrupt_ciphertext_reads_as_a_wrong_password() {
        let (private_pem, _) = generated();
        let mut body = body_of(private_pem);
        let mut ciphertext = BASE64
            .decode(body["ciphertext"].as_str().expect("string"))
            .expect("base64");
        ciphertext[20] ^= 1;
        body["ciphertext"] = BASE64.encode(&ciphertext).into();
        let tampered = with_body(SIGSTORE_LABEL, &body);
        let error = SigningKey::from_pem(&tampered, PASSWORD, &source("k")).expect_err("tampered");
        assert!(matches!(error, KeyError::WrongPassword { .. }), "{error:?}");
        assert_no_secrets(&error, &tampered, &[]);
    }

    #[test]
    fn malformed_encrypted_keys_are_refused_before_scrypt_runs() {
        let (private_pem, _) = generated();
        let body = body_of(private_pem);
        let edit = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut body = body.clone();
            edit(&mut body);
            let pem = with_body(SIGSTORE_LABEL, &body);
            let error =
                SigningKey::from_pem(&pem, PASSWORD, &source("k.key")).expect_err("refused");
            assert_no_secrets(&error, &pem, &[]);
            (error.to_string(), error)
        };
        let (message, error) = edit(&|body| body["kdf"]["params"]["N"] = 1_048_576.into());
        assert!(
            matches!(
                error,
                KeyError::UnsupportedScryptParameters {
                    n: 1_048_576,
                    r: 8,
                    p: 1,
                    ..
                }
            ),
            "{message}"
        );
        let (message, _) = edit(&|body| body["kdf"]["params"]["r"] = 16.into());
        assert!(message.contains("N=32768 r=16 p=1"), "{message}");
        let (message, error) = edit(&|body| body["kdf"]["name"] = "argon2id".into());
        assert!(
            matches!(error, KeyError::UnsupportedEncryption { .. }),
            "{message}"
        );
        assert_eq!(
            message,
            "`k.key` is encrypted with key derivation `argon2id`; expected `scrypt`"
        );
        let (message, _) = edit(&|body| body["cipher"]["name"] = "aes-gcm".into());
        assert_eq!(
            message,
            "`k.key` is encrypted with cipher `aes-gcm`; expected `nacl/secretbox`"
        );
        let (message, _) = edit(&|body| body["cipher"]["nonce"] = "AAAA".into());
        assert_eq!(
            message,
            "`k.key` is not a valid encrypted cosign key: `cipher.nonce` is not 24 bytes long"
        );
        let (message, _) = edit(&|body| body["ciphertext"] = "not base64!".into());
        assert_eq!(
            message,
            "`k.key` is not a valid encrypted cosign key: `ciphertext` is not valid base64"
        );
        let (message, error) = edit(&|body| {
            body.as_object_mut().expect("an object").remove("cipher");
        });
        assert!(
            matches!(error, KeyError::MalformedEncryptedKey { .. }),
            "{message}"
        );
        let not_json = pem::encode(COSIGN_LABEL, b"\x01\x02 not JSON");
        let error =
            SigningKey::from_pem(&not_json, PASSWORD, &source("k.key")).expect_err("not JSON");
        assert!(
            matches!(error, KeyError::MalformedEncryptedKey { .. }),
            "{error:?}"
        );
    }
}
