//! A latency proxy for benchmarks: a TCP proxy in front of a real registry that holds every byte back for a
//! fixed one-way delay in each direction, so that the registry behaves as if it were across a network.
//!
//! Modelled on what a client pays to a remote registry:
//! - a request and its response cost one round trip (`2 × delay`): bytes from the client reach the registry
//!   `delay` after they were sent, and the answer reaches the client `delay` after the registry wrote it;
//! - a new connection costs one more round trip, the TCP handshake: the first bytes of a connection leave no
//!   earlier than one round trip after it was opened (no TLS: the registries here speak plain HTTP);
//! - bytes are delayed, not serialized: a body streams at full speed once its first byte has waited (no
//!   bandwidth limit, no slow start).
//!
//! Each client connection gets one upstream connection of its own for as long as it lasts, and bytes pass in
//! both directions unchanged, so HTTP keep-alive works exactly as the client and the registry negotiate it: a
//! client that reuses connections pays the handshake once. The proxy reads the HTTP framing only to log each
//! request (method, target, status) and each new connection; a connection that does not speak HTTP/1.1 (a TLS
//! ClientHello probing for HTTPS) is passed on raw and logged as such. Plain std threads, no dependencies.

use std::collections::VecDeque;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::http::{RequestHead, read_head};
use super::server::{Connection, Server};

/// The most a direction holds in flight before it stops reading: pieces of at most [`PIECE`] bytes.
const QUEUED_PIECES: usize = 1024;
const PIECE: usize = 64 * 1024;
/// The first byte of a TLS ClientHello.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// One request the proxy forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// The request target: path with query.
    pub path: String,
    /// The status of the final answer; None when the connection ended first.
    pub status: Option<u16>,
    /// The index of the connection it came on (see [`LatencyProxy::connections`]).
    pub connection: u64,
    /// From the request's head reaching the registry to the answer's head leaving it: the registry's own time
    /// (with the upload of a request body). None when the connection ended first.
    pub registry_time: Option<Duration>,
}

