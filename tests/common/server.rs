//! The loopback TCP server under the test doubles (the fault proxy, the hostile registry): a listener on a free
//! 127.0.0.1 port, one thread per connection, and on drop every socket shut down and every thread joined, so a
//! stalled connection cannot outlive its test. A connection may end with a TCP reset instead of an orderly close.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A running server. Dropping it stops the listener and every connection.
pub struct Server {
    port: u16,
    state: Arc<State>,
    listener: Option<JoinHandle<()>>,
}

/// One connection's view of its server.
pub struct Connection {
    id: u64,
    state: Arc<State>,
    /// End with a reset (RST) rather than a FIN.
    reset: AtomicBool,
}

#[derive(Default)]
struct State {
    stopping: AtomicBool,
    next_id: AtomicU64,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    /// The sockets of connections in progress, shut down on stop so that blocked threads wake up.
    sockets: HashMap<u64, Vec<TcpStream>>,
    threads: Vec<JoinHandle<()>>,
}

impl State {
    fn open(&self) -> MutexGuard<'_, Open> {
        // A panicking connection thread must not take the whole server with it.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Connection {
    /// Whether the server is stopping: a connection that waits on purpose looks here.
    pub fn stopping(&self) -> bool {
        self.state.stopping.load(Ordering::SeqCst)
    }

    /// Ends the connection with a TCP reset once `serve` returns, as a crashed peer or a middlebox does: the
    /// client sees `connection reset` rather than the end of the stream.
    pub fn reset_on_return(&self) {
        self.reset.store(true, Ordering::SeqCst);
    }

    /// Shuts `socket` down with this connection's own when the server stops (an upstream connection).
    pub fn track(&self, socket: &TcpStream) {
        if let Ok(clone) = socket.try_clone() {
            self.state
                .open()
                .sockets
                .entry(self.id)
                .or_default()
                .push(clone);
        }
    }
}

impl Server {
    /// Listens on a free 127.0.0.1 port and runs `serve` on a thread of its own for each connection; the
    /// connection is shut down when `serve` returns.
    pub fn start(
        name: &str,
        serve: impl Fn(&Connection, &TcpStream) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|error| panic!("binding the {name}'s port: {error}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("reading the {name}'s address: {error}"))
            .port();
        let state = Arc::new(State::default());
        let accepting = Arc::clone(&state);
        let serve = Arc::new(serve);
        let thread_name = format!("{name}-{port}");
        let listener = thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                for client in listener.incoming() {
                    if accepting.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let connection = Connection {
                        id: accepting.next_id.fetch_add(1, Ordering::SeqCst),
                        state: Arc::clone(&accepting),
                        reset: AtomicBool::new(false),
                    };
                    connection.track(&client);
                    let serve = Arc::clone(&serve);
                    let spawned = thread::Builder::new()
                        .name(format!("{thread_name}-connection-{}", connection.id))
                        .spawn(move || {
                            serve(&connection, &client);
                            let tracked = connection.state.open().sockets.remove(&connection.id);
                            if connection.reset.load(Ordering::SeqCst) {
                                // A shutdown would send FIN first; closing the last descriptor of a socket that
                                // lingers for zero seconds sends RST instead.
                                drop(tracked);
                                let _ = socket2::SockRef::from(&client)
                                    .set_linger(Some(Duration::ZERO));
                                drop(client);
                            } else {
                                let _ = client.shutdown(Shutdown::Both);
                            }
                        });
                    match spawned {
                        Ok(thread) => {
                            let mut open = accepting.open();
                            // A finished thread keeps its stack until its handle is joined or dropped: a
                            // server answering thousands of connections would run out of memory.
                            open.threads.retain(|thread| !thread.is_finished());
                            open.threads.push(thread);
                        }
                        Err(error) => {
                            eprintln!("{thread_name}: cannot start a connection thread: {error}")
                        }
                    }
                }
            })
            .unwrap_or_else(|error| panic!("starting the {name}'s listener thread: {error}"));
        Self {
            port,
            state,
            listener: Some(listener),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        // Wake the listener from `accept`; it sees `stopping` and returns.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
        let threads = {
            let mut open = self.state.open();
            for socket in open.sockets.values().flatten() {
                let _ = socket.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut open.threads)
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}
