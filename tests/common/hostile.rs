//! A hostile fake registry, for what a real one will not do on demand: announce absurd lengths, send endless
//! bodies, name upload locations and token realms elsewhere, stall, dribble. Each test gives it a function from
//! the request it saw to the answer it sends, and reads back what it saw (headers included) and how much body it
//! managed to send. Plain HTTP on 127.0.0.1, one request per connection; std threads, no dependencies.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use super::http::{RequestHead, read_head, read_request, reason};
use super::server::{Connection, Server};

/// How often a stalling or dribbling connection looks whether the server is stopping.
const POLL: Duration = Duration::from_millis(50);
/// Endless bodies go out in pieces of this size.
const PIECE: usize = 64 * 1024;

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path with query.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What the fake sends back.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A whole answer; `Content-Length` is added unless `headers` has one (which is then sent as given).
    Whole {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Status and headers as given, then zero bytes until `body_bytes` are out or the client stops reading.
    Endless {
        status: u16,
        headers: Vec<(String, String)>,
        body_bytes: u64,
    },
    /// Read the request, then say nothing until the server stops.
    Stall,
    /// A whole answer whose body goes out one byte every `every`.
    Dribble {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        every: Duration,
    },
}

impl Answer {
    /// `status` with no body.
    pub fn status(status: u16) -> Self {
        Self::with_headers(status, &[])
    }

    /// `status` with these headers and no body.
    pub fn with_headers(status: u16, headers: &[(&str, &str)]) -> Self {
        Self::Whole {
            status,
            headers: owned(headers),
            body: Vec::new(),
        }
    }

    /// 200 with a body of this content type.
    pub fn body(content_type: &str, body: &[u8]) -> Self {
        Self::Whole {
            status: 200,
            headers: owned(&[("Content-Type", content_type)]),
            body: body.to_vec(),
        }
    }
}

/// Header pairs as owned strings.
pub fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

type Handler = Box<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// A running fake. Dropping it stops every connection, stalled ones included.
pub struct HostileRegistry {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    handler: Handler,
    body_bytes_sent: AtomicU64,
    seen: Mutex<Vec<Seen>>,
}

impl Shared {
    fn seen(&self) -> MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl HostileRegistry {
    /// Listens on a free 127.0.0.1 port and answers each request with `handler`'s answer.
    pub fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            body_bytes_sent: AtomicU64::new(0),
            seen: Mutex::default(),
        });
        let serving = Arc::clone(&shared);
        let server = Server::start("hostile-registry", move |connection, client| {
            // The client going away mid-answer is what most of these tests provoke: not worth a word.
            let _ = serve(&serving, connection, client);
        });
        Self { shared, server }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Every request seen so far, in the order they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen().clone()
    }

    /// Body bytes the fake managed to hand to the kernel, over all answers.
    pub fn body_bytes_sent(&self) -> u64 {
        self.shared.body_bytes_sent.load(Ordering::SeqCst)
    }
}

fn serve(shared: &Shared, connection: &Connection, client: &TcpStream) -> io::Result<()> {
    let Some((request, _body)) = read_request(client)? else {
        return Ok(());
    };
    let seen = Seen {
        method: request.method,
        path: request.path,
        headers: request.headers,
    };
    let answer = (shared.handler)(&seen);
    shared.seen().push(seen);
    let mut out = client;
    match answer {
        Answer::Whole {
            status,
            headers,
            body,
        } => {
            out.write_all(&response_head(status, &headers, Some(body.len() as u64)))?;
            out.write_all(&body)?;
            shared
                .body_bytes_sent
                .fetch_add(body.len() as u64, Ordering::SeqCst);
        }
        Answer::Endless {
            status,
            headers,
            body_bytes,
        } => {
            out.write_all(&response_head(status, &headers, None))?;
            let piece = [0u8; PIECE];
            let mut left = body_bytes;
            while left > 0 && !connection.stopping() {
                let size = left.min(PIECE as u64) as usize;
                out.write_all(&piece[..size])?;
                shared
                    .body_bytes_sent
                    .fetch_add(size as u64, Ordering::SeqCst);
                left -= size as u64;
            }
        }
        Answer::Stall => {
            while !connection.stopping() {
                thread::sleep(POLL);
            }
        }
        Answer::Dribble {
            status,
            headers,
            body,
            every,
        } => {
            out.write_all(&response_head(status, &headers, Some(body.len() as u64)))?;
            for byte in body {
                out.write_all(&[byte])?;
                out.flush()?;
                shared.body_bytes_sent.fetch_add(1, Ordering::SeqCst);
                let mut waited = Duration::ZERO;
                while waited < every {
                    if connection.stopping() {
                        return Ok(());
                    }
                    thread::sleep(POLL);
                    waited += POLL;
                }
            }
        }
    }
    out.flush()
}

/// A response head with `Connection: close`; `Content-Length: length` unless `headers` names its own.
fn response_head(status: u16, headers: &[(String, String)], length: Option<u64>) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    let mut has_length = false;
    for (name, value) in headers {
        has_length |= name.eq_ignore_ascii_case("content-length");
        head += &format!("{name}: {value}\r\n");
    }
    if let (false, Some(length)) = (has_length, length) {
        head += &format!("Content-Length: {length}\r\n");
    }
    head += "Connection: close\r\n\r\n";
    head.into_bytes()
}
