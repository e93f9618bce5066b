//! A fault-injecting HTTP/1.1 proxy for tests, placed in front of a real registry: it answers chosen requests
//! with a status, a 429 with `Retry-After`, a dropped connection, a stall, or a broken answer (reset or cut short
//! part-way through the body, or withheld after the headers), which a real registry cannot do on demand.
//!
//! Faults come as a list, one per matching request in order; or targeted, each at the first request of a method
//! and path; or from a seeded plan ([`RandomFaults`]) that decides for each request by its method, its path and
//! how often it was seen before, so that a seed makes the same decisions for the same requests in whatever order
//! they arrive. (A stage's concurrent requests still vary a little from run to run, and with them which requests
//! a plan that covers every kind puts each kind on: a replay is close, not exact.)
//!
//! One request per connection: every answer carries `Connection: close`, so a client reconnects for its next
//! request. The `Host` header is forwarded unchanged, so the upload `Location` URLs the registry builds from it
//! keep pointing at the proxy. Plain HTTP on loopback only; std threads.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::http::{
    IO_TIMEOUT, RequestHead, invalid, is_hop_header, read_head, read_request, reason,
};
use super::server::{Connection, Server};

/// What the proxy does instead of forwarding a request, or to the answer it forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with an empty body, e.g. 503; the registry never sees the request.
    Status(u16),
    /// Answer 429 with `Retry-After: SECONDS`; the registry never sees the request.
    TooManyRequests { retry_after_seconds: u64 },
    /// Read the request, then close the connection without answering; the registry never sees the request.
    Reset,
    /// Read the request and say nothing, until the client gives up and closes the connection (or the proxy
    /// stops); the registry never sees the request.
    Stall,
    /// Forward the request (so it takes effect), then close the connection without answering: the answer is lost.
    AnswerLost,
    /// Forward the request, send the answer's headers and part of its body, then reset the connection (RST).
    /// An answer without a body is lost instead, as with [`Fault::AnswerLost`].
    ResetMidBody,
    /// Forward the request, send the answer's headers (with the whole `Content-Length`) and part of its body,
    /// then close the connection (FIN). An answer without a body is lost instead.
    TruncatedBody,
    /// Forward the request, send the answer's headers, then nothing until the client gives up. An answer
    /// without a body is lost instead.
    StalledBody,
}

impl Fault {
    /// Every kind, with the statuses and `Retry-After` a seeded plan uses.
    pub fn all() -> Vec<Fault> {
        vec![
            Fault::Status(500),
            Fault::Status(502),
            Fault::Status(503),
            Fault::TooManyRequests {
                retry_after_seconds: 1,
            },
            Fault::Reset,
            Fault::Stall,
            Fault::AnswerLost,
            Fault::ResetMidBody,
            Fault::TruncatedBody,
            Fault::StalledBody,
        ]
    }

    /// Whether the client can only get past it by giving up on the attempt after its timeout.
    pub fn is_stall(&self) -> bool {
        matches!(self, Fault::Stall | Fault::StalledBody)
    }

    /// Whether it breaks an answer's body, so it only tells on requests whose body is read.
    pub fn needs_body(&self) -> bool {
        matches!(
            self,
            Fault::ResetMidBody | Fault::TruncatedBody | Fault::StalledBody
        )
    }

    /// Whether the request reaches the registry before the fault.
    fn after_upstream(&self) -> bool {
        matches!(
            self,
            Fault::AnswerLost | Fault::ResetMidBody | Fault::TruncatedBody | Fault::StalledBody
        )
    }
}

/// A fault for the first request of `method` whose path holds `path`.
#[derive(Debug, Clone)]
pub struct Targeted {
    pub method: &'static str,
    pub path: &'static str,
    pub fault: Fault,
}

