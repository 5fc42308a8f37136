//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod request;
mod response;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // vnetd: connections accepted and not yet closed
    open_connections: Arc<AtomicUsize>,

    // vnetd: the connection cap in force (starts at `Limits::max_connections`)
    max_connections: Arc<AtomicUsize>,

    // vnetd: answers the library gave itself
    refusals: Arc<Refusals>,
}

/// vnetd: how many times the library answered a connection itself instead of handing a
/// request to the application (each answer closes the connection).
#[derive(Debug, Default)]
pub struct Refusals {
    /// 400: unparsable request line or header
    pub bad_request: std::sync::atomic::AtomicU64,
    /// 408: request head not received within `read_timeout`
    pub timeout: std::sync::atomic::AtomicU64,
    /// 414: request line over `max_header_line`
    pub uri_too_long: std::sync::atomic::AtomicU64,
    /// 431: header line, header count or header section over the limits
    pub header_too_large: std::sync::atomic::AtomicU64,
    /// 503: connection over `max_connections`
    pub busy: std::sync::atomic::AtomicU64,
}

impl Refusals {
    /// `(status, count)` for 400, 408, 414, 431 and 503.
    pub fn counts(&self) -> [(u16, u64); 5] {
        [
            (400, self.bad_request.load(Relaxed)),
            (408, self.timeout.load(Relaxed)),
            (414, self.uri_too_long.load(Relaxed)),
            (431, self.header_too_large.load(Relaxed)),
            (503, self.busy.load(Relaxed)),
        ]
    }

    pub(crate) fn count(&self, status: u16) {
        let c = match status {
            400 => &self.bad_request,
            408 => &self.timeout,
            414 => &self.uri_too_long,
            431 => &self.header_too_large,
            503 => &self.busy,
            _ => return,
        };
        c.fetch_add(1, Relaxed);
    }
}

/// vnetd: limits protecting the server from slow, idle, oversized or too many clients.
///
/// Used by [`Server::http_with_limits`] and [`Server::from_listener_with_limits`]; every other
/// constructor uses `Limits::default()`. All values but `max_drain_bytes` must be non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many connections are served at once (accepted and not yet closed). One
    /// more gets `503 Service Unavailable` from the accept thread and is closed at once.
    /// Each connection uses one thread and two file descriptors.
    pub max_connections: usize,
    /// Deadline for each reading phase of a connection, measured on the server: the wait for
    /// the first byte of a request (from accept, or from the end of the previous request on a
    /// keep-alive connection), the rest of the request line and headers (from their first
    /// byte), and the request body (from its first read). A phase over time closes the
    /// connection: silently when idle, after a `408` for a late head or small (<= 1 KiB) body
    /// (read by tiny_http itself); a handler reading a larger body gets a `TimedOut` error.
    /// An upgraded connection (`Connection: upgrade`) gets `read_timeout` per read instead.
    pub read_timeout: Duration,
    /// Timeout of each write to the socket; a write over it closes the connection.
    pub write_timeout: Duration,
    /// Longest request line or header line, in bytes without the CRLF (longer: 414 / 431).
    pub max_header_line: usize,
    /// Most header lines in a request (more: 431).
    pub max_headers: usize,
    /// Most bytes in the request line and headers together (more: 431).
    pub max_header_bytes: usize,
    /// When a request is dropped with its body unread, at most this many body bytes are read
    /// and discarded to reuse the connection; a longer body closes the connection instead
    /// (0: always close when a body is left unread).
    pub max_drain_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_header_line: 8 * 1024,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            max_drain_bytes: 64 * 1024,
        }
    }
}

impl Limits {
    fn check(&self) -> Result<(), Box<dyn Error + Send + Sync + 'static>> {
        let zero = Duration::from_secs(0);
        if self.max_connections == 0
            || self.read_timeout == zero
            || self.write_timeout == zero
            || self.max_header_line == 0
            || self.max_headers == 0
            || self.max_header_bytes == 0
        {
            return Err(format!("tiny_http: invalid limits (zero value): {:?}", self).into());
        }
        Ok(())
    }
}

