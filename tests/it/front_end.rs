//! The event-driven front end (issue 11, docs/architecture.md "Front end"): many slow or idle
//! connections cost memory, not threads, and do not delay real requests; pipelined requests are
//! answered in order; a client that does not read its answers holds no worker; a full worker
//! queue answers 503 with Retry-After at once.

use crate::http_attacks::{responses, statuses};
use crate::harness::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const SP_PATH: &str = "/ProvinceForSP/services/ProvinceForSP";
const GET_TIME: &str = "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><GetTime><SPID>1</SPID></GetTime></soap:Body></soap:Envelope>";
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Raises this process's soft RLIMIT_NOFILE to the hard limit (the daemon, spawned after,
/// inherits it); false when the hard limit is below `need`.
fn raise_nofile(need: u64) -> bool {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return false };
    if hard < need {
        // Root may raise the hard limit too.
        if setrlimit(Resource::RLIMIT_NOFILE, need, need).is_ok() {
            return true;
        }
        eprintln!("SKIPPED: RLIMIT_NOFILE hard limit {hard} < {need} and cannot be raised");
        return false;
    }
    soft >= need || setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn get_time(addr: &str) -> Option<Http> {
    try_http(addr, "POST", SP_PATH, &[("Content-Type", "text/xml; charset=utf-8")], GET_TIME.as_bytes(), IO_TIMEOUT).ok()
}

fn get_time_ok(r: &Option<Http>) -> bool {
    r.as_ref().is_some_and(|r| r.status == 200 && r.text().contains("<Result>0</Result>"))
}