/// A seeded plan: each request matching `applies_to` gets a fault with probability `rate`, of a kind drawn
/// from `kinds`.
#[derive(Debug, Clone)]
pub struct RandomFaults {
    pub seed: u64,
    /// The chance of a fault on a request, from 0 to 1.
    pub rate: f64,
    pub kinds: Vec<Fault>,
    /// No request (same method and path) is faulted more often than this, so that a client that retries
    /// enough gets through.
    pub most_per_request: u32,
    /// Stalls in all, at most: each costs the client its attempt timeout.
    pub most_stalls: usize,
    /// Before faults come at `rate`, each kind once, in an order the seed shuffles, on the first requests it
    /// suits (other than the API probe `GET /v2/`): so every kind is met in every run, whatever the seed. Which request gets which of these can vary
    /// with the order concurrent requests arrive in; the faults at `rate` replay exactly.
    pub cover_every_kind: bool,
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

/// A fault the proxy applied, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedFault {
    pub method: String,
    pub path: String,
    pub fault: Fault,
}

/// A running proxy. Dropping it stops the listener thread and every connection thread.
pub struct FaultProxy {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    upstream: String,
    /// While set, every request is read and its connection closed without an answer.
    cut: AtomicBool,
    state: Mutex<State>,
    /// Signalled whenever a request is recorded.
    recorded: Condvar,
}

#[derive(Default)]
struct State {
    /// Faults apply to requests whose path holds this.
    applies_to: String,
    faults: VecDeque<Fault>,
    targeted: Vec<Targeted>,
    plan: Option<RandomFaults>,
    /// The kinds of the plan not yet met, when it covers every kind.
    uncovered: Vec<Fault>,
    /// Per request key (method and normalised path): how often it was seen, and how often faulted.
    seen: HashMap<String, (u64, u32)>,
    stalls: usize,
    requests: Vec<ProxiedRequest>,
    /// When each of `requests` was answered (or dropped).
    times: Vec<Instant>,
    applied: Vec<AppliedFault>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread must not take the whole proxy with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fault for this request, if any: the next of the list, or the seeded plan's decision.
    fn next_fault(&self, request: &RequestHead) -> Option<Fault> {
        let mut state = self.state();
        if let Some(index) = state.targeted.iter().position(|target| {
            target.method == request.method && request.path.contains(target.path)
        }) {
            return Some(state.targeted.remove(index).fault);
        }
        if !request.path.contains(&state.applies_to) {
            return None;
        }
        if let Some(fault) = state.faults.pop_front() {
            return Some(fault);
        }
        let plan = state.plan.clone()?;
        let key = format!("{} {}", request.method, normalised(&request.path));
        let entry = state.seen.entry(key.clone()).or_default();
        entry.0 += 1;
        let (occurrence, faulted) = *entry;
        if faulted >= plan.most_per_request {
            return None;
        }
        let stalls = state.stalls;
        // Body faults go where a body is read: a GET other than the API probe `/v2/`.
        let reads_body = request.method == "GET" && request.path != "/v2/";
        let suits = |kind: &Fault| {
            (reads_body || !kind.needs_body()) && (stalls < plan.most_stalls || !kind.is_stall())
        };
        // Each kind once on a request of the stage's own work, not on the API probe `/v2/`.
        let covering = request.path != "/v2/";
        let fault = match state.uncovered.iter().position(suits).filter(|_| covering) {
            Some(index) => state.uncovered.remove(index),
            None => {
                let mut random = fastrand::Rng::with_seed(
                    plan.seed
                        ^ fnv1a(key.as_bytes())
                        ^ occurrence.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                if random.f64() >= plan.rate {
                    return None;
                }
                // Stalls still to cover keep their share of the stall budget.
                let reserved = state
                    .uncovered
                    .iter()
                    .filter(|kind| kind.is_stall())
                    .count();
                let suitable: Vec<&Fault> = plan
                    .kinds
                    .iter()
                    .filter(|kind| {
                        suits(kind) && (!kind.is_stall() || stalls + reserved < plan.most_stalls)
                    })
                    .collect();
                if suitable.is_empty() {
                    return None;
                }
                suitable[random.usize(..suitable.len())].clone()
            }
        };
        if let Some(entry) = state.seen.get_mut(&key) {
            entry.1 += 1;
        }
        if fault.is_stall() {
            state.stalls += 1;
        }
        Some(fault)
    }

    fn record(&self, request: &RequestHead, status: Option<u16>, fault: Option<&Fault>) {
        let mut state = self.state();
        state.requests.push(ProxiedRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            status,
            fault: fault.is_some(),
        });
        state.times.push(Instant::now());
        if let Some(fault) = fault {
            state.applied.push(AppliedFault {
                method: request.method.clone(),
                path: request.path.clone(),
                fault: fault.clone(),
            });
        }
        drop(state);
        self.recorded.notify_all();
    }
}

