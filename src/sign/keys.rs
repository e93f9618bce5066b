//! Signing keys in cosign's formats: the password-encrypted private key `cosign generate-key-pair` writes, a
//! plain PKCS#8 private key, and the public key PEM that `cosign verify --key` reads. Only ECDSA P-256, cosign's
//! default and what DESIGN.md §5 signs with.
//!
//! Two sibling modules do the encoding: `sign::pem` reads and writes the PEM text, and `sign::encrypted_key`
//! seals and opens the encrypted key's JSON body.
//!
//! No message or `Debug` output of this module holds key material, a password or a ciphertext.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::spki::{self, SubjectPublicKeyInfoRef};
use p256::pkcs8::{
    self, DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, ObjectIdentifier,
};
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::encrypted_key::{self, COSIGN_LABEL, SIGSTORE_LABEL};
use super::pem;

const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
/// Labels of private keys in formats this module does not read.
const OTHER_PRIVATE_KEY_LABELS: &[&str] =
    &["EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY"];
const EXPECTED_PRIVATE: &str =
    "`ENCRYPTED SIGSTORE PRIVATE KEY`, `ENCRYPTED COSIGN PRIVATE KEY` or `PRIVATE KEY`";
const EXPECTED_PUBLIC: &str = "`PUBLIC KEY`";

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Where a key is: a file, or `env://VAR` for PEM text held in an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Environment(String),
}

const ENVIRONMENT_SCHEME: &str = "env://";

impl FromStr for KeySource {
    type Err = KeyError;

    /// `env://NAME` names an environment variable; other `SCHEME://…` references (cosign's KMS keys) are
    /// refused; anything else is a file path.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(variable) = text.strip_prefix(ENVIRONMENT_SCHEME) {
            if !is_valid_variable_name(variable) {
                return Err(KeyError::NoKeyNamed {
                    text: text.to_owned(),
                });
            }
            return Ok(Self::Environment(variable.to_owned()));
        }
        if text.is_empty() {
            return Err(KeyError::NoKeyNamed {
                text: text.to_owned(),
            });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let is_scheme = !scheme.is_empty()
                && scheme.chars().all(|character| {
                    character.is_ascii_alphanumeric() || matches!(character, '+' | '-' | '.')
                });
            if is_scheme {
                return Err(KeyError::UnsupportedScheme {
                    text: text.to_owned(),
                });
            }
        }
        Ok(Self::File(PathBuf::from(text)))
    }
}

impl fmt::Display for KeySource {
    /// The path, or `env://NAME`: never the variable's value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Environment(variable) => write!(f, "{ENVIRONMENT_SCHEME}{variable}"),
        }
    }
}

/// Names the environment can hold: `std::env` refuses empty names and names with `=` or NUL.
fn is_valid_variable_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