fn metric(d: &Daemon, series: &str) -> Option<f64> {
    let body = d.admin_get("/metrics").text();
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn threads_of(d: &Daemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", d.pid())).map(|r| r.count()).unwrap_or(0)
}

/// A user, by the CLI; its VNetUserID.
fn add_user(d: &Daemon) -> String {
    let out = d.cli_stdin(&["user", "add", "--account-type", "01", "--account", "front01", "--city-code", "0591", "--password-stdin"], "Front-Pass1\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// (a) 2,000 connections trickling a request head (a request line, then a header line a
/// second) while a real client's GetUserinfo is answered 200 within 100 ms each time. With the
/// thread-per-connection front end, 600 such connections made every real request wait.
#[test]
fn slow_header_connections_do_not_delay_real_requests() {
    const SLOW: usize = 2000;
    if !raise_nofile(SLOW as u64 + 1000) {
        return;
    }
    let mut d = Daemon::start_with_server("max_connections = 20000", "");
    d.add_standard_peers(false);
    d.wait_healthy();
    let id = add_user(&d);
    std::thread::sleep(Duration::from_millis(1100)); // the peer cache
    assert_eq!(d.call("ProvinceForSP", "GetUserinfo", SP_KEY, &[("SPID", SP_ID), ("VNetUserID", &id)]).result(), 0);
    let addr: SocketAddr = d.addr().parse().unwrap();
    let opening = Instant::now();
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(format!("POST {SP_PATH} HTTP/1.1\r\n").as_bytes()).unwrap();
            s
        })
        .collect();
    eprintln!("{SLOW} slow connections made in {:?}", opening.elapsed());
    assert!(
        wait_until(Duration::from_secs(5), || metric(&d, "vnetd_open_connections").is_some_and(|n| n >= SLOW as f64)),
        "slow connections not all open after {:?}: {:?}",
        opening.elapsed(),
        metric(&d, "vnetd_open_connections")
    );
    let threads = threads_of(&d);
    eprintln!("{SLOW} slow connections open after {:?}", opening.elapsed());
    let mut took = Vec::new();
    let start = Instant::now();
    let mut line = 0;
    while start.elapsed() < Duration::from_secs(5) {
        line += 1;
        for (i, s) in slow.iter_mut().enumerate() {
            if let Err(e) = s.write_all(format!("X-Slow-{line}: still coming\r\n").as_bytes()) {
                let mut answer = Vec::new();
                let _ = std::io::Read::read_to_end(s, &mut answer);
                panic!("slow connection {i} closed at line {line} after {:?}: {e}; it got {:?}; log:\n{}", opening.elapsed(), String::from_utf8_lossy(&answer), d.log());
            }
        }
        let second = Instant::now();
        while second.elapsed() < Duration::from_secs(1) {
            let t = Instant::now();
            let r = d.call("ProvinceForSP", "GetUserinfo", SP_KEY, &[("SPID", SP_ID), ("VNetUserID", &id)]);
            took.push(t.elapsed());
            assert_eq!(r.result(), 0, "{:?}", r.fields);
            thread::sleep(Duration::from_millis(100));
        }
    }
    let open = metric(&d, "vnetd_open_connections").unwrap_or(0.0);
    took.sort();
    let (median, max) = (took[took.len() / 2], took[took.len() - 1]);
    eprintln!("{SLOW} slow-header connections ({open} open, {threads} daemon threads, VmRSS {} KiB): {} GetUserinfo, median {median:?}, max {max:?}", d.rss_kib(), took.len());
    assert!(open >= SLOW as f64, "slow connections were dropped: {open} open");
    assert!(max < Duration::from_millis(100), "GetUserinfo took up to {max:?} (median {median:?}) beside {SLOW} slow-header connections");
    assert!(threads < 100, "{threads} threads for {SLOW} connections");
    drop(slow);
}

/// (b) 10,000 idle keep-alive connections (each has had an answer) and the daemon still serves.
#[test]
fn ten_thousand_idle_keep_alive_connections() {
    const IDLE: usize = 10_000;
    if !raise_nofile(IDLE as u64 + 2000) {
        return;
    }
    let mut d = Daemon::start_with_server("max_connections = 20000\nread_timeout_s = 120", "");
    d.wait_healthy();
    let rss_before = d.rss_kib();
    let addr: SocketAddr = d.addr().parse().unwrap();
    let mut idle: Vec<TcpStream> = Vec::with_capacity(IDLE);
    let started = Instant::now();
    // In batches, so that the worker queue never overflows.
    while idle.len() < IDLE {
        let mut batch: Vec<TcpStream> = (0..500).map(|_| connect(addr)).collect();
        for s in batch.iter_mut() {
            s.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: vnetd\r\n\r\n").unwrap();
        }
        for s in batch.iter_mut() {
            let r = read_http_response(s, IO_TIMEOUT).expect("an answer");
            assert_eq!(r.status, 404);
        }
        idle.extend(batch);
    }
    let opened = started.elapsed();
    assert!(wait_until(Duration::from_secs(10), || metric(&d, "vnetd_open_connections") == Some(IDLE as f64)), "open: {:?}", metric(&d, "vnetd_open_connections"));
    let (threads, rss) = (threads_of(&d), d.rss_kib());
    let t = Instant::now();
    let r = get_time(&d.addr());
    let latency = t.elapsed();
    assert!(get_time_ok(&r), "GetTime beside {IDLE} idle connections: {r:?}");
    // The idle connections still serve.
    for s in idle.iter_mut().step_by(1000) {
        s.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: vnetd\r\n\r\n").unwrap();
        assert_eq!(read_http_response(s, IO_TIMEOUT).map(|r| r.status), Some(404));
    }
    eprintln!(
        "{IDLE} idle keep-alive connections opened in {opened:?}: {threads} daemon threads, VmRSS {rss_before} -> {rss} KiB ({} bytes a connection); GetTime took {latency:?}",
        (rss.saturating_sub(rss_before)) * 1024 / IDLE as u64
    );
    assert!(threads < 100, "{threads} threads");
    drop(idle);
    assert!(wait_until(Duration::from_secs(10), || metric(&d, "vnetd_open_connections") == Some(0.0)));
}

/// (c) Pipelined requests on one connection (sent in one write) are answered in order.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let d = Daemon::start();
    let post = |spid: &str, close: bool| {
        let body = GET_TIME.replace("<SPID>1</SPID>", &format!("<SPID>{spid}</SPID>"));
        format!(
            "POST {SP_PATH} HTTP/1.1\r\nHost: vnetd\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
    };
    let raw = [
        post("1", false),
        format!("GET {SP_PATH}?wsdl HTTP/1.1\r\nHost: vnetd\r\n\r\n"),
        "GET /nothing-here HTTP/1.1\r\nHost: vnetd\r\n\r\n".to_string(),
        format!("PUT {SP_PATH} HTTP/1.1\r\nHost: vnetd\r\nContent-Length: 3\r\n\r\nabc"),
        post("2", false),
        post("3", false),
        format!("HEAD {SP_PATH}?wsdl HTTP/1.1\r\nHost: vnetd\r\nConnection: close\r\n\r\n"),
    ]
    .concat();
    let got = raw_exchange(&d.addr(), raw.as_bytes(), IO_TIMEOUT).unwrap();
    // The last answer (to HEAD) has a Content-Length and no body: split it off.
    let text = String::from_utf8_lossy(&got).into_owned();
    let head_at = text.rfind("HTTP/1.1 ").unwrap();
    let rs = responses(&got[..head_at]);
    assert_eq!(statuses(&rs), [200, 200, 404, 405, 200, 200], "{text}");
    assert!(rs[1].text().contains("definitions"));
    for i in [0, 4, 5] {
        assert!(rs[i].text().contains("GetTimeResponse"), "answer {i}: {}", rs[i].text());
    }
    let head = &text[head_at..];
    // HEAD is not a way to the WSDL (as before: 405), and its answer carries no body.
    assert!(head.starts_with("HTTP/1.1 405") && head.contains("Content-Length: 42"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "a body after HEAD: {head}");
}

/// (d) A connection that pipelines requests with large answers and never reads them does not
/// hold the worker: with one worker, other clients are still served promptly.
#[test]
fn a_client_that_never_reads_holds_no_worker() {
    let d = Daemon::start_with_server("workers = 1\nqueue = 4\nread_timeout_s = 30", "");
    let addr: SocketAddr = d.addr().parse().unwrap();
    let stuck: Vec<TcpStream> = (0..3)
        .map(|_| {
            let s = connect(addr);
            let mut w = s.try_clone().unwrap();
            thread::spawn(move || {
                let _ = w.write_all(format!("GET {SP_PATH}?wsdl HTTP/1.1\r\nHost: vnetd\r\n\r\n").repeat(2000).as_bytes());
            });
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(1000));
    for i in 0..10 {
        let t = Instant::now();
        let r = get_time(&d.addr());
        let took = t.elapsed();
        assert!(get_time_ok(&r), "GetTime {i}: {r:?}");
        assert!(took < Duration::from_millis(500), "GetTime {i} waited {took:?} beside clients that do not read");
    }
    for s in &stuck {
        let _ = s.shutdown(Shutdown::Both);
    }
}

/// (e) With the worker busy and the queue full, a request is answered 503 with Retry-After at
/// once (the event loop never waits for a worker), while point reads, which run on the event
/// loop, are still served. The worker is held by a UserAuth of a
/// roaming account whose RoamAuthV2 goes to a centre that accepts and never answers.
#[test]
fn a_full_worker_queue_answers_503_with_retry_after() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let centre = format!("http://{}/centre", silent.local_addr().unwrap());
    let d = Daemon::start_with_server("workers = 1\nqueue = 1", "[sync]\ncentre_timeout_ms = 3000\n");
    d.add_standard_peers(false);
    d.ok(&["peer", "add", "--id", CENTRE_ID, "--kind", "centre", "--key", CENTRE_KEY, "--url", &centre]);
    thread::sleep(Duration::from_millis(1100)); // the peer cache
    let addr = d.addr();
    let roam = || {
        let addr = addr.clone();
        thread::spawn(move || {
            let pw = enc(SP_KEY, "Roam-Secret-77");
            let f = [("SPID", SP_ID), ("ServiceID", ""), ("AccountType", "01"), ("Account", "roamer@gd"), ("Password", pw.as_str()), ("UserIP", "")];
            let t = Instant::now();
            let r = try_call(&addr, "ProvinceForSP", "UserAuth", SP_KEY, &f, &ts(0));
            (r.map(|r| r.result()).ok(), t.elapsed())
        })
    };
    let busy = roam();
    thread::sleep(Duration::from_millis(300));
    let queued = roam();
    thread::sleep(Duration::from_millis(300));
    // A WSDL needs a worker: refused at once.
    let wsdl = || try_http(&addr, "GET", &format!("{SP_PATH}?wsdl"), &[], b"", Duration::from_secs(5)).expect("an answer");
    let t = Instant::now();
    let r = wsdl();
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert!(took < Duration::from_millis(300), "503 after {took:?}");
    // A point read runs on the event loop: still served while every worker is taken.
    assert!(get_time_ok(&get_time(&d.addr())), "GetTime beside a full worker queue");
    let (a, b) = (busy.join().unwrap(), queued.join().unwrap());
    eprintln!("full queue: 503 after {took:?}; the held requests answered {a:?} and {b:?}");
    assert_eq!(a.0, Some(-22500));
    assert_eq!(b.0, Some(-22500));
    // Free again: served.
    assert_eq!(wsdl().status, 200);
    assert_eq!(metric(&d, "vnetd_http_refused_total{listener=\"soap\",status=\"503\"}"), Some(1.0));
    drop(silent);
}

/// UserAuth beyond the Argon2 pool (production cost: m = 19 MiB, t = 2; two threads, a queue of
/// eight each) is answered HTTP 503 with Retry-After at once, while the logins the pool took
/// complete with Result 0 (issue 11: before, the queue was 64 deep and logins waited ~1 s).
#[test]
fn logins_beyond_the_hashing_queue_answer_503_at_once() {
    let d = Daemon::start_with("[security]\nargon2_m_kib = 19456\nargon2_t = 2\n");
    d.add_standard_peers(false);
    add_user(&d);
    let n = 64;
    let go = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (addr, go) = (d.addr(), go.clone());
            thread::spawn(move || {
                let pw = enc(SP_KEY, "Front-Pass1");
                let f = [("SPID", SP_ID), ("ServiceID", ""), ("AccountType", "01"), ("Account", "front01"), ("Password", pw.as_str()), ("UserIP", "")];
                let body = envelope_owned("UserAuth", &signed_fields(SP_KEY, &f, &ts(0)));
                go.wait();
                let t = Instant::now();
                let r = try_http(&addr, "POST", SP_PATH, &[("Content-Type", "text/xml; charset=utf-8")], body.as_bytes(), Duration::from_secs(20))
                    .expect("an answer");
                (r, t.elapsed())
            })
        })
        .collect();
    let answers: Vec<(Http, Duration)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut refused: Vec<Duration> = Vec::new();
    let mut accepted: Vec<Duration> = Vec::new();
    for (r, took) in &answers {
        match r.status {
            200 => {
                assert_eq!(Resp::parse(&r.text()).result(), 0, "an accepted login completes: {}", r.text());
                accepted.push(*took);
            }
            503 => {
                assert_eq!(r.header("Retry-After"), Some("1"), "{:?}", r.headers);
                refused.push(*took);
            }
            s => panic!("HTTP {s}: {}", r.text()),
        }
    }
    refused.sort();
    accepted.sort();
    let median = |v: &[Duration]| v.get(v.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "{} accepted (median {:?}, max {:?}), {} refused (median {:?}, max {:?})",
        accepted.len(),
        median(&accepted),
        accepted.last(),
        refused.len(),
        median(&refused),
        refused.last()
    );
    assert!(accepted.len() >= 2 && !refused.is_empty(), "{} accepted, {} refused", accepted.len(), refused.len());
    // A burst: 64 logins sent at once, so a refusal also waits for the others on two cores
    // (this test alone: median 2–9 ms; beside the other tests of the suite up to ~70 ms). Before,
    // every login queued, up to ~1 s. The steady-state figures are the benchmark's.
    assert!(median(&refused) * 2 < median(&accepted), "a refusal does not wait for the hashes");
    // Eight hashes queued per thread: an accepted login waits for at most ~9 (a few hundred ms
    // beside the other tests; the old 64-deep queue made it seconds).
    assert!(median(&accepted) <= Duration::from_secs(2), "accepted logins answered in {:?} (median)", median(&accepted));
    assert!(metric(&d, "vnetd_hash_busy_total").unwrap_or(0.0) >= refused.len() as f64);
}
