//! Keys the unit tests of `sign` share: PEM texts written by cosign and openssl, and one generated key pair.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::keys::{KeySource, PublicKey, generate};
use super::pem;

/// Written by `COSIGN_PASSWORD=pw cosign generate-key-pair` (cosign 2.5.0, scrypt N=65536), with its
/// `cosign.pub`: proof of the format that needs no cosign binary.
pub(super) const COSIGN_KEY: &str = "\
-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjo2NTUzNiwiciI6
OCwicCI6MX0sInNhbHQiOiJnRnZuZy9OdjZjNnhDbzFRVmlmbkhUSGtVRTlpdCtK
SXpsaEtNdFhWYmJnPSJ9LCJjaXBoZXIiOnsibmFtZSI6Im5hY2wvc2VjcmV0Ym94
Iiwibm9uY2UiOiI0L3JsM3BpekdSaSt2R2M0YWczdWc2cUtHNXpGZVh4byJ9LCJj
aXBoZXJ0ZXh0Ijoic29oNE4vRFBSNHNURFQzYzR0QkVsKy9OTXZtNysyTUJYTTdD
YWg3d0Q3NzJZTklzTHhNM2FaczVlZElLVTdQbmdmYXBnN1Q5d3lsTnlGdGk0NFpy
WlMyaEtuOWxtVzJvYnR5YVJEWXhyODNWRGFtODVBMEgwN1NsTUd4aDd1WXkyYzU5
UWxSQmhDaEgzTDhibDBQUE5FaHFWNUFrcTk0VTVtUnByMitDOVFJeTJpV0FFcVFw
Z3B6RHFQMU1saGpWaVBoMW41ajQ5eWdpVVE9PSJ9
-----END ENCRYPTED SIGSTORE PRIVATE KEY-----
";

pub(super) const COSIGN_PUB: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEkHB5K15GyZ4AsOpQGdivJFcKKJ1S
pC7mpylCdS0aKJ5BQEy444mrWU5z+j2v5152l16vz7lfq+Oa69W/INuwXw==
-----END PUBLIC KEY-----
";

/// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`, and its public key.
pub(super) const PLAIN_P256: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgQiD3awyStci3NtGd
lrdiA3WZv82lJC9MaNu5vy6QKeChRANCAARK9nzoOAGPHcCNWtGB0kCe8Q01pWEs
NXy7LaJT3rwcnHb6eqWTLnnNvJrOsitPpGGFbPfH1JQuSpnn8mG16C52
-----END PRIVATE KEY-----
";

pub(super) const PLAIN_P256_PUB: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAESvZ86DgBjx3AjVrRgdJAnvENNaVh
LDV8uy2iU968HJx2+nqlky55zbyazrIrT6RhhWz3x9SULkqZ5/Jhtegudg==
-----END PUBLIC KEY-----
";

/// The same key in SEC 1 form, which cosign's signing commands do not read either.
pub(super) const SEC1_P256: &str = "\
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIEIg92sMkrXItzbRnZa3YgN1mb/NpSQvTGjbub8ukCngoAoGCCqGSM49
AwEHoUQDQgAESvZ86DgBjx3AjVrRgdJAnvENNaVhLDV8uy2iU968HJx2+nqlky55
zbyazrIrT6RhhWz3x9SULkqZ5/Jhtegudg==
-----END EC PRIVATE KEY-----
";

/// `openssl ecparam -name secp384r1 -genkey | openssl pkcs8 -topk8 -nocrypt`, and its public key.
pub(super) const PLAIN_P384: &str = "\
-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDCupwJPSJWo3AYGZKFt
ABH6L5NpPqRpQxehRNjvb3oQAm5ROLye5e25yZBBRsYGu/yhZANiAAQxURKXk/X8
KO2IcyYsw4XXSmK7jYsDtTEIFMgLuafcMzFXNt0L1sgaeZ94OWBg2TBmopFpAo69
T8TleqpXuiYQH54DKxx6WNU+M6rODVi70X40VDj4Q+gSvCcskKJuwt8=
-----END PRIVATE KEY-----
";

pub(super) const P384_PUB: &str = "\
-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEMVESl5P1/CjtiHMmLMOF10piu42LA7Ux
CBTIC7mn3DMxVzbdC9bIGnmfeDlgYNkwZqKRaQKOvU/E5XqqV7omEB+eAysceljV
PjOqzg1Yu9F+NFQ4+EPoErwnLJCibsLf
-----END PUBLIC KEY-----
";

/// `openssl genpkey -algorithm ed25519`.
pub(super) const PLAIN_ED25519: &str = "\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIPWNUSu0PfgEW2CagK9gftBz5pHbD5Qh7JVbh+2h3Hek
-----END PRIVATE KEY-----
";

pub(super) const PASSWORD: &[u8] = b"correct horse battery staple";

/// One generated key pair for all tests: scrypt is slow in debug builds.
pub(super) fn generated() -> &'static (String, PublicKey) {
    static GENERATED: OnceLock<(String, PublicKey)> = OnceLock::new();
    GENERATED.get_or_init(|| generate(PASSWORD).expect("generate a key pair"))
}

pub(super) fn source(name: &str) -> KeySource {
    KeySource::File(PathBuf::from(name))
}

/// The JSON body of an encrypted key PEM.
pub(super) fn body_of(pem: &str) -> serde_json::Value {
    let block = pem::decode(pem).expect("a PEM block");
    serde_json::from_slice(&block.body).expect("JSON")
}
