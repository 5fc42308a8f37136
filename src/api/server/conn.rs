//! One connection's task: keep-alive wait, head, body, hand-off to a worker, answer, next
//! request. Every wait has a deadline (the listener's `read_timeout`, read at the start of
//! each request so a SIGHUP applies to the next one).

use super::deadline::{Deadline, Deadlines};
use super::head::{Chunked, Framing, Head, Scan, Scanned, Step};
use super::stream::Stream;
use super::{Body, Request, Response, Server, Service};
use smol::io::{AsyncRead, AsyncWriteExt};
use super::rt::Tcp;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes of an unread body skipped to reuse the connection; beyond it the connection is
/// closed. Also the most read (and dropped) before closing after a refusal.
const MAX_DRAIN: u64 = 64 * 1024;
/// Bytes asked from the socket per read.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Each event loop thread reads into this and appends what came to the connection's buffer.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

pub(super) struct Ctx {
    pub server: Server,
    pub service: Arc<dyn Service>,
    /// Set: the listener speaks HTTPS only (the handshake is the connection's first step).
    pub tls: Option<Arc<super::tls::TlsConfig>>,
    pub deadlines: Arc<Deadlines>,
}

/// Why a read gave up.
enum Gone {
    /// End of stream or a socket error: close without answering.
    Closed,
    /// Answer this status, then close.
    Refuse(u16),
}

struct Conn<'a> {
    cx: &'a Ctx,
    s: Stream,
    peer: SocketAddr,
    /// The deadline of the current wait.
    dl: Arc<Deadline>,
    /// Bytes read and not yet used (the rest of a head or body, pipelined requests).
    buf: Vec<u8>,
}

pub(super) async fn serve(cx: &Ctx, s: Tcp, peer: SocketAddr) {
    let dl = cx.deadlines.add();
    let s = match &cx.tls {
        None => Stream::Plain(s),
        Some(tls) => match handshake(cx, &dl, tls.current(), s, peer).await {
            Some(t) => t,
            None => return,
        },
    };
    let mut c = Conn { cx, s, peer, dl, buf: Vec::new() };
    if let Err(status) = c.run().await {
        c.refuse(status).await;
    }
}

/// The TLS handshake, within the listener's `read_timeout` from the accept; None: it failed
/// or did not finish in time (counted), and the connection is closed.
async fn handshake(cx: &Ctx, dl: &Deadline, cfg: Arc<rustls::ServerConfig>, s: Tcp, peer: SocketAddr) -> Option<Stream> {
    let sv = &cx.server;
    dl.set(Instant::now() + sv.read_timeout());
    let done = dl.bound(futures_rustls::TlsAcceptor::from(cfg).accept(s)).await;
    match done {
        Ok(t) => Some(Stream::Tls(Box::new(t))),
        Err(e) => {
            let timed_out = e.kind() == ErrorKind::TimedOut;
            sv.0.tls_failures[usize::from(!timed_out)].fetch_add(1, Ordering::Relaxed);
            log::debug!("{}: TLS handshake with {peer} {}: {e}", sv.0.name, if timed_out { "not finished in time" } else { "failed" });
            None
        }
    }
}