/// Why a key cannot be used. Every message names the key's source; none holds key material, a password or a
/// ciphertext.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("`{text}` names no key: expected a file path or `env://VARIABLE`")]
    NoKeyNamed { text: String },
    #[error(
        "`{text}` is a kind of key reference imagepipe does not read: expected a file path or `env://VARIABLE`"
    )]
    UnsupportedScheme { text: String },
    #[error("key file `{key}` does not exist")]
    FileMissing { key: KeySource },
    #[error("cannot read key file `{key}`")]
    Unreadable {
        key: KeySource,
        #[source]
        error: std::io::Error,
    },
    #[error(
        "environment variable `{variable}` (key `{key}`) is unset or empty: it should hold the key's PEM text"
    )]
    EnvironmentUnset { key: KeySource, variable: String },
    #[error("`{key}` is not a PEM key: {problem}")]
    NotPem {
        key: KeySource,
        problem: &'static str,
    },
    #[error(
        "`{key}` is a public key, but signing needs the private key: pass the private key (such as `cosign.key`), \
         not the public one (`cosign.pub`)"
    )]
    PublicKeyGiven { key: KeySource },
    #[error(
        "`{key}` is a private key, but a public key is needed here: pass the public key (such as `cosign.pub`)"
    )]
    PrivateKeyGiven { key: KeySource },
    #[error("`{key}` holds a PEM block of type `{found}`; expected {expected}{hint}")]
    UnsupportedPemType {
        key: KeySource,
        found: String,
        expected: &'static str,
        /// Empty, or `; hint: …`.
        hint: &'static str,
    },
    #[error("`{key}` holds {found}; expected an ECDSA P-256 key")]
    UnsupportedKey { key: KeySource, found: String },
    #[error("wrong password for `{key}`: set COSIGN_PASSWORD to the key's password")]
    WrongPassword { key: KeySource },
    #[error("`{key}` is not a valid encrypted cosign key")]
    MalformedEncryptedKey {
        key: KeySource,
        #[source]
        error: serde_json::Error,
    },
    #[error("`{key}` is not a valid encrypted cosign key: `{field}` {problem}")]
    InvalidEncryptedKeyField {
        key: KeySource,
        field: &'static str,
        problem: &'static str,
    },
    #[error("`{key}` is encrypted with {what} `{found}`; expected `{expected}`")]
    UnsupportedEncryption {
        key: KeySource,
        what: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error(
        "`{key}` uses scrypt parameters N={n} r={r} p={p}; expected N=32768, 65536 or 131072 with r=8 p=1, \
         as cosign writes"
    )]
    UnsupportedScryptParameters {
        key: KeySource,
        n: u64,
        r: u64,
        p: u64,
    },
    #[error("`{key}` holds a malformed private key")]
    MalformedPrivateKey {
        key: KeySource,
        #[source]
        error: pkcs8::Error,
    },
    #[error("`{key}` holds a malformed public key")]
    MalformedPublicKey {
        key: KeySource,
        #[source]
        error: spki::Error,
    },
    #[error("cannot generate a key pair: the system's random number generator failed")]
    Randomness {
        #[source]
        error: rand_core::Error,
    },
    #[error("cannot generate a key pair: {step} failed")]
    Generation { step: &'static str },
}

/// An ECDSA P-256 private key. Debug prints `SigningKey(<redacted>, key id …)`.
pub struct SigningKey {
    inner: p256::ecdsa::SigningKey,
    public: PublicKey,
}

impl SigningKey {
    /// Loads cosign's encrypted private key (both PEM headers, decrypted with `password`) or a plain PKCS#8
    /// `PRIVATE KEY` PEM (password ignored).
    pub fn load(source: &KeySource, password: &[u8]) -> Result<Self, KeyError> {
        let text = read_text(source)?;
        Self::from_pem(&text, password, source)
    }

    /// [`SigningKey::load`] of PEM text in hand; `source` names it in errors.
    pub fn from_pem(pem: &str, password: &[u8], source: &KeySource) -> Result<Self, KeyError> {
        let block = pem::decode(pem).map_err(|problem| KeyError::NotPem {
            key: source.clone(),
            problem,
        })?;
        let der = match block.label.as_str() {
            SIGSTORE_LABEL | COSIGN_LABEL => encrypted_key::decrypt(&block.body, password, source)?,
            PRIVATE_KEY_LABEL => block.body,
            PUBLIC_KEY_LABEL => {
                return Err(KeyError::PublicKeyGiven {
                    key: source.clone(),
                });
            }
            other => {
                return Err(KeyError::UnsupportedPemType {
                    key: source.clone(),
                    found: other.to_owned(),
                    expected: EXPECTED_PRIVATE,
                    hint: hint_for_label(other),
                });
            }
        };
        Self::from_pkcs8_der(&der, source)
    }

