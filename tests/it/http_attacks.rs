//! Raw-TCP attacks on a running vnetd, one per defect found in the tiny_http front end we used
//! to have (its (a)-(d): unread bodies, fd exhaustion, slow clients, head limits) plus the
//! connection cap (e); spec 2.9. They now run against `api::server` (docs/architecture.md
//! "Front end"). After each attack the daemon process must still be alive and answer a normal
//! GetTime.
//!
//! Every client socket operation has a deadline, so a regression makes a test fail, not hang.

use crate::harness::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const SP_PATH: &str = "/ProvinceForSP/services/ProvinceForSP";
const GET_TIME: &str = "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><GetTime><SPID>1</SPID></GetTime></soap:Body></soap:Envelope>";
/// A request hidden inside a body: if it were ever parsed, its answer would be a 404.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: smuggled\r\n\r\n";
/// Upper bound of every client socket operation.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// "Quickly": an answer that does not wait for the attacker.
const QUICK: Duration = Duration::from_secs(2);
const RSS_LIMIT_KIB: u64 = 200 * 1024;

// ---------------------------------------------------------------------------------------------
// Client helpers

fn sockaddr(d: &Daemon) -> SocketAddr {
    d.addr().parse().unwrap()
}

fn connect_to(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// A complete GetTime request; keep-alive unless `close`.
fn get_time_request(close: bool) -> String {
    format!(
        "POST {SP_PATH} HTTP/1.1\r\nHost: vnetd\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n{}\r\n{GET_TIME}",
        GET_TIME.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
}

fn is_get_time_ok(r: &Http) -> bool {
    r.status == 200 && r.text().contains("<Result>0</Result>")
}

/// One normal GetTime on a new connection (None: no complete answer within `timeout`).
fn get_time(addr: &str, timeout: Duration) -> Option<Http> {
    try_http(addr, "POST", SP_PATH, &[("Content-Type", "text/xml; charset=utf-8")], GET_TIME.as_bytes(), timeout).ok()
}

/// The process is alive and a normal GetTime is answered 200 / Result 0; returns its latency.
fn assert_alive_and_serving(d: &mut Daemon, after: &str) -> Duration {
    let st = d.child.as_mut().expect("daemon not running").try_wait();
    assert!(st.is_none(), "after {after}: vnetd exited ({st:?}); log:\n{}", d.log());
    let t = Instant::now();
    let r = get_time(&d.addr(), IO_TIMEOUT).unwrap_or_else(|| panic!("after {after}: no answer to GetTime; log:\n{}", d.log()));
    assert!(is_get_time_ok(&r), "after {after}: HTTP {} {}", r.status, r.text());
    t.elapsed()
}

fn assert_rss_bounded(d: &Daemon, after: &str) -> u64 {
    let rss = d.rss_kib();
    assert!(rss < RSS_LIMIT_KIB, "after {after}: VmRSS {rss} KiB");
    rss
}

/// What a connection received, with times measured from `start`.
#[derive(Debug)]
struct Outcome {
    data: Vec<u8>,
    first_data: Option<Duration>,
    /// When the server closed the connection (EOF or reset); None: still open at the limit.
    closed: Option<Duration>,
}

/// Read until the server closes the connection (EOF or reset) or `limit` has passed since `start`.
fn read_to_close(s: &mut TcpStream, start: Instant, limit: Duration) -> Outcome {
    let mut o = Outcome { data: Vec::new(), first_data: None, closed: None };
    let mut chunk = [0u8; 16384];
    loop {
        let left = (start + limit).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return o;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => {
                o.closed = Some(start.elapsed());
                return o;
            }
            Ok(n) => {
                o.first_data.get_or_insert(start.elapsed());
                o.data.extend_from_slice(&chunk[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => {
                o.closed = Some(start.elapsed());
                return o;
            }
        }
    }
}

/// Write `data` from another thread; errors are ignored (the server may close before reading
/// it all). Shut the socket down before joining, so that a blocked write ends at once.
fn write_in_background(s: &TcpStream, data: Vec<u8>) -> thread::JoinHandle<()> {
    let mut w = s.try_clone().unwrap();
    thread::spawn(move || {
        let _ = w.write_all(&data);
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned()
}

/// Every HTTP response in `buf`, in order (Content-Length or chunked bodies). Panics on bytes
/// that are not a response.
pub(crate) fn responses(buf: &[u8]) -> Vec<Http> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("bytes that are not a response: {:?}", lossy(rest)));
        let mut r = try_parse_http(&rest[..end + 4]).unwrap_or_else(|e| panic!("{e}"));
        let body = &rest[end + 4..];
        let chunked = r.header("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let used = if chunked {
            let (data, used) = dechunk(body);
            r.body = data;
            used
        } else {
            let len = r.header("Content-Length").map(|v| v.parse::<usize>().unwrap()).unwrap_or(body.len()).min(body.len());
            r.body = body[..len].to_vec();
            len
        };
        out.push(r);
        rest = &body[used..];
    }
    out
}

/// Decode a chunked body; returns the data and the bytes consumed (all of `b` if truncated).
fn dechunk(b: &[u8]) -> (Vec<u8>, usize) {
    let mut data = Vec::new();
    let mut pos = 0;
    while let Some(eol) = b[pos..].windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&b[pos..pos + eol]).into_owned();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
        pos += eol + 2;
        if size == 0 {
            // no trailers from tiny_http: just the final CRLF
            return (data, (pos + 2).min(b.len()));
        }
        let end = (pos + size).min(b.len());
        data.extend_from_slice(&b[pos..end]);
        pos = (end + 2).min(b.len());
    }
    (data, b.len())
}

pub(crate) fn statuses(rs: &[Http]) -> Vec<u16> {
    rs.iter().map(|r| r.status).collect()
}

/// `body` as a chunked body in chunks of at most `size` bytes.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// At least `len` bytes of requests hidden in a body.
fn smuggled_body(len: usize) -> Vec<u8> {
    SMUGGLED.repeat(len / SMUGGLED.len() + 1).into_bytes()
}

/// Send `raw` (in the background) on a new keep-alive connection and read until the server
/// closes it or IO_TIMEOUT passes.
fn attack(addr: SocketAddr, raw: Vec<u8>) -> Outcome {
    let mut s = connect_to(addr);
    let start = Instant::now();
    let w = write_in_background(&s, raw);
    let o = read_to_close(&mut s, start, IO_TIMEOUT);
    let _ = s.shutdown(Shutdown::Both);
    w.join().unwrap();
    o
}

/// Poll GetTime until it is answered 200 / Result 0 or `limit` passes; returns the time it took.
fn served_within(addr: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if get_time(addr, Duration::from_secs(2)).is_some_and(|r| is_get_time_ok(&r)) {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `vnetd_open_connections` from the admin listener's /metrics.
fn open_connections(d: &Daemon) -> u64 {
    let m = d.admin_get("/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix("vnetd_open_connections "))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or_else(|| panic!("no vnetd_open_connections in:\n{m}"))
}

// ---------------------------------------------------------------------------------------------
// (a) Unread request bodies: no allocation by Content-Length, bounded drain, no smuggling

/// Content-Length 10^12 with a few body bytes: tiny_http used to drain an unread body into a
/// buffer of Content-Length bytes (allocation failure: process abort). Now: 413 at once, and
/// once more than the drain bound (64 KiB) of body has come, the connection is closed (a drain
/// waiting for 10^12 bytes would keep it open until the 10 s read deadline).
#[test]
fn unread_body_huge_content_length_is_413_fast_with_bounded_memory() {
    let mut d = Daemon::start();
    let addr = sockaddr(&d);
    let rss_before = d.rss_kib();
    let head = format!("POST {SP_PATH} HTTP/1.1\r\nHost: vnetd\r\nContent-Type: text/xml\r\nContent-Length: 1000000000000\r\n\r\n<soap:Envelope");

    // First alone, with only those few body bytes: 413 before any more body comes.
    let mut s = connect_to(addr);
    let start = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    let r = read_http_response(&mut s, IO_TIMEOUT).unwrap_or_else(|| panic!("no answer after {:?}; log:\n{}", start.elapsed(), d.log()));
    let first = start.elapsed();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(first < QUICK, "413 after {first:?}");
    // The server is now draining (bounded): 128 KiB more, with requests hidden in them, end the
    // drain and the connection; nothing in them is answered.
    let w = write_in_background(&s, smuggled_body(128 * 1024));
    let o = read_to_close(&mut s, Instant::now(), IO_TIMEOUT);
    let _ = s.shutdown(Shutdown::Both);
    w.join().unwrap();
    assert!(o.data.is_empty(), "answered after the 413: {:?}", lossy(&o.data));
    let closed = o.closed.unwrap_or_else(|| panic!("connection still open {IO_TIMEOUT:?} after 128 KiB more body"));
    assert!(closed < Duration::from_secs(3), "closed {closed:?} after the extra body");
    assert_alive_and_serving(&mut d, "one 10^12 Content-Length");

    // Then 16 at once, each with 128 KiB of body.
    let mut raw = head.clone().into_bytes();
    raw.extend(smuggled_body(128 * 1024));
    let attackers: Vec<_> = (0..16).map(|_| {
        let raw = raw.clone();
        thread::spawn(move || attack(addr, raw))
    }).collect();
    let mut slowest = Duration::ZERO;
    for a in attackers {
        let o = a.join().unwrap();
        let rs = responses(&o.data);
        assert_eq!(statuses(&rs), [413], "{:?}", lossy(&o.data));
        let at = o.first_data.unwrap();
        assert!(at < QUICK, "413 after {at:?}");
        let closed = o.closed.unwrap_or_else(|| panic!("connection not closed within {IO_TIMEOUT:?}"));
        assert!(closed < Duration::from_secs(3), "closed after {closed:?}");
        slowest = slowest.max(closed);
    }
    let latency = assert_alive_and_serving(&mut d, "16 concurrent 10^12 Content-Lengths");
    let rss = assert_rss_bounded(&d, "10^12 Content-Lengths");
    eprintln!(
        "huge Content-Length: first 413 after {first:?}, its connection closed {closed:?} after 128 KiB more; 16 concurrent: all closed within {slowest:?}; VmRSS {rss_before} -> {rss} KiB; GetTime then took {latency:?}"
    );
}

/// A body larger than max_body_bytes sent in full (Content-Length and chunked), made of
/// requests: 413, and no request inside it is ever parsed (only a GetTime sent after the body
/// may be answered, if the server chose to drain the whole body instead of closing).
#[test]
fn unread_body_over_max_is_413_and_nothing_inside_is_parsed() {
    let mut d = Daemon::start();
    let addr = sockaddr(&d);
    let body = smuggled_body(200_000);
    let sentinel = get_time_request(true);
    let mut by_length = format!("POST {SP_PATH} HTTP/1.1\r\nHost: vnetd\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    by_length.extend_from_slice(&body);
    by_length.extend_from_slice(sentinel.as_bytes());
    let mut by_chunks = format!("POST {SP_PATH} HTTP/1.1\r\nHost: vnetd\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    by_chunks.extend(chunked(&body, 4096));
    by_chunks.extend_from_slice(sentinel.as_bytes());

    for (what, raw) in [("200 KB by Content-Length", by_length), ("200 KB chunked", by_chunks)] {
        let o = attack(addr, raw);
        let rs = responses(&o.data);
        assert!(!rs.is_empty(), "{what}: no answer; log:\n{}", d.log());
        assert_eq!(rs[0].status, 413, "{what}: {}", rs[0].text());
        let at = o.first_data.unwrap();
        assert!(at < QUICK, "{what}: 413 after {at:?}");
        // A 404 (or 400) here would be a request parsed from inside the body.
        assert!(rs.len() == 1 || (rs.len() == 2 && is_get_time_ok(&rs[1])), "{what}: smuggled answers {:?}", statuses(&rs));
        let closed = o.closed.unwrap_or_else(|| panic!("{what}: connection still open after {IO_TIMEOUT:?}"));
        assert!(closed < Duration::from_secs(3), "{what}: closed after {closed:?}");
        assert_alive_and_serving(&mut d, what);
        eprintln!("{what}: answers {:?}, 413 after {at:?}, closed after {closed:?}", statuses(&rs));
    }
    assert_rss_bounded(&d, "oversized bodies");
}

/// A body the handler never reads (GET ?wsdl with a body), short enough to be drained: it is
/// skipped and the connection reused for the next request. tiny_http did not drain unread
/// chunked bodies at all: their bytes were parsed as the next request.
#[test]
fn unread_short_body_is_skipped_not_parsed_as_a_request() {
    let mut d = Daemon::start();
    let addr = sockaddr(&d);
    let hidden = SMUGGLED.repeat(20).into_bytes();
    let sentinel = get_time_request(true);
    let wsdl_head = format!("GET {SP_PATH}?wsdl HTTP/1.1\r\nHost: vnetd\r\n");
    let mut by_chunks = format!("{wsdl_head}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
    by_chunks.extend(chunked(&hidden, 100));
    by_chunks.extend_from_slice(sentinel.as_bytes());
    let mut by_length = format!("{wsdl_head}Content-Length: {}\r\n\r\n", hidden.len()).into_bytes();
    by_length.extend_from_slice(&hidden);
    by_length.extend_from_slice(sentinel.as_bytes());

    for (what, raw) in [("chunked", by_chunks), ("Content-Length", by_length)] {
        let o = attack(addr, raw);
        let rs = responses(&o.data);
        assert_eq!(statuses(&rs), [200, 200], "{what}: {:?}", lossy(&o.data));
        assert!(rs[0].text().contains("definitions"), "{what}: not the WSDL: {}", rs[0].text());
        assert!(is_get_time_ok(&rs[1]), "{what}: {}", rs[1].text());
        let closed = o.closed.unwrap_or_else(|| panic!("{what}: connection still open after Connection: close"));
        assert!(closed < QUICK, "{what}: closed after {closed:?}");
        eprintln!("unread {what} body: answers {:?}, closed after {closed:?}", statuses(&rs));
    }
    assert_alive_and_serving(&mut d, "unread short bodies");
}

// ---------------------------------------------------------------------------------------------
// (b) Out of file descriptors: the accept thread survives

/// With RLIMIT_NOFILE = 64, connections are held until accept() fails (EMFILE, logged). tiny_http
/// used to end its accept loop (or panic in `try_clone`) there: the listener was gone for good.
/// Once the connections are closed, a new request is served.
#[test]
fn fd_exhaustion_does_not_kill_the_listener() {
    const NOFILE: u64 = 64;
    // A long read timeout, so that the server does not free fds by closing idle connections.
    let mut d = Daemon::start_with_server_nofile("read_timeout_s = 30", "", NOFILE);
    let pid = d.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile_line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    assert!(nofile_line.split_whitespace().nth(3) == Some("64"), "limit not applied: {nofile_line}");
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map(|r| r.count()).unwrap_or(0);
    assert_alive_and_serving(&mut d, "start");
    let baseline = fds();

    // Each accepted connection takes two fds: 64 connections are more than the daemon can take.
    let addr = sockaddr(&d);
    let mut held = Vec::new();
    for _ in 0..NOFILE {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    let exhausted = wait_until(Duration::from_secs(5), || {
        let log = d.log();
        log.contains("error accepting new client") || log.contains("cannot set up new client")
    });
    assert!(exhausted, "the daemon never ran out of fds ({} held, {} fds open, baseline {baseline}); log:\n{}", held.len(), fds(), d.log());
    let peak = fds();
    // While it is out of fds, a new request waits in the listen backlog unanswered.
    let probe = get_time(&d.addr(), Duration::from_millis(1500));
    assert!(probe.is_none(), "answered while out of fds: {probe:?}");

    drop(held);
    let recovered = served_within(&d.addr(), Duration::from_secs(15))
        .unwrap_or_else(|| panic!("not serving after the fds were released; log:\n{}", d.log()));
    assert_alive_and_serving(&mut d, "fd exhaustion");
    let settled = wait_until(Duration::from_secs(5), || fds() <= baseline + 2);
    assert!(settled, "fds not released: {} open, baseline {baseline}", fds());
    eprintln!("fd exhaustion: baseline {baseline} fds, peak {peak}/{NOFILE}; served again {recovered:?} after the connections were closed; fds back to {}", fds());
}

// ---------------------------------------------------------------------------------------------
// (c) Slow clients: per-phase read deadlines

/// Connect, send `prefix`, then one byte of `trickled` every `every`; read until the server
/// closes. Times are measured from just after `prefix` was sent. Returns (outcome, that instant).
/// `ready` is signalled once connected and `prefix` sent.
fn trickle(addr: SocketAddr, prefix: Vec<u8>, trickled: Vec<u8>, every: Duration, ready: std::sync::mpsc::Sender<()>) -> (Outcome, Instant) {
    let mut s = connect_to(addr);
    s.write_all(&prefix).unwrap();
    let start = Instant::now();
    let _ = ready.send(());
    let stop = Arc::new(AtomicBool::new(false));
    let mut w = s.try_clone().unwrap();
    let stop_w = stop.clone();
    let writer = thread::spawn(move || {
        for b in trickled {
            if stop_w.load(Ordering::SeqCst) || w.write_all(&[b]).is_err() {
                return;
            }
            thread::sleep(every);
        }
    });
    let o = read_to_close(&mut s, start, IO_TIMEOUT);
    stop.store(true, Ordering::SeqCst);
    let _ = s.shutdown(Shutdown::Both);
    writer.join().unwrap();
    (o, start)
}

/// With read_timeout_s = 1: a silent connection, a request head trickled a byte every 300 ms, and
/// bodies trickled after complete heads (a small one read by tiny_http, a larger one read by the
/// handler) are all closed 0.9-3 s after their phase started, while normal clients are served.
/// Upstream tiny_http had no read deadline at all: these connections stayed open.
#[test]
fn slow_clients_are_cut_off_while_others_are_served() {
    let mut d = Daemon::start_with_server("read_timeout_s = 1", "");
    let addr = sockaddr(&d);
    let every = Duration::from_millis(300);
    let head_for = |len: usize| format!("POST {SP_PATH} HTTP/1.1\r\nHost: vnetd\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {len}\r\n\r\n");
    let small_body = GET_TIME.as_bytes().to_vec();
    let large_body = GET_TIME.replace("<soap:Body>", &format!("<soap:Body>{}", " ".repeat(3000))).into_bytes();
    type Slow = (&'static str, Vec<u8>, Vec<u8>);
    let cases: Vec<Slow> = vec![
        ("silent connection", Vec::new(), Vec::new()),
        ("head trickled", Vec::new(), get_time_request(false).into_bytes()),
        ("small body trickled", head_for(small_body.len()).into_bytes(), small_body),
        ("large body trickled", head_for(large_body.len()).into_bytes(), large_body),
    ];
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let slow: Vec<_> = cases
        .into_iter()
        .map(|(what, prefix, trickled)| {
            let ready_tx = ready_tx.clone();
            (what, thread::spawn(move || trickle(addr, prefix, trickled, every, ready_tx)))
        })
        .collect();
    for _ in 0..slow.len() {
        ready.recv_timeout(IO_TIMEOUT).expect("slow clients did not connect");
    }

    // Normal clients meanwhile, until every slow connection is done.
    let mut normal: Vec<(Instant, Duration)> = Vec::new();
    let begun = Instant::now();
    while slow.iter().any(|(_, h)| !h.is_finished()) && begun.elapsed() < Duration::from_secs(8) {
        let t = Instant::now();
        let r = get_time(&d.addr(), IO_TIMEOUT);
        assert!(r.as_ref().is_some_and(is_get_time_ok), "normal client not served while slow clients were connected: {r:?}");
        normal.push((Instant::now(), t.elapsed()));
        thread::sleep(Duration::from_millis(100));
    }

    // Every case is checked before failing, so that a failure report shows all of them.
    let mut failures = Vec::new();
    let mut first_close: Option<Instant> = None;
    for (what, h) in slow {
        let (o, start) = h.join().unwrap();
        let rs = responses(&o.data);
        let expected: &[u16] = if what == "silent connection" { &[] } else { &[408] };
        eprintln!("{what}: closed after {:?}, answers {:?}", o.closed, statuses(&rs));
        match o.closed {
            None => failures.push(format!("{what}: still open after {IO_TIMEOUT:?}")),
            Some(c) if c < Duration::from_millis(900) || c > Duration::from_secs(3) => failures.push(format!("{what}: closed after {c:?}")),
            Some(c) => first_close = Some(first_close.map_or(start + c, |f| f.min(start + c))),
        }
        if statuses(&rs) != expected {
            failures.push(format!("{what}: answers {:?}, expected {expected:?}: {:?}", statuses(&rs), lossy(&o.data)));
        }
    }
    assert!(failures.is_empty(), "slow clients:\n{}", failures.join("\n"));
    let first_close = first_close.unwrap();
    let before = normal.iter().filter(|(done, _)| *done < first_close).count();
    let slowest = normal.iter().map(|(_, took)| *took).max().unwrap_or_default();
    assert!(before > 0, "no normal client was served before the first slow one was closed ({} served after)", normal.len());
    eprintln!("normal GetTime: {} served ({before} before the first slow connection closed), slowest {slowest:?}", normal.len());
    assert_alive_and_serving(&mut d, "slow clients");
}

/// More slow clients than the SOAP workers (but well under the 512 cap) must not stall
/// everybody else. With the thread-per-connection front end a worker blocked while it read a
/// body (or drained an unread one) until `read_timeout_s`: with 64 workers, 80 stalled bodies
/// held every worker and a normal GetTime waited for the read timeout. Now bodies are read (and
/// skipped) by the connection tasks; a worker only runs a handler on a complete body. The same
/// for the admin listener (2 workers, 32 connections: /healthz stalled).
#[test]
fn slow_bodies_on_many_connections_do_not_starve_the_workers() {
    const N: usize = 80;
    let mut d = Daemon::start_with_server("read_timeout_s = 5", "");
    let addr = sockaddr(&d);
    let stalled = [
        ("stalled body read by the handler", format!("POST {SP_PATH} HTTP/1.1\r\nHost: vnetd\r\nContent-Type: text/xml\r\nContent-Length: 4000\r\n\r\n<soap:Envelope"), None),
        ("10^12 Content-Length, drain stalled", format!("POST {SP_PATH} HTTP/1.1\r\nHost: vnetd\r\nContent-Type: text/xml\r\nContent-Length: 1000000000000\r\n\r\n<soap:Envelope"), Some(413)),
        ("GET ?wsdl with an unread 60,000-byte body, drain stalled", format!("GET {SP_PATH}?wsdl HTTP/1.1\r\nHost: vnetd\r\nContent-Length: 60000\r\n\r\n<"), Some(200)),
    ];
    for (what, head, answer) in stalled {
        let mut held: Vec<TcpStream> = (0..N)
            .map(|_| {
                let mut s = connect_to(addr);
                s.write_all(head.as_bytes()).unwrap();
                s
            })
            .collect();
        assert!(wait_until(Duration::from_secs(5), || open_connections(&d) >= N as u64), "{what}: {} connections open", open_connections(&d));
        thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        let r = get_time(&d.addr(), IO_TIMEOUT);
        let took = t.elapsed();
        assert!(r.as_ref().is_some_and(is_get_time_ok), "{what}: GetTime {r:?} after {took:?}");
        assert!(took < Duration::from_millis(1500), "{what}: GetTime waited {took:?} behind {N} stalled connections");
        // Every attacker did reach a worker (its answer came, before the read timeout).
        if let Some(status) = answer {
            for (i, s) in held.iter_mut().enumerate() {
                let got = read_http_response(s, Duration::from_secs(2)).map(|r| r.status);
                assert_eq!(got, Some(status), "{what}: connection {i}");
            }
        }
        drop(held);
        assert!(wait_until(Duration::from_secs(5), || open_connections(&d) == 0), "{what}: {} connections left", open_connections(&d));
        eprintln!("{what}: GetTime took {took:?} with {N} stalled connections");
    }

    // Admin listener: 31 stalled GETs (its cap is 32) leave /healthz answered.
    let admin: SocketAddr = format!("127.0.0.1:{}", d.admin_port).parse().unwrap();
    let head = "GET /healthz HTTP/1.1\r\nHost: vnetd\r\nContent-Length: 60000\r\n\r\n<";
    let mut held: Vec<TcpStream> = (0..31)
        .map(|_| {
            let mut s = connect_to(admin);
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    for (i, s) in held.iter_mut().enumerate().take(2) {
        assert_eq!(read_http_response(s, Duration::from_secs(2)).map(|r| r.status), Some(200), "admin connection {i}");
    }
    thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let r = try_http(&admin.to_string(), "GET", "/healthz", &[], b"", IO_TIMEOUT);
    let took = t.elapsed();
    assert_eq!(r.as_ref().map(|r| r.status).ok(), Some(200), "/healthz {r:?} after {took:?}");
    assert!(took < Duration::from_millis(1500), "/healthz waited {took:?} behind 31 stalled admin connections");
    drop(held);
    eprintln!("admin: /healthz took {took:?} with 31 stalled connections");
    assert_alive_and_serving(&mut d, "stalled bodies");
}

/// One connection pipelining thousands of requests without reading the responses. Upstream
/// tiny_http parsed them all ahead and handed them to the workers, where each waited for its
/// turn to write behind the blocked response (up to `write_timeout` each): a normal GetTime
/// waited about 9 s with read_timeout_s = 3. Now a connection's requests are read one at a time
/// and the worker hands each answer to the connection task: the connection holds no worker
/// (tests/it/front_end.rs checks it with a single worker).
#[test]
fn pipelined_requests_with_unread_responses_do_not_stall_others() {
    let d = Daemon::start_with_server("read_timeout_s = 3", "");
    let s = connect_to(sockaddr(&d));
    let w = write_in_background(&s, format!("GET {SP_PATH}?wsdl HTTP/1.1\r\nHost: vnetd\r\n\r\n").repeat(3000).into_bytes());
    thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let r = get_time(&d.addr(), IO_TIMEOUT);
    let took = t.elapsed();
    let _ = s.shutdown(Shutdown::Both);
    w.join().unwrap();
    assert!(r.as_ref().is_some_and(is_get_time_ok), "GetTime {r:?} after {took:?}");
    assert!(took < Duration::from_millis(1500), "GetTime waited {took:?} behind one pipelining connection");
}

// ---------------------------------------------------------------------------------------------
// (d) Request head limits

/// A 1 MiB header line, 10,000 header lines and a 1 MiB request line: refused (431 / 414) after
/// reading only up to the limit, quickly, and the connection closed. Upstream tiny_http buffered
/// all of it and served the request.
#[test]
fn oversized_heads_are_refused_quickly_and_closed() {
    let mut d = Daemon::start();
    let addr = sockaddr(&d);
    let with_headers = |extra: &str| {
        format!("POST {SP_PATH} HTTP/1.1\r\nHost: vnetd\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n{extra}\r\n{GET_TIME}", GET_TIME.len())
    };
    let big_line = with_headers(&format!("X-Big: {}\r\n", "a".repeat(1 << 20)));
    let many_lines = with_headers(&(0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect::<String>());
    let long_target = format!(
        "POST {SP_PATH}?{} HTTP/1.1\r\nHost: vnetd\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{GET_TIME}",
        "a".repeat(1 << 20),
        GET_TIME.len()
    );
    // The same request with a head just within the limits is served: the limits are what refuse.
    let near = with_headers(&format!("X-Big: {}\r\n{}", "a".repeat(8000), (0..90).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()));
    let o = attack(addr, near.into_bytes());
    let rs = responses(&o.data);
    assert!(rs.len() == 1 && is_get_time_ok(&rs[0]), "head within the limits: {:?}", lossy(&o.data));

    for (what, raw, allowed) in [
        ("1 MiB header line", big_line, &[431][..]),
        ("10,000 header lines", many_lines, &[431][..]),
        ("1 MiB request line", long_target, &[414, 400][..]),
    ] {
        let o = attack(addr, raw.into_bytes());
        let rs = responses(&o.data);
        assert_eq!(rs.len(), 1, "{what}: answers {:?}; log:\n{}", statuses(&rs), d.log());
        assert!(allowed.contains(&rs[0].status), "{what}: HTTP {}", rs[0].status);
        let at = o.first_data.unwrap();
        assert!(at < QUICK, "{what}: answered after {at:?}");
        let closed = o.closed.unwrap_or_else(|| panic!("{what}: connection still open after {IO_TIMEOUT:?}"));
        assert!(closed < QUICK, "{what}: closed after {closed:?}");
        assert_alive_and_serving(&mut d, what);
        eprintln!("{what}: HTTP {} after {at:?}, closed after {closed:?}", rs[0].status);
    }
    let rss = assert_rss_bounded(&d, "oversized heads");
    eprintln!("oversized heads: VmRSS {rss} KiB");
}

// ---------------------------------------------------------------------------------------------
// (e) Connection cap

/// With max_connections = 8, eight idle connections make further ones get the 503 at once
/// (upstream tiny_http had no cap: they were accepted and left waiting); once the eight are
/// closed, a request is served.
#[test]
fn connection_cap_answers_503_promptly_and_recovers() {
    let mut d = Daemon::start_with_server("max_connections = 8", "");
    let addr = sockaddr(&d);
    assert_alive_and_serving(&mut d, "start");
    assert!(wait_until(Duration::from_secs(3), || open_connections(&d) == 0), "connections left open: {}", open_connections(&d));

    let idle: Vec<TcpStream> = (0..8).map(|_| connect_to(addr)).collect();
    assert!(wait_until(Duration::from_secs(3), || open_connections(&d) == 8), "{} connections counted, 8 open", open_connections(&d));
    let mut slowest = Duration::ZERO;
    for i in 0..3 {
        let mut s = connect_to(addr);
        let start = Instant::now();
        let o = read_to_close(&mut s, start, Duration::from_secs(2));
        let at = o.first_data.unwrap_or_else(|| panic!("connection {}: no answer within 2 s while 8 were open", 9 + i));
        assert!(at < Duration::from_secs(1), "503 after {at:?}");
        assert!(o.data.starts_with(b"HTTP/1.1 503"), "{:?}", lossy(&o.data));
        assert_eq!(statuses(&responses(&o.data)), [503]);
        let closed = o.closed.unwrap_or_else(|| panic!("refused connection left open"));
        assert!(closed < Duration::from_secs(1), "refused connection closed after {closed:?}");
        slowest = slowest.max(closed);
    }
    // The idle ones were not disturbed (still counted, still open).
    assert_eq!(open_connections(&d), 8);

    drop(idle);
    let recovered = served_within(&d.addr(), Duration::from_secs(5)).unwrap_or_else(|| panic!("not serving after the idle connections were closed; log:\n{}", d.log()));
    assert_alive_and_serving(&mut d, "connection cap");
    eprintln!("connection cap: 503 and close within {slowest:?}; served {recovered:?} after closing the 8 idle connections");
}
