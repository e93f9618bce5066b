//! A hostile fake registry, for what a real one will not do on demand: announce absurd lengths, send endless
//! bodies, name upload locations and token realms elsewhere, stall, dribble. Each test gives it a function from
//! the request it saw to the answer it sends, and reads back what it saw (headers included) and how much body it
//! managed to send. Plain HTTP on 127.0.0.1, one request per connection; std threads, no dependencies.

use std::collections::HashMap;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::http::{
    IO_TIMEOUT, RequestHead, TLS_HANDSHAKE_RECORD, read_head, read_request_body, reason,
};

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
    port: u16,
    shared: Arc<Shared>,
    listener: Option<JoinHandle<()>>,
}

struct Shared {
    handler: Handler,
    stopping: AtomicBool,
    body_bytes_sent: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    sockets: HashMap<u64, TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

impl HostileRegistry {
    /// Listens on a free 127.0.0.1 port and answers each request with `handler`'s answer.
    pub fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the fake's port");
        let port = listener
            .local_addr()
            .expect("reading the fake's address")
            .port();
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            stopping: AtomicBool::new(false),
            body_bytes_sent: AtomicU64::new(0),
            state: Mutex::default(),
        });
        let accepting = Arc::clone(&shared);
        let listener = thread::Builder::new()
            .name(format!("hostile-registry-{port}"))
            .spawn(move || accept_loop(&listener, &accepting))
            .expect("starting the fake's listener thread");
        Self {
            port,
            shared,
            listener: Some(listener),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request seen so far, in the order they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.state().seen.clone()
    }

    /// Body bytes the fake managed to hand to the kernel, over all answers.
    pub fn body_bytes_sent(&self) -> u64 {
        self.shared.body_bytes_sent.load(Ordering::SeqCst)
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
        let threads = {
            let mut state = self.shared.state();
            for socket in state.sockets.values() {
                let _ = socket.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut state.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut next_id = 0u64;
    for client in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(client) = client else { continue };
        next_id += 1;
        let id = next_id;
        if let Ok(clone) = client.try_clone() {
            shared.state().sockets.insert(id, clone);
        }
        let connection = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("hostile-registry-connection-{id}"))
            .spawn(move || {
                // The client going away mid-answer is what most of these tests provoke: not worth a word.
                let _ = serve(&connection, &client);
                let _ = client.shutdown(Shutdown::Both);
                connection.state().sockets.remove(&id);
            });
        if let Ok(thread) = spawned {
            shared.state().threads.push(thread);
        }
    }
}

fn serve(shared: &Shared, client: &TcpStream) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    // A TLS ClientHello: close at once, as a plain HTTP server answers one.
    if reader.fill_buf()?.first() == Some(&TLS_HANDSHAKE_RECORD) {
        return Ok(());
    }
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let request = RequestHead::parse(&head)?;
    if request.has_header_value("expect", "100-continue") {
        (&*client).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    read_request_body(&mut reader, &request)?;
    let seen = Seen {
        method: request.method,
        path: request.path,
        headers: request.headers,
    };
    let answer = (shared.handler)(&seen);
    shared.state().seen.push(seen);
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
            while left > 0 && !shared.stopping() {
                let size = left.min(PIECE as u64) as usize;
                out.write_all(&piece[..size])?;
                shared
                    .body_bytes_sent
                    .fetch_add(size as u64, Ordering::SeqCst);
                left -= size as u64;
            }
        }
        Answer::Stall => {
            while !shared.stopping() {
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
                    if shared.stopping() {
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
