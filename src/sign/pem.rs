//! PEM text as cosign reads and writes it through Go's `encoding/pem`: one labelled block of base64, read
//! leniently and written 64 characters a line. Knows no key format; [`super::keys`] decides what a label means.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

/// A PEM block: its label and decoded body.
pub(super) struct Block {
    pub(super) label: String,
    pub(super) body: Zeroizing<Vec<u8>>,
}

const BEGIN: &str = "-----BEGIN ";
const DASHES: &str = "-----";

/// The first PEM block in `text`, read as leniently as Go's `pem.Decode`, which cosign uses: text around the
/// block is ignored, and body lines may be of any width and end in CRLF.
pub(super) fn decode(text: &str) -> Result<Block, &'static str> {
    let start = text
        .match_indices(BEGIN)
        .map(|(index, _)| index)
        .find(|&index| index == 0 || text[..index].ends_with('\n'))
        .ok_or("it has no `-----BEGIN …-----` line")?;
    let (begin_line, rest) = text[start + BEGIN.len()..]
        .split_once('\n')
        .ok_or("nothing follows its `-----BEGIN …-----` line")?;
    let label = begin_line
        .trim_end()
        .strip_suffix(DASHES)
        .ok_or("its `-----BEGIN …-----` line is malformed")?;
    let end_line = format!("-----END {label}-----");
    let end = rest
        .find(&end_line)
        .ok_or("it has no `-----END …-----` line matching its `-----BEGIN` line")?;
    let body = &rest[..end];
    if body.contains(':') {
        return Err(
            "it has PEM headers (such as OpenSSL's legacy encryption), which are not supported",
        );
    }
    let compact = Zeroizing::new(body.split_ascii_whitespace().collect::<String>());
    let body = Zeroizing::new(
        BASE64
            .decode(compact.as_bytes())
            .map_err(|_| "its body is not valid base64")?,
    );
    if body.is_empty() {
        return Err("its body is empty");
    }
    Ok(Block {
        label: label.to_owned(),
        body,
    })
}

/// PEM as Go's `pem.EncodeToMemory` writes it: 64 base64 characters a line, LF line ends.
pub(super) fn encode(label: &str, body: &[u8]) -> String {
    let encoded = BASE64.encode(body);
    let mut pem = String::with_capacity(encoded.len() + encoded.len() / 64 + 2 * label.len() + 32);
    pem.push_str(BEGIN);
    pem.push_str(label);
    pem.push_str(DASHES);
    pem.push('\n');
    for (index, character) in encoded.chars().enumerate() {
        if index > 0 && index % 64 == 0 {
            pem.push('\n');
        }
        pem.push(character);
    }
    pem.push_str("\n-----END ");
    pem.push_str(label);
    pem.push_str(DASHES);
    pem.push('\n');
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::keys::{KeyError, PublicKey, SigningKey};
    use crate::sign::test_keys::{PLAIN_P256, PLAIN_P256_PUB, source};

    #[test]
    fn pem_is_read_as_leniently_as_go_reads_it() {
        // Text around the block, CRLF line ends, and body lines of another width.
        let compact: String = PLAIN_P256
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let (first, second) = compact.split_at(76);
        let pem = format!(
            "Key of the release pipeline\r\n-----BEGIN PRIVATE KEY-----\r\n{first}\r\n{second}\r\n-----END PRIVATE KEY-----\r\ntrailing text\n"
        );
        let key = SigningKey::from_pem(&pem, b"", &source("k")).expect("load");
        assert_eq!(
            key.public_key(),
            PublicKey::from_pem(PLAIN_P256_PUB, &source("p")).expect("public")
        );
    }

    #[test]
    fn text_that_is_not_pem_is_refused() {
        for (text, problem) in [
            ("", "it has no `-----BEGIN …-----` line"),
            ("just some text\n", "it has no `-----BEGIN …-----` line"),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n",
                "it has no `-----END …-----` line matching its `-----BEGIN` line",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
                "its body is empty",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n%%%%\n-----END PRIVATE KEY-----\n",
                "its body is not valid base64",
            ),
            (
                "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END EC PRIVATE KEY-----\n",
                "it has PEM headers (such as OpenSSL's legacy encryption), which are not supported",
            ),
        ] {
            let error = SigningKey::from_pem(text, b"", &source("k.pem")).expect_err(text);
            assert_eq!(
                error.to_string(),
                format!("`k.pem` is not a PEM key: {problem}"),
                "{text:?}"
            );
        }
        let error = PublicKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            &source("k.pub"),
        )
        .expect_err("not SPKI");
        assert!(
            matches!(error, KeyError::MalformedPublicKey { .. }),
            "{error:?}"
        );
        let error = SigningKey::from_pem(
            &encode("PRIVATE KEY", b"\x30\x03\x02\x01\x00"),
            b"",
            &source("k.pem"),
        )
        .expect_err("not PKCS#8");
        assert!(
            matches!(error, KeyError::MalformedPrivateKey { .. }),
            "{error:?}"
        );
    }
}