    fn from_pkcs8_der(der: &[u8], source: &KeySource) -> Result<Self, KeyError> {
        let malformed = |error: pkcs8::Error| KeyError::MalformedPrivateKey {
            key: source.clone(),
            error,
        };
        let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(malformed)?;
        require_p256(
            info.algorithm.oid,
            info.algorithm.parameters_oid().ok(),
            source,
        )?;
        let inner = p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(malformed)?;
        let public = PublicKey::from_verifying_key(*inner.verifying_key())
            .map_err(|error| malformed(pkcs8::Error::PublicKey(error)))?;
        Ok(Self { inner, public })
    }

    /// ASN.1 DER ECDSA-P256-SHA256 signature over `payload` (as cosign: SHA-256 of the payload, DER encoded).
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let signature: Signature = self.inner.sign(payload);
        signature.to_der().as_bytes().to_vec()
    }

    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(<redacted>, key id {})", self.public.key_id())
    }
}

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    inner: VerifyingKey,
    /// Its SubjectPublicKeyInfo DER, with the point uncompressed as cosign writes it.
    spki_der: Vec<u8>,
}

impl PublicKey {
    /// Loads a `PUBLIC KEY` PEM (SPKI).
    pub fn load(source: &KeySource) -> Result<Self, KeyError> {
        let text = read_text(source)?;
        Self::from_pem(&text, source)
    }

    /// Reads a `PUBLIC KEY` PEM (SPKI); `source` names it in errors.
    pub fn from_pem(pem: &str, source: &KeySource) -> Result<Self, KeyError> {
        let block = pem::decode(pem).map_err(|problem| KeyError::NotPem {
            key: source.clone(),
            problem,
        })?;
        match block.label.as_str() {
            PUBLIC_KEY_LABEL => {}
            SIGSTORE_LABEL | COSIGN_LABEL | PRIVATE_KEY_LABEL => {
                return Err(KeyError::PrivateKeyGiven {
                    key: source.clone(),
                });
            }
            other if OTHER_PRIVATE_KEY_LABELS.contains(&other) => {
                return Err(KeyError::PrivateKeyGiven {
                    key: source.clone(),
                });
            }
            other => {
                return Err(KeyError::UnsupportedPemType {
                    key: source.clone(),
                    found: other.to_owned(),
                    expected: EXPECTED_PUBLIC,
                    hint: hint_for_label(other),
                });
            }
        }
        let malformed = |error: spki::Error| KeyError::MalformedPublicKey {
            key: source.clone(),
            error,
        };
        let info = SubjectPublicKeyInfoRef::try_from(block.body.as_slice()).map_err(malformed)?;
        require_p256(
            info.algorithm.oid,
            info.algorithm.parameters_oid().ok(),
            source,
        )?;
        let inner = VerifyingKey::from_public_key_der(&block.body).map_err(malformed)?;
        Self::from_verifying_key(inner).map_err(malformed)
    }

    fn from_verifying_key(inner: VerifyingKey) -> Result<Self, spki::Error> {
        let spki_der = inner.to_public_key_der()?.into_vec();
        Ok(Self { inner, spki_der })
    }

    /// Whether `signature` (ASN.1 DER, or the 64-byte fixed form) is a valid signature of `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        let der = Signature::from_der(signature).ok();
        let fixed = if signature.len() == 64 {
            Signature::from_slice(signature).ok()
        } else {
            None
        };
        [der, fixed]
            .into_iter()
            .flatten()
            .any(|signature| self.inner.verify(payload, &signature).is_ok())
    }

    /// Identifies the key in records and messages: hex SHA-256 of the SPKI DER.
    pub fn key_id(&self) -> String {
        hex(&Sha256::digest(&self.spki_der))
    }

    pub fn to_pem(&self) -> String {
        pem::encode(PUBLIC_KEY_LABEL, &self.spki_der)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(key id {})", self.key_id())
    }
}

