//! The bits of HTTP/1.1 that the test servers share (the fault proxy, the hostile registry): reading a request's
//! head and body as a client sent them. Plain std I/O, no dependencies.

use std::io::{self, BufRead as _, BufReader, Read, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// Ends a connection that stalls (a client that never finishes its request, an upstream that never answers).
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The first byte of a TLS ClientHello.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// The longest request or response head accepted.
const HEAD_LIMIT: usize = 64 * 1024;

/// The request on a fresh connection, head and body, with `Expect: 100-continue` answered; `None` when the
/// peer closed before sending one, or opened with a TLS handshake (record type 22), which is closed at once, as
/// a plain HTTP server answers one, so a client that tries HTTPS first falls back without waiting.
pub fn read_request(client: &TcpStream) -> io::Result<Option<(RequestHead, Vec<u8>)>> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    if reader.fill_buf()?.first() == Some(&TLS_HANDSHAKE_RECORD) {
        return Ok(None);
    }
    let Some(head) = read_head(&mut reader)? else {
        return Ok(None);
    };
    let request = RequestHead::parse(&head)?;
    if request.has_header_value("expect", "100-continue") {
        (&*client).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_request_body(&mut reader, &request)?;
    Ok(Some((request, body)))
}

/// The bytes up to and including the blank line ending a head, or None when the peer closed first.
pub fn read_head(reader: &mut impl io::BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let read = reader.read_until(b'\n', &mut head)?;
        if read == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside an HTTP head",
                ))
            };
        }
        if head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
            // A stray empty line before a request line is allowed (RFC 9112 §2.2).
            if head == b"\r\n" {
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
        if head.len() > HEAD_LIMIT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("HTTP head longer than {HEAD_LIMIT} bytes"),
            ));
        }
    }
}

pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    pub fn parse(head: &[u8]) -> io::Result<Self> {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(format!("malformed request line `{request_line}`")));
        };
        let headers = lines
            .take_while(|line| !line.is_empty())
            .map(|line| {
                line.split_once(':')
                    .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                    .ok_or_else(|| invalid(format!("malformed header line `{line}`")))
            })
            .collect::<io::Result<_>>()?;
        Ok(Self {
            method: method.to_owned(),
            path: path.to_owned(),
            version: version.to_owned(),
            headers,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn has_header_value(&self, name: &str, value: &str) -> bool {
        self.header(name).is_some_and(|found| {
            found
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(value))
        })
    }

    /// The head sent upstream: the same, with `Connection: close` and without `Expect` (answered here).
    pub fn forwarded_head(&self) -> Vec<u8> {
        let mut head = format!("{} {} {}\r\n", self.method, self.path, self.version);
        for (name, value) in &self.headers {
            if !is_hop_header(name) && !name.eq_ignore_ascii_case("expect") {
                head += &format!("{name}: {value}\r\n");
            }
        }
        head += "Connection: close\r\n\r\n";
        head.into_bytes()
    }
}

pub fn is_hop_header(name: &str) -> bool {
    ["connection", "keep-alive", "proxy-connection"]
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop))
}

pub fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The request body exactly as sent: `Content-Length` bytes, or a whole chunked body with its framing (it is
/// forwarded with its `Transfer-Encoding` header, so upstream decodes it).
pub fn read_request_body(
    reader: &mut impl io::BufRead,
    request: &RequestHead,
) -> io::Result<Vec<u8>> {
    if request.has_header_value("transfer-encoding", "chunked") {
        return read_chunked(reader);
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(length) => length
            .parse::<u64>()
            .map_err(|_| invalid(format!("invalid Content-Length `{length}`")))?,
    };
    let mut body = Vec::new();
    reader.take(length).read_to_end(&mut body)?;
    if body.len() as u64 != length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("request body ended after {} of {length} bytes", body.len()),
        ));
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl io::BufRead) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    loop {
        let start = raw.len();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunked body",
            ));
        }
        let line = String::from_utf8_lossy(&raw[start..]);
        let size_text = line.trim().split(';').next().unwrap_or_default();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("invalid chunk size line `{}`", line.trim())))?;
        if size == 0 {
            // Trailer fields, then the blank line that ends the body.
            loop {
                let start = raw.len();
                if reader.read_until(b'\n', &mut raw)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside chunked trailers",
                    ));
                }
                if &raw[start..] == b"\r\n" {
                    return Ok(raw);
                }
            }
        }
        let wanted = size + 2; // the chunk and its CRLF
        let read = reader.take(wanted).read_to_end(&mut raw)?;
        if read as u64 != wanted {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunk",
            ));
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Fault",
    }
}
