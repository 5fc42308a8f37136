//! The HTTP/1.1 server of every listener (SOAP, admin, centre-sim): event-driven on smol.
//!
//! * A [`Runtime`] is a smol executor run by a few threads (about one per core): it accepts
//!   connections and runs one task per connection (`conn`), which reads heads and bodies with
//!   their deadlines and limits and writes the answers. A connection costs memory, not a thread,
//!   so `max_connections` can be in the tens of thousands.
//! * The handlers are blocking code (SQLite, the SOAP pipeline, pages): a [`Service`] runs on the
//!   server's worker pool (`pool`: fixed threads, bounded queue). The body is read first, on the
//!   event loop; a full queue is answered 503 with `Retry-After` at once. The worker hands the
//!   finished [`Response`] to the connection task and is free: a client that does not read its
//!   answers holds a connection task, not a worker.
//! * Limits (spec 2.9): head within `read_timeout` from its first byte (408), body within
//!   `read_timeout` from the end of the head (408), request line ≤ 8 KiB (414), header lines,
//!   their count and the whole head (431), body over the service's limit (413), a connection
//!   beyond `max_connections` gets a fixed 503 and is closed. Keep-alive connections idle for
//!   `read_timeout` are closed silently. Pipelined requests are answered in order, one at a time.
//! * The answers the server writes itself are counted by status ([`Server::refusals`]).

mod conn;
mod deadline;
pub mod head;
mod pool;
mod rt;
mod stream;
pub mod tls;

pub use rt::{Hooks, Runtime};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A request as the handlers see it: head and complete body.
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub remote: SocketAddr,
    /// The request came over TLS (the listener has a certificate).
    pub tls: bool,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// Every value of header `name`.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.url.split_once('?').map_or(&self.url, |(p, _)| p)
    }
    pub fn query(&self) -> &str {
        self.url.split_once('?').map_or("", |(_, q)| q)
    }
}

/// An answer: status, headers (Content-Length, Date and Connection are added) and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response { status, headers: vec![("Content-Type".into(), content_type.into())], body }
    }
    pub fn text(status: u16, msg: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", msg.as_bytes().to_vec())
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What to do with a request's body, decided from its head on the event loop.
pub enum Body {
    /// Read it (at most this many bytes, else 413) before the handler runs.
    Read(u64),
    /// The handler does not need it: it is skipped after the answer (a short one) or the
    /// connection is closed.
    Skip,
}

/// The handlers of a listener.
pub trait Service: Send + Sync + 'static {
    /// Called on the event loop: must not block.
    fn body(&self, rq: &Request) -> Body;
    /// Called on a worker thread with the body read as `body` asked.
    fn handle(&self, rq: Request) -> Response;
    /// Called on the event loop with the body read, before the request is queued for a worker:
    /// `Some` answers at once (load shedding that must cost no hand-off). Must not block.
    fn shed(&self, _rq: &Request) -> Option<Response> {
        None
    }
    /// Called on the event loop with the body read: true runs `handle` right there, without
    /// the two thread hand-offs of a worker, for requests that are known to be short (point
    /// reads: no writer, no hashing, no outgoing call). Must not block. The server stops
    /// running requests inline for a while when one of them took longer than [`SLOW_INLINE`].
    fn inline(&self, _rq: &Request) -> bool {
        false
    }
}

/// [`SLOW_RUN`] inline requests in a row on one event loop that each took longer than this (a
/// slow disk, a lock) send every request to the workers for [`INLINE_PAUSE`]: the event loop
/// must not stall on I/O. One slow request alone does not: a thread preempted by others (a
/// busy machine) is slow once in a while, a stalled disk makes every read slow.
pub const SLOW_INLINE: Duration = Duration::from_millis(5);
pub const SLOW_RUN: u32 = 3;
const INLINE_PAUSE: Duration = Duration::from_secs(1);

/// A listener's settings.
pub struct Limits {
    /// Names the worker threads and the log lines.
    pub name: &'static str,
    pub max_connections: usize,
    pub read_timeout: Duration,
    pub workers: usize,
    pub queue: usize,
    /// Set: HTTPS only, with this (replaceable) certificate; None: plain HTTP.
    pub tls: Option<Arc<tls::TlsConfig>>,
}

/// The statuses the server answers by itself, counted in `refusals`.
const REFUSALS: [u16; 6] = [400, 408, 413, 414, 431, 503];

struct Shared {
    name: &'static str,
    max_connections: AtomicUsize,
    read_timeout_ms: AtomicU64,
    open: AtomicUsize,
    /// Requests taken and not yet answered (stop waits for them).
    in_flight: AtomicUsize,
    refusals: [AtomicU64; REFUSALS.len()],
    /// TLS handshakes that did not finish within `read_timeout` \[0\] or failed \[1\].
    tls_failures: [AtomicU64; 2],
    addr: OnceLock<SocketAddr>,
    stopping: AtomicBool,
    pool: OnceLock<pool::Pool>,
    /// Requests run on the workers only until this (ms after `born`; 0: not paused).
    inline_paused_until_ms: AtomicU64,
    born: Instant,
}