/// The kinds a plan that covers every kind has still to apply: all of them, in an order its seed shuffles.
fn uncovered(plan: &RandomFaults) -> Vec<Fault> {
    if !plan.cover_every_kind {
        return Vec::new();
    }
    let mut kinds = plan.kinds.clone();
    fastrand::Rng::with_seed(plan.seed).shuffle(&mut kinds);
    kinds
}

/// A request path without its query, and with upload session IDs (random per upload) replaced by `*`.
fn normalised(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    match path.split_once("/blobs/uploads/") {
        Some((repository, session)) if !session.is_empty() => {
            format!("{repository}/blobs/uploads/*")
        }
        _ => path.to_owned(),
    }
}

/// FNV-1a: a hash that stays the same across builds and toolchains, so a seed replays anywhere.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream` (`127.0.0.1:PORT`); the first requests
    /// (that match `applies_to`, a substring of the request path, "" for all) get `faults` in order, one each.
    pub fn start(upstream: &str, applies_to: &str, faults: Vec<Fault>) -> Self {
        Self::launch(upstream, applies_to, faults, None)
    }

    /// Like [`FaultProxy::start`], with each fault for the first request it targets.
    pub fn start_targeted(upstream: &str, targeted: Vec<Targeted>) -> Self {
        let proxy = Self::launch(upstream, "", Vec::new(), None);
        proxy.shared.state().targeted = targeted;
        proxy
    }

    /// Like [`FaultProxy::start`], with faults decided by a seeded plan.
    pub fn start_random(upstream: &str, applies_to: &str, plan: RandomFaults) -> Self {
        Self::launch(upstream, applies_to, Vec::new(), Some(plan))
    }

    fn launch(
        upstream: &str,
        applies_to: &str,
        faults: Vec<Fault>,
        plan: Option<RandomFaults>,
    ) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            cut: AtomicBool::new(false),
            state: Mutex::new(State {
                applies_to: applies_to.to_owned(),
                faults: faults.into(),
                uncovered: plan.as_ref().map(uncovered).unwrap_or_default(),
                plan,
                ..State::default()
            }),
            recorded: Condvar::new(),
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

    /// When each of [`FaultProxy::requests`] was answered, in the same order.
    pub fn request_times(&self) -> Vec<Instant> {
        self.shared.state().times.clone()
    }

    /// Every fault applied so far, in order.
    pub fn applied(&self) -> Vec<AppliedFault> {
        self.shared.state().applied.clone()
    }

    /// Waits until at least `count` requests were seen, or `limit` passed; returns whether they were.
    pub fn wait_for_requests(&self, count: usize, limit: Duration) -> bool {
        self.wait_for(limit, |requests| requests.len() >= count)
    }

    /// Waits until the requests seen so far meet `condition`, or `limit` passed; returns whether they do.
    pub fn wait_for(&self, limit: Duration, condition: impl Fn(&[ProxiedRequest]) -> bool) -> bool {
        let state = self.shared.state();
        let (state, _) = self
            .shared
            .recorded
            .wait_timeout_while(state, limit, |state| !condition(&state.requests))
            .unwrap_or_else(PoisonError::into_inner);
        condition(&state.requests)
    }

    /// From now on, no more faults: every request is forwarded.
    pub fn calm(&self) {
        let mut state = self.shared.state();
        state.faults.clear();
        state.targeted.clear();
        state.uncovered.clear();
        state.plan = None;
    }

    /// From now on, faults come from `plan`, on requests whose path holds `applies_to`, counted afresh (the
    /// log of requests and applied faults is kept).
    pub fn replan(&self, applies_to: &str, plan: RandomFaults) {
        let mut state = self.shared.state();
        state.applies_to = applies_to.to_owned();
        state.faults.clear();
        state.uncovered = uncovered(&plan);
        state.plan = Some(plan);
        state.seen.clear();
        state.stalls = 0;
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

    /// The kinds a plan that covers every kind has not applied yet.
    pub fn uncovered(&self) -> Vec<Fault> {
        self.shared.state().uncovered.clone()
    }

    /// The faults of the list (or targeted) not yet used.
    pub fn faults_left(&self) -> usize {
        let state = self.shared.state();
        state.faults.len() + state.targeted.len()
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
    let fault = shared.next_fault(&request);
    if let Some(fault) = fault.as_ref().filter(|fault| !fault.after_upstream()) {
        return answer_fault(shared, client, &request, fault);
    }

    let upstream = match TcpStream::connect(&shared.upstream) {
        Ok(upstream) => upstream,
        Err(error) => {
            shared.record(&request, Some(502), None);
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
    if let Some(fault) = fault {
        // The upstream closes after its answer (we asked for `Connection: close`), so its body ends at EOF.
        let mut answer = Vec::new();
        upstream_reader.read_to_end(&mut answer)?;
        return break_answer(
            shared,
            connection,
            client,
            &request,
            &fault,
            status,
            &response_head,
            &answer,
        );
    }
    // Recorded before the client sees the answer, so a test reading `requests()` right after its
    // request finds it.
    shared.record(&request, Some(status), None);
    (&*client).write_all(&response_head)?;
    // The upstream closes after its answer (we asked for `Connection: close`), so its body ends at EOF,
    // whatever its framing; it is passed on unchanged.
    io::copy(&mut upstream_reader, &mut &*client)?;
    (&*client).flush()
}

/// Applies a fault to an answer the registry gave: part of it goes to the client, or none.
#[allow(clippy::too_many_arguments)]
fn break_answer(
    shared: &Shared,
    connection: &Connection,
    client: &TcpStream,
    request: &RequestHead,
    fault: &Fault,
    status: u16,
    head: &[u8],
    body: &[u8],
) -> io::Result<()> {
    if body.is_empty() || *fault == Fault::AnswerLost {
        shared.record(request, None, Some(&Fault::AnswerLost));
        return client.shutdown(Shutdown::Both);
    }
    shared.record(request, Some(status), Some(fault));
    (&*client).write_all(head)?;
    match fault {
        Fault::StalledBody => {
            (&*client).flush()?;
            wait_for_close(client)
        }
        Fault::ResetMidBody | Fault::TruncatedBody => {
            (&*client).write_all(&body[..body.len() / 2])?;
            (&*client).flush()?;
            if *fault == Fault::ResetMidBody {
                connection.reset_on_return();
                Ok(())
            } else {
                client.shutdown(Shutdown::Both)
            }
        }
        other => Err(invalid(format!("{other:?} is not a fault of an answer"))),
    }
}

/// Blocks until the client closes its side (it gave up waiting) or the proxy stops and shuts the socket down.
fn wait_for_close(client: &TcpStream) -> io::Result<()> {
    let mut buffer = [0_u8; 1024];
    loop {
        match (&*client).read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            // A reset from the client, or the safety read timeout.
            Err(_) => return Ok(()),
        }
    }
}

fn answer_fault(
    shared: &Shared,
    client: &TcpStream,
    request: &RequestHead,
    fault: &Fault,
) -> io::Result<()> {
    match fault {
        Fault::Status(status) => {
            shared.record(request, Some(*status), Some(fault));
            write_empty_response(client, *status, &[])
        }
        Fault::TooManyRequests {
            retry_after_seconds,
        } => {
            shared.record(request, Some(429), Some(fault));
            write_empty_response(
                client,
                429,
                &[("Retry-After", retry_after_seconds.to_string())],
            )
        }
        Fault::Reset => {
            shared.record(request, None, Some(fault));
            // The request was read whole, so closing sends FIN and the client sees the connection end
            // before any answer.
            client.shutdown(Shutdown::Both)
        }
        Fault::Stall => {
            shared.record(request, None, Some(fault));
            wait_for_close(client)
        }
        other => Err(invalid(format!("{other:?} needs the upstream's answer"))),
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