/// A new key pair as cosign's `generate-key-pair` writes it: the encrypted private key PEM (header
/// `ENCRYPTED SIGSTORE PRIVATE KEY`, scrypt N=32768 r=8 p=1, random salt and nonce) and the public key PEM.
pub fn generate(password: &[u8]) -> Result<(String, PublicKey), KeyError> {
    let signing_key = random_signing_key()?;
    let public = PublicKey::from_verifying_key(*signing_key.verifying_key()).map_err(|_| {
        KeyError::Generation {
            step: "encoding the public key",
        }
    })?;
    let der = signing_key
        .to_pkcs8_der()
        .map_err(|_| KeyError::Generation {
            step: "encoding the private key as PKCS#8",
        })?;

    let json = encrypted_key::encrypt(der.as_bytes(), password)?;
    Ok((pem::encode(SIGSTORE_LABEL, &json), public))
}

/// A uniformly random private scalar in [1, n): 32 random bytes, drawn again in the rare case (under 2^-32)
/// that they are zero or not below the group order.
fn random_signing_key() -> Result<p256::ecdsa::SigningKey, KeyError> {
    for _ in 0..8 {
        let mut bytes = Zeroizing::new([0_u8; 32]);
        fill_random(&mut bytes[..])?;
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes[..]) {
            return Ok(key);
        }
    }
    Err(KeyError::Generation {
        step: "drawing a private scalar",
    })
}

/// Fills `buffer` from the operating system's random number generator.
pub(super) fn fill_random(buffer: &mut [u8]) -> Result<(), KeyError> {
    OsRng
        .try_fill_bytes(buffer)
        .map_err(|error| KeyError::Randomness { error })
}