/// A listener (cheap to clone): its live limits and counters.
#[derive(Clone)]
pub struct Server(Arc<Shared>);

impl Server {
    /// Binds `addr` and serves it with `service` on `rt`.
    pub fn start(rt: &Runtime, addr: &str, limits: Limits, service: Arc<dyn Service>) -> Result<Server, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        // std listens with a backlog of 128: a burst of connects (faster than one accept loop
        // takes them) overflowed it and the kernel dropped SYNs (a 1 s retry for the client).
        // listen(2) again sets the backlog to SOMAXCONN (capped by net.core.somaxconn).
        if let Err(e) = nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::MAXCONN) {
            log::warn!("{}: cannot raise the listen backlog: {e}", limits.name);
        }
        let listener = rt::Listener::new(listener, rt.loops().first()).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let shared = Shared {
            name: limits.name,
            max_connections: AtomicUsize::new(limits.max_connections.max(1)),
            read_timeout_ms: AtomicU64::new(limits.read_timeout.as_millis() as u64),
            open: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            refusals: Default::default(),
            tls_failures: Default::default(),
            addr: OnceLock::new(),
            stopping: AtomicBool::new(false),
            pool: OnceLock::new(),
            inline_paused_until_ms: AtomicU64::new(0),
            born: Instant::now(),
        };
        let _ = shared.addr.set(local);
        let _ = shared.pool.set(pool::Pool::new(limits.name, limits.workers, limits.queue)?);
        let server = Server(Arc::new(shared));
        let deadlines = Arc::new(deadline::Deadlines::default());
        deadlines.start_sweeper(limits.name)?;
        let cx = Arc::new(conn::Ctx { server: server.clone(), service, tls: limits.tls, deadlines });
        rt.loops().first().spawn(accept_loop(rt.loops().clone(), listener, cx));
        Ok(server)
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.0.addr.get().copied()
    }
    /// Connections accepted and not yet closed (refused ones not counted).
    pub fn open_connections(&self) -> usize {
        self.0.open.load(Ordering::Relaxed)
    }
    /// `(status, count)` of the answers the server wrote itself: bad heads (400), deadlines
    /// (408), bodies over the limit (413), head limits (414, 431), connection cap and full
    /// worker queue (503).
    pub fn refusals(&self) -> Vec<(u16, u64)> {
        REFUSALS.iter().zip(&self.0.refusals).map(|(s, n)| (*s, n.load(Ordering::Relaxed))).collect()
    }
    /// TLS handshakes that were not finished within `read_timeout` and that failed (not TLS,
    /// no shared protocol, a certificate the client refused): both closed the connection.
    pub fn tls_failures(&self) -> (u64, u64) {
        (self.0.tls_failures[0].load(Ordering::Relaxed), self.0.tls_failures[1].load(Ordering::Relaxed))
    }
    /// The cap for connections accepted from then on (open ones are kept).
    pub fn set_max_connections(&self, n: usize) {
        self.0.max_connections.store(n.max(1), Ordering::Relaxed);
    }
    pub fn max_connections(&self) -> usize {
        self.0.max_connections.load(Ordering::Relaxed)
    }
    /// The head, body, idle and write deadline from then on.
    pub fn set_read_timeout(&self, t: Duration) {
        self.0.read_timeout_ms.store(t.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.0.read_timeout_ms.load(Ordering::Relaxed))
    }
    fn count(&self, status: u16) {
        if let Some(i) = REFUSALS.iter().position(|s| *s == status) {
            self.0.refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    fn stopping(&self) -> bool {
        self.0.stopping.load(Ordering::Relaxed)
    }
    fn since_born_ms(&self) -> u64 {
        self.0.born.elapsed().as_millis() as u64
    }
    /// Whether requests may run on the event loop now (not paused after a slow one).
    fn may_inline(&self) -> bool {
        self.0.inline_paused_until_ms.load(Ordering::Relaxed) <= self.since_born_ms()
    }
    /// An inline request took `took`: the last [`SLOW_RUN`] on this thread slow pause inline running.
    fn inline_took(&self, took: Duration) {
        thread_local! {
            static SLOW_IN_A_ROW: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let slow = SLOW_IN_A_ROW.with(|n| {
            n.set(if took > SLOW_INLINE { n.get() + 1 } else { 0 });
            n.get()
        });
        if slow >= SLOW_RUN {
            SLOW_IN_A_ROW.with(|n| n.set(0));
            let until = self.since_born_ms() + INLINE_PAUSE.as_millis() as u64;
            let was = self.0.inline_paused_until_ms.swap(until, Ordering::Relaxed);
            if was <= self.since_born_ms() {
                log::warn!(
                    "{}: {SLOW_RUN} requests in a row run on the event loop took over {} ms (the last {} ms); requests go to the workers for {} s",
                    self.0.name,
                    SLOW_INLINE.as_millis(),
                    took.as_millis(),
                    INLINE_PAUSE.as_secs()
                );
            }
        }
    }
    fn pool(&self) -> &pool::Pool {
        self.0.pool.get().expect("pool set at start")
    }

    /// Takes no more connections or requests, lets the workers finish what they have and waits
    /// (up to `grace`) for those answers to be written. The runtime is stopped after.
    pub fn stop(&self, grace: Duration) {
        self.0.stopping.store(true, Ordering::SeqCst);
        self.pool().stop();
        let until = Instant::now() + grace;
        while self.0.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The fixed answer to a connection beyond the cap.
const CAP_503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

async fn accept_loop(loops: Arc<rt::Loops>, listener: rt::Listener, cx: Arc<conn::Ctx>) {
    let sv = &cx.server;
    // No smol::Timer here: its reactor would be created on first use, which fails when the
    // process is out of fds, the very case of the pause below.
    let pause = cx.deadlines.add();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) if sv.stopping() => return,
            Err(e) => {
                // Out of fds (EMFILE, ENFILE) or the like: keep accepting after a pause.
                log::error!("{}: error accepting new client: {e}", sv.0.name);
                pause.set(Instant::now() + Duration::from_millis(100));
                pause.expired().await;
                continue;
            }
        };
        if sv.stopping() {
            continue;
        }
        if sv.0.open.load(Ordering::Relaxed) >= sv.max_connections() {
            sv.count(503);
            if cx.tls.is_some() {
                // A plain-text 503 would mean nothing to a TLS client: closed at once.
                let _ = stream.shutdown(std::net::Shutdown::Both);
            } else if let Ok(t) = rt::Tcp::new(stream, loops.first()) {
                loops.first().spawn(refuse_over_cap(t, cx.deadlines.add()));
            }
            continue;
        }
        let _ = stream.set_nodelay(true);
        let lp = loops.pick().clone();
        let stream = match rt::Tcp::new(stream, &lp) {
            Ok(t) => t,
            Err(e) => {
                log::error!("{}: cannot register a connection from {peer}: {e}", sv.0.name);
                continue;
            }
        };
        sv.0.open.fetch_add(1, Ordering::Relaxed);
        let cx = cx.clone();
        lp.spawn(async move {
            let _open = Open(&cx.server);
            conn::serve(&cx, stream, peer).await;
        });
    }
}

/// Counts an open connection until dropped.
struct Open<'a>(&'a Server);
impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0 .0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn refuse_over_cap(mut stream: rt::Tcp, deadline: Arc<deadline::Deadline>) {
    use smol::io::AsyncWriteExt;
    deadline.set(Instant::now() + Duration::from_millis(100));
    let _ = deadline.bound(stream.write_all(CAP_503)).await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// Answers with the name of the thread that ran it; runs everything inline; `/slow` takes
    /// twice SLOW_INLINE.
    struct Where;
    impl Service for Where {
        fn body(&self, _: &Request) -> Body {
            Body::Skip
        }
        fn handle(&self, rq: Request) -> Response {
            if rq.path() == "/slow" {
                std::thread::sleep(SLOW_INLINE * 2);
            }
            Response::text(200, std::thread::current().name().unwrap_or(""))
        }
        fn inline(&self, _: &Request) -> bool {
            true
        }
    }

    /// GETs on one connection, answered in order: the names of the threads that ran them.
    fn get(addr: SocketAddr, paths: &[&str]) -> Vec<String> {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut out = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let close = if i + 1 == paths.len() { "Connection: close\r\n" } else { "" };
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{close}\r\n").as_bytes()).unwrap();
        }
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        for answer in text.split("HTTP/1.1 200 OK").skip(1) {
            out.push(answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string());
        }
        out
    }

    #[test]
    fn slow_inline_requests_in_a_row_send_the_next_ones_to_the_workers_for_a_while() {
        let rt = Runtime::new("t", 1).unwrap();
        let limits = Limits { name: "t", max_connections: 10, read_timeout: Duration::from_secs(5), workers: 1, queue: 4, tls: None };
        let sv = Server::start(&rt, "127.0.0.1:0", limits, Arc::new(Where)).unwrap();
        let addr = sv.local_addr().unwrap();
        let on_loop = |names: &[String]| names.iter().all(|n| n == "t-io-0");
        // One slow request (or two) between fast ones: nothing changes.
        let names = get(addr, &["/slow", "/", "/slow", "/slow", "/"]);
        assert!(on_loop(&names), "{names:?}");
        // Three in a row: the next ones go to the worker.
        let names = get(addr, &["/slow", "/slow", "/slow", "/"]);
        assert!(on_loop(&names[..3]), "{names:?}");
        assert_eq!(names[3], "t-0", "after three slow ones in a row, requests go to the worker");
        sv.0.inline_paused_until_ms.store(0, Ordering::Relaxed);
        assert_eq!(get(addr, &["/"]), ["t-io-0"], "inline again once the pause is over");
        sv.stop(Duration::from_secs(1));
        rt.stop();
    }
}
