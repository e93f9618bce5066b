//! A fault-injecting HTTP/1.1 proxy for tests, placed in front of a real registry: it answers chosen requests
//! with a status, a 429 with `Retry-After`, or a dropped connection, which a real registry cannot do on demand.
//!
//! One request per connection: every answer carries `Connection: close`, so a client reconnects for its next
//! request. The `Host` header is forwarded unchanged, so the upload `Location` URLs the registry builds from it
//! keep pointing at the proxy. Plain HTTP on loopback only; std threads, no dependencies.

use std::collections::VecDeque;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::http::{
    IO_TIMEOUT, RequestHead, invalid, is_hop_header, read_head, read_request, reason,
};
use super::server::{Connection, Server};

/// What the proxy does instead of forwarding a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with an empty body, e.g. 503.
    Status(u16),
    /// Answer 429 with `Retry-After: SECONDS`.
    TooManyRequests { retry_after_seconds: u64 },
    /// Read the request, then close the connection without answering.
    Reset,
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    pub method: String,
    /// The request target: path with query.
    pub path: String,
    /// The status answered, or None when the connection was closed without an answer.
    pub status: Option<u16>,
    /// Whether the answer was a [`Fault`] rather than the upstream's.
    pub fault: bool,
}

/// A running proxy. Dropping it stops the listener thread and every connection thread.
pub struct FaultProxy {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    upstream: String,
    applies_to: String,
    /// While set, every request is read and its connection closed without an answer.
    cut: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    faults: VecDeque<Fault>,
    requests: Vec<ProxiedRequest>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread must not take the whole proxy with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next fault for a request to `path`, if any is left and the request is one it applies to.
    fn next_fault(&self, path: &str) -> Option<Fault> {
        if !path.contains(&self.applies_to) {
            return None;
        }
        self.state().faults.pop_front()
    }

    fn record(&self, request: &RequestHead, status: Option<u16>, fault: bool) {
        self.state().requests.push(ProxiedRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            status,
            fault,
        });
    }
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream` (`127.0.0.1:PORT`); the first requests
    /// (that match `applies_to`, a substring of the request path, "" for all) get `faults` in order, one each.
    pub fn start(upstream: &str, applies_to: &str, faults: Vec<Fault>) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            applies_to: applies_to.to_owned(),
            cut: AtomicBool::new(false),
            state: Mutex::new(State {
                faults: faults.into(),
                ..State::default()
            }),
        });
        let serving = Arc::clone(&shared);
        let server = Server::start("fault-proxy", move |connection, client| {
            if let Err(error) = handle(&serving, connection, client) {
                // The client sees the connection close; say why on the test's stderr.
                eprintln!("fault proxy: {error}");
            }
        });
        Self { shared, server }
    }

    /// `127.0.0.1:PORT`, as in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Every request seen so far, in the order answered.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.shared.state().requests.clone()
    }

    /// From now on, every request is read and its connection closed without an answer, as if the network
    /// between client and registry went down; the registry itself keeps running, so nothing it was writing is
    /// torn. Requests already forwarded complete upstream.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
    }

    /// Undoes [`FaultProxy::cut`].
    pub fn mend(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// The faults not yet used.
    pub fn faults_left(&self) -> usize {
        self.shared.state().faults.len()
    }
}

/// Serves one connection: one request, one answer.
fn handle(shared: &Shared, connection: &Connection, client: &TcpStream) -> io::Result<()> {
    let Some((request, body)) = read_request(client)? else {
        return Ok(()); // closed before sending a request, or a TLS probe
    };

    if shared.cut.load(Ordering::SeqCst) {
        return answer_fault(shared, client, &request, &Fault::Reset);
    }
    if let Some(fault) = shared.next_fault(&request.path) {
        return answer_fault(shared, client, &request, &fault);
    }

    let upstream = match TcpStream::connect(&shared.upstream) {
        Ok(upstream) => upstream,
        Err(error) => {
            shared.record(&request, Some(502), false);
            write_empty_response(client, 502, &[])?;
            return Err(io::Error::new(
                error.kind(),
                format!("connecting to upstream `{}`: {error}", shared.upstream),
            ));
        }
    };
    connection.track(&upstream);
    upstream.set_read_timeout(Some(IO_TIMEOUT))?;
    upstream.set_write_timeout(Some(IO_TIMEOUT))?;
    (&upstream).write_all(&request.forwarded_head())?;
    (&upstream).write_all(&body)?;

    let mut upstream_reader = BufReader::new(&upstream);
    let response = read_head(&mut upstream_reader)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "upstream closed without answering",
        )
    })?;
    let (status, response_head) = rewrite_response_head(&response)?;
    // Recorded before the client sees the answer, so a test reading `requests()` right after its
    // request finds it.
    shared.record(&request, Some(status), false);
    (&*client).write_all(&response_head)?;
    // The upstream closes after its answer (we asked for `Connection: close`), so its body ends at EOF,
    // whatever its framing; it is passed on unchanged.
    io::copy(&mut upstream_reader, &mut &*client)?;
    (&*client).flush()
}

fn answer_fault(
    shared: &Shared,
    client: &TcpStream,
    request: &RequestHead,
    fault: &Fault,
) -> io::Result<()> {
    match fault {
        Fault::Status(status) => {
            shared.record(request, Some(*status), true);
            write_empty_response(client, *status, &[])
        }
        Fault::TooManyRequests {
            retry_after_seconds,
        } => {
            shared.record(request, Some(429), true);
            write_empty_response(
                client,
                429,
                &[("Retry-After", retry_after_seconds.to_string())],
            )
        }
        Fault::Reset => {
            shared.record(request, None, true);
            // The request was read whole, so closing sends FIN and the client sees the connection end
            // before any answer.
            client.shutdown(Shutdown::Both)
        }
    }
}

fn write_empty_response(
    client: &TcpStream,
    status: u16,
    headers: &[(&str, String)],
) -> io::Result<()> {
    let mut response = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        response += &format!("{name}: {value}\r\n");
    }
    response += "Content-Length: 0\r\nConnection: close\r\n\r\n";
    (&*client).write_all(response.as_bytes())?;
    (&*client).flush()
}

/// The status of a response head, and the head with `Connection: close` in place of any connection headers.
fn rewrite_response_head(head: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| invalid(format!("malformed status line `{status_line}`")))?;
    let mut rewritten = format!("{status_line}\r\n");
    for line in lines.take_while(|line| !line.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().trim();
        if !is_hop_header(name) {
            rewritten += line;
            rewritten += "\r\n";
        }
    }
    rewritten += "Connection: close\r\n\r\n";
    Ok((status, rewritten.into_bytes()))
}
