//! vnetd patch (d): the request line, each header line, the number of headers and the total
//! header size are bounded; beyond them the server answers 414/431 and closes, quickly.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::Limits;

#[allow(dead_code)]
mod vnetd_common;
use vnetd_common::*;

/// Long read timeout: a refusal must come from the limits, not from a timeout.
fn limits() -> Limits {
    Limits {
        read_timeout: Duration::from_secs(20),
        ..Limits::default()
    }
}

/// Sends `request` (from another thread, as the server may stop reading it) and returns the
/// answer and how long until the server closed the connection.
fn send(srv: &TestServer, request: Vec<u8>) -> (String, Duration) {
    let mut s = connect(srv.addr);
    let mut w = s.try_clone().unwrap();
    let sent = Instant::now();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&request);
    });
    let (data, closed, at) = read_until_closed(&mut s);
    writer.join().unwrap();
    assert!(closed, "connection not closed");
    (String::from_utf8_lossy(&data).into_owned(), at - sent)
}

fn assert_refused(answer: &str, elapsed: Duration, statuses: &[&str]) {
    assert!(
        statuses
            .iter()
            .any(|st| answer.starts_with(&format!("HTTP/1.1 {}", st))),
        "answer: {:?}",
        &answer[..answer.len().min(200)]
    );
    assert_between("refusal", elapsed, 0.0, 2.0);
}

#[test]
fn one_mib_header_line_is_refused() {
    let srv = TestServer::start(limits());
    let mut rq = b"GET /big HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    rq.extend(std::iter::repeat_n(b'a', 1 << 20));
    rq.extend_from_slice(b"\r\n\r\n");
    let (answer, elapsed) = send(&srv, rq);
    assert_refused(&answer, elapsed, &["431"]);
    assert_served(srv.addr, "/after");
    assert_eq!(srv.seen(), vec!["/after"]);
}

#[test]
fn ten_thousand_headers_are_refused() {
    let srv = TestServer::start(limits());
    let mut rq = b"GET /many HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..10_000 {
        rq.extend_from_slice(format!("X-H{}: v\r\n", i).as_bytes());
    }
    rq.extend_from_slice(b"\r\n");
    let (answer, elapsed) = send(&srv, rq);
    assert_refused(&answer, elapsed, &["431"]);
    assert_served(srv.addr, "/after");
    assert_eq!(srv.seen(), vec!["/after"]);
}

#[test]
fn one_mib_request_line_is_refused() {
    let srv = TestServer::start(limits());
    let mut rq = b"GET /".to_vec();
    rq.extend(std::iter::repeat_n(b'u', 1 << 20));
    rq.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (answer, elapsed) = send(&srv, rq);
    assert_refused(&answer, elapsed, &["414", "431", "400"]);
    assert_served(srv.addr, "/after");
    assert_eq!(srv.seen(), vec!["/after"]);
}

#[test]
fn header_section_over_total_size_is_refused() {
    // 90 headers of 1000 bytes: each line and the count are fine, the total (90 KB) is not
    let srv = TestServer::start(limits());
    let mut rq = b"GET /total HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..90 {
        rq.extend_from_slice(format!("X-H{:02}: {}\r\n", i, "v".repeat(993)).as_bytes());
    }
    rq.extend_from_slice(b"\r\n");
    let (answer, elapsed) = send(&srv, rq);
    assert_refused(&answer, elapsed, &["431"]);
    assert_served(srv.addr, "/after");
}

#[test]
fn headers_within_the_limits_are_accepted() {
    // 98 headers + Host + Connection, ~60 KB in total, longest line 8 KiB
    let srv = TestServer::start(limits());
    let mut rq = b"GET /fine HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_vec();
    rq.extend_from_slice(format!("X-Long: {}\r\n", "l".repeat(8192 - 8)).as_bytes());
    for i in 0..97 {
        rq.extend_from_slice(format!("X-H{:02}: {}\r\n", i, "v".repeat(520)).as_bytes());
    }
    rq.extend_from_slice(b"\r\n");
    let (answer, _) = send(&srv, rq);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok:/fine"),
        "answer: {:?}",
        answer
    );
}