/// Refuses every key but ECDSA P-256, naming what it is.
fn require_p256(
    algorithm: ObjectIdentifier,
    parameter: Option<ObjectIdentifier>,
    source: &KeySource,
) -> Result<(), KeyError> {
    let name_of = |table: &[(ObjectIdentifier, &'static str)], oid: ObjectIdentifier| {
        table
            .iter()
            .find(|(known, _)| *known == oid)
            .map(|(_, name)| *name)
    };
    let found = if algorithm == EC_PUBLIC_KEY {
        match parameter {
            Some(curve) if curve == P256 => return Ok(()),
            Some(curve) => match name_of(CURVES, curve) {
                Some(name) => format!("an ECDSA {name} key"),
                None => format!("an ECDSA key on the curve `{curve}`"),
            },
            None => "an ECDSA key without a named curve".to_owned(),
        }
    } else {
        match name_of(ALGORITHMS, algorithm) {
            Some(name) => format!("an {name} key"),
            None => format!("a key of algorithm `{algorithm}`"),
        }
    };
    Err(KeyError::UnsupportedKey {
        key: source.clone(),
        found,
    })
}

/// Curves of `id-ecPublicKey` keys other than P-256, to name them in errors.
const CURVES: &[(ObjectIdentifier, &str)] = &[
    (ObjectIdentifier::new_unwrap("1.3.132.0.34"), "P-384"),
    (ObjectIdentifier::new_unwrap("1.3.132.0.35"), "P-521"),
    (ObjectIdentifier::new_unwrap("1.3.132.0.10"), "secp256k1"),
];

/// Key algorithms other than ECDSA, to name them in errors.
const ALGORITHMS: &[(ObjectIdentifier, &str)] = &[
    (ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1"), "RSA"),
    (
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10"),
        "RSA-PSS",
    ),
    (ObjectIdentifier::new_unwrap("1.3.101.112"), "Ed25519"),
    (ObjectIdentifier::new_unwrap("1.3.101.113"), "Ed448"),
];

/// What to do with a key in a PEM format this module does not read.
fn hint_for_label(label: &str) -> &'static str {
    match label {
        "EC PRIVATE KEY" | "EC PARAMETERS" => {
            "; hint: convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pem`"
        }
        "ENCRYPTED PRIVATE KEY" => "; hint: decrypt it with `openssl pkcs8 -in KEY -out KEY.pem`",
        "CERTIFICATE" => {
            "; hint: pass the public key, such as `openssl x509 -pubkey -noout -in CERT` prints"
        }
        _ => "",
    }
}

/// The PEM text of a key source: the file's content, or the environment variable's value.
fn read_text(source: &KeySource) -> Result<Zeroizing<String>, KeyError> {
    read_text_with(source, |variable| std::env::var_os(variable))
}

/// [`read_text`] with `environment` looking variables up.
fn read_text_with(
    source: &KeySource,
    environment: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Zeroizing<String>, KeyError> {
    let not_text = KeyError::NotPem {
        key: source.clone(),
        problem: "it is not text (a DER file? convert it to PEM with `openssl pkey`)",
    };
    match source {
        KeySource::File(path) => match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Zeroizing::new)
                .map_err(|error| {
                    drop(Zeroizing::new(error.into_bytes()));
                    not_text
                }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(KeyError::FileMissing {
                    key: source.clone(),
                })
            }
            Err(error) => Err(KeyError::Unreadable {
                key: source.clone(),
                error,
            }),
        },
        KeySource::Environment(variable) => {
            let unset = || KeyError::EnvironmentUnset {
                key: source.clone(),
                variable: variable.clone(),
            };
            if !is_valid_variable_name(variable) {
                return Err(unset());
            }
            let value = environment(variable)
                .filter(|value| !value.is_empty())
                .ok_or_else(unset)?;
            value.into_string().map(Zeroizing::new).map_err(|value| {
                drop(Zeroizing::new(value.into_encoded_bytes()));
                not_text
            })
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|byte| {
            [
                DIGITS[usize::from(byte >> 4)],
                DIGITS[usize::from(byte & 0x0f)],
            ]
        })
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::test_keys::{
        COSIGN_KEY, COSIGN_PUB, P384_PUB, PASSWORD, PLAIN_ED25519, PLAIN_P256, PLAIN_P256_PUB,
        PLAIN_P384, SEC1_P256, body_of, generated, source,
    };

    #[test]
    fn generated_key_round_trips() {
        let (private_pem, public) = generated();
        let key = SigningKey::from_pem(private_pem, PASSWORD, &source("our.key")).expect("load");
        assert_eq!(&key.public_key(), public);
        let signature = key.sign(b"payload");
        assert!(public.verifies(b"payload", &signature));
        assert!(
            Signature::from_der(&signature).is_ok(),
            "the signature is DER"
        );
        let reread =
            PublicKey::from_pem(&public.to_pem(), &source("our.pub")).expect("public key PEM");
        assert_eq!(&reread, public);
    }

    #[test]
    fn two_generated_keys_differ() {
        let (first, first_public) = generated();
        let (second, second_public) = generate(b"").expect("generate");
        assert_ne!(first_public, &second_public);
        assert_ne!(
            body_of(first)["kdf"]["salt"],
            body_of(&second)["kdf"]["salt"]
        );
        // An empty password, as cosign allows, works both ways.
        SigningKey::from_pem(&second, b"", &source("empty.key"))
            .expect("load with the empty password");
    }

    #[test]
    fn cosign_written_key_loads_with_its_password() {
        let key = SigningKey::from_pem(COSIGN_KEY, b"pw", &source("cosign.key")).expect("load");
        let public = PublicKey::from_pem(COSIGN_PUB, &source("cosign.pub")).expect("public key");
        assert_eq!(key.public_key(), public);
        assert_eq!(
            public.to_pem(),
            COSIGN_PUB,
            "the public key PEM is written byte for byte as cosign writes it"
        );
        assert!(public.verifies(b"payload", &key.sign(b"payload")));
    }

    #[test]
    fn public_key_given_as_private_key_says_so() {
        let error = SigningKey::from_pem(COSIGN_PUB, b"pw", &source("cosign.pub"))
            .expect_err("a public key");
        assert!(
            matches!(error, KeyError::PublicKeyGiven { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "`cosign.pub` is a public key, but signing needs the private key: pass the private key (such as \
             `cosign.key`), not the public one (`cosign.pub`)"
        );
        let error =
            PublicKey::from_pem(COSIGN_KEY, &source("cosign.key")).expect_err("a private key");
        assert!(
            matches!(error, KeyError::PrivateKeyGiven { .. }),
            "{error:?}"
        );
        let error = PublicKey::from_pem(SEC1_P256, &source("ec.pem")).expect_err("a private key");
        assert!(
            matches!(error, KeyError::PrivateKeyGiven { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn plain_pkcs8_key_loads_and_ignores_the_password() {
        let key =
            SigningKey::from_pem(PLAIN_P256, b"whatever", &source("plain.pem")).expect("load");
        let public = PublicKey::from_pem(PLAIN_P256_PUB, &source("plain.pub")).expect("public key");
        assert_eq!(key.public_key(), public);
        assert_eq!(public.to_pem(), PLAIN_P256_PUB);
    }

    #[test]
    fn other_pem_types_are_named_with_what_is_expected() {
        let error = SigningKey::from_pem(SEC1_P256, b"", &source("ec.pem")).expect_err("SEC 1");
        assert_eq!(
            error.to_string(),
            "`ec.pem` holds a PEM block of type `EC PRIVATE KEY`; expected `ENCRYPTED SIGSTORE PRIVATE KEY`, \
             `ENCRYPTED COSIGN PRIVATE KEY` or `PRIVATE KEY`; hint: convert it to PKCS#8 with \
             `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pem`"
        );
        let certificate = pem::encode("CERTIFICATE", b"not really");
        let error =
            PublicKey::from_pem(&certificate, &source("cert.pem")).expect_err("a certificate");
        assert!(
            error.to_string().starts_with(
                "`cert.pem` holds a PEM block of type `CERTIFICATE`; expected `PUBLIC KEY`"
            ),
            "{error}"
        );
    }

    #[test]
    fn keys_on_other_curves_or_algorithms_are_refused_by_name() {
        let error = SigningKey::from_pem(PLAIN_P384, b"", &source("p384.pem")).expect_err("P-384");
        assert!(
            matches!(error, KeyError::UnsupportedKey { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "`p384.pem` holds an ECDSA P-384 key; expected an ECDSA P-256 key"
        );
        let error = PublicKey::from_pem(P384_PUB, &source("p384.pub")).expect_err("P-384");
        assert_eq!(
            error.to_string(),
            "`p384.pub` holds an ECDSA P-384 key; expected an ECDSA P-256 key"
        );
        let error =
            SigningKey::from_pem(PLAIN_ED25519, b"", &source("ed.pem")).expect_err("Ed25519");
        assert_eq!(
            error.to_string(),
            "`ed.pem` holds an Ed25519 key; expected an ECDSA P-256 key"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("nowhere.key");
        let error = SigningKey::load(&KeySource::File(path.clone()), b"").expect_err("missing");
        assert!(matches!(error, KeyError::FileMissing { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("key file `{}` does not exist", path.display())
        );
        let error = PublicKey::load(&KeySource::File(path.clone())).expect_err("missing");
        assert!(matches!(error, KeyError::FileMissing { .. }), "{error:?}");
        let error = PublicKey::load(&KeySource::File(directory.path().to_owned()))
            .expect_err("a directory");
        assert!(matches!(error, KeyError::Unreadable { .. }), "{error:?}");
    }

    #[test]
    fn keys_load_from_files() {
        let directory = tempfile::tempdir().expect("temp dir");
        let (private_pem, public) = generated();
        let private_file = directory.path().join("our.key");
        let public_file = directory.path().join("our.pub");
        std::fs::write(&private_file, private_pem).expect("write");
        std::fs::write(&public_file, public.to_pem()).expect("write");
        let key = SigningKey::load(&KeySource::File(private_file), PASSWORD).expect("load");
        assert_eq!(
            &PublicKey::load(&KeySource::File(public_file)).expect("load"),
            public
        );
        assert_eq!(&key.public_key(), public);
        let binary = directory.path().join("binary.der");
        std::fs::write(&binary, [0x30, 0x81, 0xff, 0xfe]).expect("write");
        let error = SigningKey::load(&KeySource::File(binary), b"").expect_err("DER");
        assert!(
            error
                .to_string()
                .contains("is not a PEM key: it is not text"),
            "{error}"
        );
    }

    #[test]
    fn keys_load_from_the_environment() {
        // `std::env::set_var` is `unsafe` in edition 2024 and this crate forbids `unsafe`: the values come from a
        // stand-in for the environment, and the real one is read below through a variable every process has.
        let environment = |name: &str| match name {
            "PRIVATE_PEM" => Some(std::ffi::OsString::from(PLAIN_P256)),
            "PUBLIC_PEM" => Some(std::ffi::OsString::from(PLAIN_P256_PUB)),
            "EMPTY" => Some(std::ffi::OsString::new()),
            _ => None,
        };
        let private_source: KeySource = "env://PRIVATE_PEM".parse().expect("parse");
        let public_source: KeySource = "env://PUBLIC_PEM".parse().expect("parse");
        let private_pem = read_text_with(&private_source, environment).expect("read");
        let key = SigningKey::from_pem(&private_pem, b"", &private_source).expect("load");
        let public_pem = read_text_with(&public_source, environment).expect("read");
        assert_eq!(
            key.public_key(),
            PublicKey::from_pem(&public_pem, &public_source).expect("load")
        );
        let error =
            SigningKey::from_pem(&public_pem, b"", &public_source).expect_err("no private key");
        assert_eq!(
            error.to_string(),
            "`env://PUBLIC_PEM` is a public key, but signing needs the private key: pass the private key (such as \
             `cosign.key`), not the public one (`cosign.pub`)"
        );
        assert!(
            !format!("{error:?}").contains("MFkwEw"),
            "no PEM text in `{error:?}`"
        );

        for name in ["UNSET", "EMPTY"] {
            let error = read_text_with(&KeySource::Environment(name.to_owned()), environment)
                .expect_err(name);
            assert_eq!(
                error.to_string(),
                format!(
                    "environment variable `{name}` (key `env://{name}`) is unset or empty: it should hold the key's \
                     PEM text"
                )
            );
        }

        // The real environment: `PATH` is set, and holds no key.
        let error =
            SigningKey::load(&KeySource::Environment("PATH".to_owned()), b"").expect_err("no key");
        assert_eq!(
            error.to_string(),
            "`env://PATH` is not a PEM key: it has no `-----BEGIN …-----` line"
        );
        let unset = KeySource::Environment("IMAGEPIPE_TEST_KEYS_SURELY_UNSET".to_owned());
        let error = PublicKey::load(&unset).expect_err("unset");
        assert!(
            matches!(error, KeyError::EnvironmentUnset { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn key_sources_parse() {
        for (text, expected) in [
            (
                "cosign.key",
                Ok(KeySource::File(PathBuf::from("cosign.key"))),
            ),
            (
                "/keys/release key.pem",
                Ok(KeySource::File(PathBuf::from("/keys/release key.pem"))),
            ),
            ("./env://x", Ok(KeySource::File(PathBuf::from("./env://x")))),
            (
                "env://COSIGN_KEY",
                Ok(KeySource::Environment("COSIGN_KEY".to_owned())),
            ),
            (
                "env://",
                Err("`env://` names no key: expected a file path or `env://VARIABLE`"),
            ),
            (
                "env://A=B",
                Err("`env://A=B` names no key: expected a file path or `env://VARIABLE`"),
            ),
            (
                "",
                Err("`` names no key: expected a file path or `env://VARIABLE`"),
            ),
            (
                "awskms:///alias/release",
                Err(
                    "`awskms:///alias/release` is a kind of key reference imagepipe does not read: expected a file \
                     path or `env://VARIABLE`",
                ),
            ),
        ] {
            let parsed = text.parse::<KeySource>().map_err(|error| error.to_string());
            assert_eq!(parsed, expected.map_err(str::to_owned), "{text:?}");
        }
        assert_eq!(
            KeySource::Environment("COSIGN_KEY".to_owned()).to_string(),
            "env://COSIGN_KEY"
        );
        assert_eq!(
            KeySource::File(PathBuf::from("keys/cosign.key")).to_string(),
            "keys/cosign.key"
        );
    }

    #[test]
    fn tampered_payloads_and_other_keys_do_not_verify() {
        let (_, public) = generated();
        let key = SigningKey::from_pem(PLAIN_P256, b"", &source("plain.pem")).expect("load");
        let signature = key.sign(b"payload");
        let own = key.public_key();
        assert!(own.verifies(b"payload", &signature));
        assert!(!own.verifies(b"payloae", &signature));
        assert!(!own.verifies(b"", &signature));
        assert!(!public.verifies(b"payload", &signature), "another key");
        assert!(!own.verifies(b"payload", b""));
        assert!(!own.verifies(b"payload", &signature[..signature.len() - 1]));
        let mut flipped = signature.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(!own.verifies(b"payload", &flipped));
    }

    #[test]
    fn fixed_form_and_high_s_signatures_verify() {
        let key = SigningKey::from_pem(PLAIN_P256, b"", &source("plain.pem")).expect("load");
        let public = key.public_key();
        let signature = Signature::from_der(&key.sign(b"payload")).expect("DER");
        assert!(
            public.verifies(b"payload", &signature.to_bytes()),
            "the 64-byte fixed form"
        );
        // Go does not normalize s, so half of cosign's signatures carry the high s; they are valid ECDSA.
        let (r, s) = signature.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).expect("a signature");
        assert!(public.verifies(b"payload", high.to_der().as_bytes()));
    }

    #[test]
    fn key_id_is_stable_hex_sha256_of_the_spki() {
        let public = PublicKey::from_pem(COSIGN_PUB, &source("cosign.pub")).expect("public");
        let key_id = public.key_id();
        assert_eq!(key_id.len(), 64);
        assert!(
            key_id
                .chars()
                .all(|character| matches!(character, '0'..='9' | 'a'..='f')),
            "{key_id}"
        );
        let spki = pem::decode(COSIGN_PUB).expect("PEM").body;
        assert_eq!(key_id, hex(&Sha256::digest(spki.as_slice())));
        assert_eq!(key_id, public.clone().key_id());
        let key = SigningKey::from_pem(PLAIN_P256, b"", &source("plain.pem")).expect("load");
        let public = PublicKey::from_pem(PLAIN_P256_PUB, &source("plain.pub")).expect("public");
        assert_eq!(key.public_key().key_id(), public.key_id());
        assert_ne!(public.key_id(), key_id);
    }

    #[test]
    fn debug_output_redacts_the_private_key() {
        let key = SigningKey::from_pem(PLAIN_P256, b"", &source("plain.pem")).expect("load");
        let debug = format!("{key:?}");
        assert_eq!(
            debug,
            format!(
                "SigningKey(<redacted>, key id {})",
                key.public_key().key_id()
            )
        );
        let scalar = hex(&key.inner.to_bytes());
        assert!(!debug.contains(&scalar));
        assert_eq!(
            format!("{:?}", key.public_key()),
            format!("PublicKey(key id {})", key.public_key().key_id())
        );
    }

    #[test]
    fn hex_encodes_bytes() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