impl Conn<'_> {
    /// Serves requests until the connection is to be closed; Err is a status to refuse with.
    async fn run(&mut self) -> Result<(), u16> {
        loop {
            let timeout = self.cx.server.read_timeout();
            if self.buf.is_empty() {
                // Keep-alive: nothing held while idle but the socket.
                self.buf = Vec::new();
                if !self.idle(Instant::now() + timeout).await {
                    return Ok(());
                }
            }
            let head = match self.read_head(Instant::now() + timeout).await {
                Ok(h) => h,
                Err(Gone::Closed) => return Ok(()),
                Err(Gone::Refuse(s)) => return Err(s),
            };
            let framing = head.framing()?;
            let mut keep_alive = head.keep_alive() && !head.ambiguous();
            let is_head = head.method == "HEAD";
            let continue_wanted = head.expects_continue();
            let tls = self.s.is_tls();
            let mut rq = Request { method: head.method, url: head.target, headers: head.headers, remote: self.peer, tls, body: Vec::new() };
            let body_deadline = Instant::now() + timeout;
            let mut unread = Some(framing).filter(|f| *f != Framing::Length(0));
            if let (Body::Read(limit), Some(f)) = (self.cx.service.body(&rq), unread) {
                if matches!(f, Framing::Length(n) if n > limit) {
                    return Err(413);
                }
                if continue_wanted && self.buf.is_empty() && self.write_all(b"HTTP/1.1 100 Continue\r\n\r\n", body_deadline).await.is_err() {
                    return Ok(());
                }
                rq.body = match self.read_body(f, Some(limit), body_deadline).await {
                    Ok(b) => b,
                    Err(Gone::Closed) => return Ok(()),
                    Err(Gone::Refuse(s)) => return Err(s),
                };
                unread = None;
            }
            let resp = match self.cx.service.shed(&rq) {
                Some(r) => {
                    self.cx.server.0.in_flight.fetch_add(1, Ordering::SeqCst);
                    r
                }
                None if self.cx.server.may_inline() && self.cx.service.inline(&rq) => self.run_inline(rq),
                None => self.dispatch(rq).await,
            };
            keep_alive &= !self.cx.server.stopping();
            let wrote = self.write_response(resp, is_head, keep_alive, timeout).await;
            self.cx.server.0.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !wrote || !keep_alive {
                self.shutdown(Shutdown::Both, timeout).await;
                return Ok(());
            }
            if let Some(f) = unread {
                // An unread body: skipped if short and here in time, else the connection ends.
                if self.read_body(f, None, body_deadline).await.is_err() {
                    return Ok(());
                }
            }
            if self.buf.capacity() > super::head::MAX_HEAD && self.buf.len() < 1024 {
                self.buf.shrink_to(1024);
            }
            // The other connections of this event loop go first: a client that always has its
            // next request ready must not keep the loop to itself.
            smol::future::yield_now().await;
        }
    }

    /// Waits for the next request's first bytes (read into `buf`); false: the connection is to
    /// be closed (end of stream, an error, or idle for the whole deadline: closed silently).
    async fn idle(&mut self, deadline: Instant) -> bool {
        self.read_more(deadline, 408).await.is_ok()
    }

    /// Reads more bytes into `buf` (only as many as came: a connection trickling its head holds
    /// what it sent, not a read-sized buffer); Ok(0) never happens (end of stream is `Closed`).
    async fn read_more(&mut self, deadline: Instant, timed_out: u16) -> Result<usize, Gone> {
        self.dl.set(deadline);
        let (s, buf, dl) = (&mut self.s, &mut self.buf, &self.dl);
        let read = std::future::poll_fn(|cx| {
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let got = std::pin::Pin::new(&mut *s).poll_read(cx, &mut scratch[..]);
                if let std::task::Poll::Ready(Ok(n)) = got {
                    buf.extend_from_slice(&scratch[..n]);
                }
                got
            })
        });
        let got = dl.bound(read).await;
        match got {
            Ok(n) if n > 0 => Ok(n),
            Ok(_) => Err(Gone::Closed),
            Err(e) if e.kind() == ErrorKind::TimedOut => Err(Gone::Refuse(timed_out)),
            Err(_) => Err(Gone::Closed),
        }
    }

    async fn read_head(&mut self, deadline: Instant) -> Result<Head, Gone> {
        let mut scan = Scan::default();
        loop {
            // Empty lines before a request line are ignored (RFC 9112 2.2).
            let blank = self.buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
            if blank > 0 {
                self.buf.drain(..blank);
                scan = Scan::default();
            }
            match scan.advance(&self.buf) {
                Scanned::Complete(n) => {
                    let head = Head::parse(&self.buf[..n]).map_err(Gone::Refuse)?;
                    self.buf.drain(..n);
                    return Ok(head);
                }
                Scanned::Refuse(s) => return Err(Gone::Refuse(s)),
                Scanned::Incomplete => {}
            }
            self.read_more(deadline, 408).await?;
        }
    }

    /// Reads a body framed by `f`: kept (up to `limit`, else 413) or, with `limit` None,
    /// skipped (up to MAX_DRAIN, else `Closed`).
    async fn read_body(&mut self, f: Framing, limit: Option<u64>, deadline: Instant) -> Result<Vec<u8>, Gone> {
        let over = |n: u64| match limit {
            Some(l) if n > l => Err(Gone::Refuse(413)),
            None if n > MAX_DRAIN => Err(Gone::Closed),
            _ => Ok(()),
        };
        let mut body = Vec::new();
        match f {
            Framing::Length(n) => {
                over(n)?;
                let n = n as usize;
                if limit.is_some() {
                    body.reserve_exact(n);
                }
                while self.buf.len() < n {
                    self.read_more(deadline, 408).await?;
                }
                if limit.is_some() {
                    body.extend_from_slice(&self.buf[..n]);
                }
                self.buf.drain(..n);
            }
            Framing::Chunked => {
                let mut dec = Chunked::default();
                let mut data = 0u64;
                loop {
                    let (used, step) = dec.feed(&self.buf, limit.map(|_| &mut body), &mut data);
                    self.buf.drain(..used);
                    over(data)?;
                    match step {
                        Step::Done => break,
                        Step::Bad => return Err(if limit.is_some() { Gone::Refuse(400) } else { Gone::Closed }),
                        Step::More => {
                            self.read_more(deadline, 408).await?;
                        }
                    }
                }
            }
        }
        Ok(body)
    }

    /// Runs the handler here, on the event loop (see `Service::inline`).
    fn run_inline(&self, rq: Request) -> Response {
        let sv = &self.cx.server;
        sv.0.in_flight.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let resp = handle_caught(&*self.cx.service, sv.0.name, rq);
        sv.inline_took(started.elapsed());
        resp
    }

    /// Runs the handler on a worker; a full queue is answered 503 at once.
    async fn dispatch(&self, rq: Request) -> Response {
        let sv = &self.cx.server;
        sv.0.in_flight.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = smol::channel::bounded::<Response>(1);
        let service = self.cx.service.clone();
        let name = sv.0.name;
        let job = Box::new(move || {
            let _ = tx.try_send(handle_caught(&*service, name, rq));
        });
        if !sv.pool().try_submit(job) {
            sv.count(503);
            return Response::text(503, "busy: too many requests waiting, retry later\n").with_header("Retry-After", "1");
        }
        rx.recv().await.unwrap_or_else(|_| Response::text(500, "internal error\n"))
    }

    async fn write_all(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        self.dl.set(deadline);
        let (w, dl) = (&mut self.s, &self.dl);
        dl.bound(async {
            w.write_all(bytes).await?;
            w.flush().await
        })
        .await
    }

    /// Writes `resp` within `timeout`; false: not written (the connection is to be closed).
    async fn write_response(&mut self, resp: Response, is_head: bool, keep_alive: bool, timeout: Duration) -> bool {
        let bytes = render(resp, is_head, keep_alive);
        match self.write_all(&bytes, Instant::now() + timeout).await {
            Ok(()) => true,
            Err(e) => {
                log::debug!("{}: cannot write a response to {}: {e}", self.cx.server.0.name, self.peer);
                false
            }
        }
    }

    /// Answers `status` itself and closes: after a refusal, what the client still sends is read
    /// and dropped (up to MAX_DRAIN, within the read timeout) so that it receives the answer
    /// instead of a reset.
    async fn refuse(&mut self, status: u16) {
        let sv = &self.cx.server;
        sv.count(status);
        let msg = match status {
            400 => "bad request\n",
            408 => "request not received in time\n",
            413 => "request body too large\n",
            414 => "request target too long\n",
            431 => "request header fields too large\n",
            _ => "refused\n",
        };
        let timeout = sv.read_timeout();
        let deadline = Instant::now() + timeout;
        if !self.write_response(Response::text(status, msg), false, false, timeout).await {
            return;
        }
        self.shutdown(Shutdown::Write, timeout).await;
        if status == 408 {
            return;
        }
        let mut drained = 0u64;
        self.buf = Vec::new();
        while drained <= MAX_DRAIN {
            match self.read_more(deadline, 408).await {
                Ok(n) => drained += n as u64,
                Err(_) => break,
            }
            self.buf.clear();
        }
    }
}