/// A running proxy. Dropping it closes every connection.
pub struct LatencyProxy {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    upstream: String,
    delay: Duration,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    requests: Vec<LoggedRequest>,
    connections: u64,
    /// Connections that opened with a TLS handshake (a client probing for HTTPS), passed on raw.
    tls_probes: u64,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LatencyProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream` (`127.0.0.1:PORT`), holding bytes back
    /// `delay` each way (zero: a plain pass-through with the same log).
    pub fn start(upstream: &str, delay: Duration) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            delay,
            log: Mutex::default(),
        });
        let serving = Arc::clone(&shared);
        let server = Server::start("latency-proxy", move |connection, client| {
            let opened = Instant::now();
            if let Err(error) = relay(&serving, connection, client, opened) {
                // Ends the connection, as a network failure would; the client sees it close. A client that
                // drops a connection (after a TLS probe, or at exit) is no news.
                use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, NotConnected};
                if !matches!(
                    error.kind(),
                    NotConnected | ConnectionReset | ConnectionAborted | BrokenPipe
                ) {
                    eprintln!("latency proxy: {error}");
                }
            }
        });
        Self { shared, server }
    }

    /// `127.0.0.1:PORT`, as in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }

    pub fn delay(&self) -> Duration {
        self.shared.delay
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log().requests.clone()
    }

    /// How many requests so far: a mark to take [`LatencyProxy::requests_since`] from.
    pub fn request_mark(&self) -> usize {
        self.shared.log().requests.len()
    }

    pub fn requests_since(&self, mark: usize) -> Vec<LoggedRequest> {
        self.shared.log().requests[mark..].to_vec()
    }

    /// Connections opened so far, TLS probes included.
    pub fn connections(&self) -> u64 {
        self.shared.log().connections
    }

    /// Connections that opened with a TLS handshake.
    pub fn tls_probes(&self) -> u64 {
        self.shared.log().tls_probes
    }
}

/// What travels from a reader to the writer of the same direction.
enum Piece {
    Bytes(Vec<u8>),
    /// The sender finished: shut the write side down.
    End,
}

/// Where one direction's bytes go.
enum Outbox<'a> {
    /// No delay: the reading thread writes them at once (no thread hand-off, so a loopback run pays as little
    /// for the proxy as it can).
    Direct {
        to: &'a TcpStream,
        other: &'a TcpStream,
    },
    /// To the writer of this direction, with the instant each piece may be delivered.
    Delayed {
        sender: SyncSender<(Instant, Piece)>,
        delay: Duration,
        /// Nothing is delivered before this: the end of the TCP handshake plus the one-way delay.
        earliest: Instant,
    },
}

impl Outbox<'_> {
    /// When a piece sent now is delivered.
    fn due(&self) -> Instant {
        match self {
            Self::Direct { .. } => Instant::now(),
            Self::Delayed {
                delay, earliest, ..
            } => (Instant::now() + *delay).max(*earliest),
        }
    }

    fn bytes(&self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self {
            Self::Direct { to, other } => (&**to).write_all(bytes).inspect_err(|_| {
                let _ = to.shutdown(Shutdown::Both);
                let _ = other.shutdown(Shutdown::Both);
            }),
            Self::Delayed { sender, .. } => sender
                .send((self.due(), Piece::Bytes(bytes.to_vec())))
                .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "the writer stopped")),
        }
    }

    /// The sender finished: the write side is shut down once what was sent before is delivered.
    fn end(&self) {
        match self {
            Self::Direct { to, .. } => {
                let _ = to.shutdown(Shutdown::Write);
            }
            Self::Delayed { sender, .. } => {
                let _ = sender.send((self.due(), Piece::End));
            }
        }
    }
}

fn relay(
    shared: &Shared,
    connection: &Connection,
    client: &TcpStream,
    opened: Instant,
) -> io::Result<()> {
    let upstream = TcpStream::connect(&shared.upstream)?;
    connection.track(&upstream);
    upstream.set_nodelay(true)?;
    client.set_nodelay(true)?;
    let index = {
        let mut log = shared.log();
        log.connections += 1;
        log.connections - 1
    };
    let delay = shared.delay;
    // The client's first bytes leave after the handshake's round trip, and arrive a one-way delay later;
    // the registry's answers can only follow them.
    let to_upstream_earliest = opened + delay * 3;
    let pending = Pending::default();
    let result = thread::scope(|scope| {
        let (to_upstream, to_client) = if delay.is_zero() {
            (
                Outbox::Direct {
                    to: &upstream,
                    other: client,
                },
                Outbox::Direct {
                    to: client,
                    other: &upstream,
                },
            )
        } else {
            let (to_upstream, upstream_queue) = sync_channel(QUEUED_PIECES);
            let (to_client, client_queue) = sync_channel(QUEUED_PIECES);
            scope.spawn(|| deliver(upstream_queue, &upstream, client));
            scope.spawn(|| deliver(client_queue, client, &upstream));
            (
                Outbox::Delayed {
                    sender: to_upstream,
                    delay,
                    earliest: to_upstream_earliest,
                },
                Outbox::Delayed {
                    sender: to_client,
                    delay,
                    earliest: opened,
                },
            )
        };
        let (upstream_ref, pending_ref) = (&upstream, &pending);
        let responses = scope.spawn(move || {
            let result = forward_responses(shared, upstream_ref, &to_client, pending_ref);
            to_client.end();
            result
        });
        let requests = forward_requests(shared, index, client, &to_upstream, &pending);
        to_upstream.end();
        drop(to_upstream);
        let responses = responses
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the response thread panicked")));
        requests.and(responses)
    });
    let _ = upstream.shutdown(Shutdown::Both);
    result
}

/// Writes each piece once it is due; on `End`, shuts the write side; on a failed write, both sockets.
fn deliver(queue: Receiver<(Instant, Piece)>, to: &TcpStream, other: &TcpStream) {
    for (due, piece) in queue {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        match piece {
            Piece::Bytes(bytes) => {
                if (&*to).write_all(&bytes).is_err() {
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = other.shutdown(Shutdown::Both);
                    return;
                }
            }
            Piece::End => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

/// A request waiting for its answer: its log entry, whether it is a HEAD (no body in the answer), and when it
/// reaches the registry.
type Pending = Mutex<VecDeque<(usize, bool, Instant)>>;

/// Reads requests from the client, logs each, and queues its bytes for upstream, body streamed as it comes.
fn forward_requests(
    shared: &Shared,
    connection: u64,
    client: &TcpStream,
    outbox: &Outbox<'_>,
    pending: &Pending,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(PIECE, client);
    if reader.fill_buf()?.first() == Some(&TLS_HANDSHAKE_RECORD) {
        shared.log().tls_probes += 1;
        return pass_raw(&mut reader, outbox);
    }
    while let Some(head) = read_head(&mut reader)? {
        let request = RequestHead::parse(&head)?;
        let framing = Framing::of_request(&request)?;
        {
            let mut log = shared.log();
            log.requests.push(LoggedRequest {
                method: request.method.clone(),
                path: request.path.clone(),
                status: None,
                connection,
                registry_time: None,
            });
            let entry = log.requests.len() - 1;
            pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back((
                    entry,
                    request.method.eq_ignore_ascii_case("HEAD"),
                    outbox.due(),
                ));
        }
        outbox.bytes(&head)?;
        copy_body(&mut reader, framing, outbox)?;
    }
    Ok(())
}

/// Reads responses from upstream, records each final status, and queues the bytes for the client.
fn forward_responses(
    shared: &Shared,
    upstream: &TcpStream,
    outbox: &Outbox<'_>,
    pending: &Pending,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(PIECE, upstream);
    loop {
        if reader.fill_buf()?.is_empty() {
            return Ok(());
        }
        // Anything that is not an HTTP response head (the answer to a TLS probe) passes on raw.
        if !reader.buffer().starts_with(b"HTTP/") {
            return pass_raw(&mut reader, outbox);
        }
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        let status = status_of(&head)?;
        outbox.bytes(&head)?;
        if (100..200).contains(&status) {
            continue; // 100 Continue: the final answer follows
        }
        let answered = Instant::now();
        let (entry, head_request, arrived) = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or((usize::MAX, false, answered));
        if let Some(request) = shared.log().requests.get_mut(entry) {
            request.status = Some(status);
            request.registry_time = Some(answered.saturating_duration_since(arrived));
        }
        let framing = if head_request || status == 204 || status == 304 {
            Framing::Length(0)
        } else {
            Framing::of_response(&head)?
        };
        copy_body(&mut reader, framing, outbox)?;
    }
}

fn pass_raw(reader: &mut BufReader<&TcpStream>, outbox: &Outbox) -> io::Result<()> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        let length = buffer.len();
        outbox.bytes(buffer)?;
        reader.consume(length);
    }
}

/// How a message's body ends.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
    /// A response without length: the body ends when the connection does.
    UntilClose,
}

impl Framing {
    fn of_request(request: &RequestHead) -> io::Result<Self> {
        if request.has_header_value("transfer-encoding", "chunked") {
            return Ok(Self::Chunked);
        }
        Ok(Self::Length(match request.header("content-length") {
            None => 0,
            Some(length) => parse_length(length)?,
        }))
    }

    fn of_response(head: &[u8]) -> io::Result<Self> {
        // A status line parses as a request line would: three words.
        let response = RequestHead::parse(head)?;
        if response.has_header_value("transfer-encoding", "chunked") {
            return Ok(Self::Chunked);
        }
        Ok(match response.header("content-length") {
            None => Self::UntilClose,
            Some(length) => Self::Length(parse_length(length)?),
        })
    }
}

fn parse_length(text: &str) -> io::Result<u64> {
    text.parse()
        .map_err(|_| super::http::invalid(format!("invalid Content-Length `{text}`")))
}

fn status_of(head: &[u8]) -> io::Result<u16> {
    let line = head.split(|byte| *byte == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| {
            super::http::invalid(format!(
                "malformed status line `{}`",
                String::from_utf8_lossy(line)
            ))
        })
}

/// Queues one body, framing included, piece by piece as it arrives.
fn copy_body(
    reader: &mut BufReader<&TcpStream>,
    framing: Framing,
    outbox: &Outbox<'_>,
) -> io::Result<()> {
    match framing {
        Framing::Length(length) => copy_exactly(reader, length, outbox),
        Framing::UntilClose => pass_raw(reader, outbox),
        Framing::Chunked => loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Err(unexpected_end("a chunk size line"));
            }
            outbox.bytes(&line)?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text.trim().split(';').next().unwrap_or_default();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                super::http::invalid(format!("invalid chunk size line `{}`", text.trim()))
            })?;
            if size == 0 {
                // Trailer fields, then the blank line that ends the body.
                loop {
                    let mut line = Vec::new();
                    if reader.read_until(b'\n', &mut line)? == 0 {
                        return Err(unexpected_end("chunked trailers"));
                    }
                    outbox.bytes(&line)?;
                    if line == b"\r\n" {
                        return Ok(());
                    }
                }
            }
            copy_exactly(reader, size + 2, outbox)?; // the chunk and its CRLF
        },
    }
}

fn copy_exactly(
    reader: &mut BufReader<&TcpStream>,
    mut left: u64,
    outbox: &Outbox<'_>,
) -> io::Result<()> {
    while left > 0 {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Err(unexpected_end("a body"));
        }
        let take = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        outbox.bytes(&buffer[..take])?;
        reader.consume(take);
        left -= take as u64;
    }
    Ok(())
}

fn unexpected_end(inside: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed inside {inside}"),
    )
}