/// vnetd: pause of the accept thread after an accept or spawn error (e.g. out of fds)
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// vnetd: answer for a connection over `Limits::max_connections`
const BUSY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
#[allow(dead_code)] // vnetd: silence the newer compiler's warning
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// vnetd: like [`Server::http`], with explicit [`Limits`].
    pub fn http_with_limits<A>(
        addr: A,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        let listener = ConfigListenAddr::from_socket_addrs(addr)?.bind()?;
        Self::from_listener_with_limits(listener, limits)
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        // vnetd: TLS support (the ssl features) is removed from this copy
        if ssl_config.is_some() {
            return Err("SSL is not supported by this (vnetd-patched) copy of tiny-http".into());
        }
        Self::from_listener_with_limits(listener, Limits::default())
    }

    /// vnetd: like [`Server::from_listener`] (without TLS), with explicit [`Limits`].
    pub fn from_listener_with_limits<L: Into<Listener>>(
        listener: L,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        limits.check()?;
        let listener = listener.into();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);
        let open_connections = Arc::new(AtomicUsize::new(0));
        let max_connections = Arc::new(AtomicUsize::new(limits.max_connections));
        let refusals = Arc::new(Refusals::default());
        let inside_max_connections = max_connections.clone();
        let inside_refusals = refusals.clone();

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let inside_open_connections = open_connections.clone();
        // vnetd: `thread::Builder` so that a failed spawn is an error, not a panic
        thread::Builder::new().spawn(move || {
            // a tasks pool is used to dispatch the connections into threads
            let tasks_pool = util::TaskPool::new();

            log::debug!("Running accept thread");
            while !inside_close_trigger.load(Relaxed) {
                // vnetd: no error may end this loop (the listener would be gone and `recv()`
                // would block forever): log it, back off and keep accepting. Accept errors
                // (EMFILE, ENFILE, ENOBUFS, ...) are no longer pushed to `recv()`.
                let sock = match server.accept() {
                    Ok((sock, _)) => sock,
                    Err(e) => {
                        log::error!("tiny_http: error accepting new client: {}", e);
                        thread::sleep(ACCEPT_BACKOFF);
                        continue;
                    }
                };

                // vnetd: connection cap; the 503 is written from this thread, so it gets a
                // short write timeout and the socket is closed at once.
                let cap = inside_max_connections.load(Relaxed);
                if inside_open_connections.load(Acquire) >= cap {
                    log::debug!("tiny_http: {} connections open, refusing one", cap);
                    inside_refusals.count(503);
                    let mut sock = sock;
                    sock.set_write_timeout(Some(Duration::from_millis(100)))
                        .ok();
                    sock.write_all(BUSY_RESPONSE).ok();
                    sock.shutdown(Shutdown::Both).ok();
                    continue;
                }

                let state =
                    util::ConnState::new(limits.read_timeout, inside_open_connections.clone());
                let (read_closable, write_closable) =
                    match util::RefinedTcpStream::new(sock, state.clone(), limits.write_timeout) {
                        Ok(halves) => halves,
                        Err(e) => {
                            // e.g. EMFILE while duplicating the socket (was a panic)
                            log::error!("tiny_http: cannot set up new client: {}", e);
                            thread::sleep(ACCEPT_BACKOFF);
                            continue;
                        }
                    };
                let client = ClientConnection::new(
                    write_closable,
                    read_closable,
                    limits,
                    state,
                    inside_refusals.clone(),
                );

                let messages = inside_messages.clone();
                let mut client = Some(client);
                let spawned = tasks_pool.spawn(Box::new(move || {
                    if let Some(client) = client.take() {
                        // Synchronization is needed for HTTPS requests to avoid a deadlock
                        if client.secure() {
                            let (sender, receiver) = mpsc::channel();
                            for rq in client {
                                messages.push(rq.with_notify_sender(sender.clone()).into());
                                receiver.recv().unwrap();
                            }
                        } else {
                            for rq in client {
                                messages.push(rq.into());
                            }
                        }
                    }
                }));
                if let Err(e) = spawned {
                    // vnetd: the connection is dropped (closed) with the task
                    log::error!("tiny_http: cannot spawn a connection thread: {}", e);
                    thread::sleep(ACCEPT_BACKOFF);
                }
            }
            log::debug!("Terminating accept thread");
        })?;

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            open_connections,
            max_connections,
            refusals,
        })
    }

    /// vnetd: answers the library gave itself so far (for metrics).
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// vnetd: changes the connection cap for connections accepted from now on (open ones are
    /// kept). A zero is ignored.
    pub fn set_max_connections(&self, n: usize) {
        if n > 0 {
            self.max_connections.store(n, Relaxed);
        }
    }

    /// vnetd: the connection cap in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Relaxed)
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    ///
    /// vnetd: was `unimplemented!()`; same as [`Server::open_connections`].
    pub fn num_connections(&self) -> usize {
        self.open_connections()
    }

    /// vnetd: number of connections accepted and not yet closed (cheap: one atomic load).
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Acquire)
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