impl Conn<'_> {
    /// Shuts the socket down (`how`); over TLS a close_notify is sent first (within `timeout`).
    async fn shutdown(&mut self, how: Shutdown, timeout: Duration) {
        if let Stream::Tls(t) = &mut self.s {
            t.get_mut().1.send_close_notify();
            let _ = self.write_all(b"", Instant::now() + timeout).await;
        }
        let _ = self.s.tcp().get_ref().shutdown(how);
    }
}

/// `service.handle(rq)`, a panic answered 500 (and logged) instead of taking the thread down.
fn handle_caught(service: &dyn Service, name: &str, rq: Request) -> Response {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| service.handle(rq))).unwrap_or_else(|_| {
        log::error!("{name}: a request handler panicked");
        Response::text(500, "internal error\n")
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The bytes of an answer: status line, the handler's headers (those that cannot be sent are
/// logged and left out), Date, Content-Length, Connection, body.
fn render(resp: Response, is_head: bool, keep_alive: bool) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(256 + resp.body.len());
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (name, value) in &resp.headers {
        let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
        let is_token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !is_token || bad(value) {
            log::error!("HTTP: header {name:?} not sendable; left out");
            continue;
        }
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("Connection") {
            continue;
        }
        for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
            out.extend_from_slice(part);
        }
    }
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        let now = std::time::SystemTime::now();
        let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.as_secs());
        if d.0 != secs || d.1.is_empty() {
            *d = (secs, format!("Date: {}\r\n", httpdate::fmt_http_date(now)));
        }
        out.extend_from_slice(d.1.as_bytes());
    });
    let _ = write!(out, "Content-Length: {}\r\n", resp.body.len());
    out.extend_from_slice(if keep_alive { b"Connection: keep-alive\r\n\r\n" as &[u8] } else { b"Connection: close\r\n\r\n" });
    if !is_head {
        out.extend_from_slice(&resp.body);
    }
    out
}

thread_local! {
    /// The Date header line of the current second (formatting it is not free).
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}
