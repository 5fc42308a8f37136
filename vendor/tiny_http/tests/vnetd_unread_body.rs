//! vnetd patch (a): a request dropped with its body unread is drained with a fixed buffer and
//! only up to `Limits::max_drain_bytes`; past that the connection is closed, never reused.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod vnetd_common;
use vnetd_common::*;

/// Before the patch, dropping this request allocated `vec![0; 10^12]` and aborted the process.
#[test]
fn huge_content_length_dropped_unread_does_not_abort() {
    let srv = TestServer::start(test_limits());
    let mut s = connect(srv.addr);
    write!(
        s,
        "POST /drop HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000000\r\n\r\nabc"
    )
    .unwrap();
    let sent = Instant::now();

    let (data, closed, at) = read_until_closed(&mut s);
    let answer = String::from_utf8_lossy(&data);
    assert!(answer.starts_with("HTTP/1.1 500"), "answer: {:?}", answer);
    // the rest of the body never comes: the drain gives up at the body deadline and closes
    assert!(closed, "connection not closed");
    assert_between("close after unread huge body", at - sent, 0.0, 3.0);

    // the process is alive and still serves
    assert_served(srv.addr, "/after");
    assert_eq!(srv.seen(), vec!["/drop", "/after"]);
}

/// A body longer than `max_drain_bytes` is not drained to its end: the connection is closed at
/// once, so a request hidden in the unread part of the body is never parsed (no smuggling).
#[test]
fn unread_body_over_drain_bound_closes_connection() {
    let srv = TestServer::start(test_limits());
    let mut body = vec![b'x'; 70_000];
    body.extend_from_slice(b"\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n");
    body.resize(200_000, b'x');

    let mut s = connect(srv.addr);
    let mut w = s.try_clone().unwrap();
    let head = format!(
        "POST /drop HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let sent = Instant::now();
    let writer = thread::spawn(move || {
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(&body); // may fail once the server closes
    });

    let (data, closed, at) = read_until_closed(&mut s);
    writer.join().unwrap();
    let answer = String::from_utf8_lossy(&data);
    assert!(answer.starts_with("HTTP/1.1 500"), "answer: {:?}", answer);
    assert_eq!(
        answer.matches("HTTP/1.1").count(),
        1,
        "answer: {:?}",
        answer
    );
    assert!(closed, "connection not closed");
    // closed because of the bound, without waiting for the 1 s body deadline
    assert_between("close after over-long unread body", at - sent, 0.0, 0.9);

    thread::sleep(Duration::from_millis(100));
    assert_served(srv.addr, "/after");
    assert_eq!(srv.seen(), vec!["/drop", "/after"]);
}

/// A short unread body (over the 1 KiB that tiny_http buffers itself) is drained and the
/// keep-alive connection serves the next request.
#[test]
fn short_unread_body_keeps_connection_alive() {
    let srv = TestServer::start(test_limits());
    let mut s = connect(srv.addr);
    let body = vec![b'y'; 5000];
    write!(
        s,
        "POST /drop HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    write!(
        s,
        "GET /second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();

    let (data, closed, _) = read_until_closed(&mut s);
    let answer = String::from_utf8_lossy(&data);
    assert!(closed);
    assert!(answer.starts_with("HTTP/1.1 500"), "answer: {:?}", answer);
    assert!(answer.contains("HTTP/1.1 200"), "answer: {:?}", answer);
    assert!(answer.ends_with("ok:/second"), "answer: {:?}", answer);
    assert_eq!(srv.seen(), vec!["/drop", "/second"]);
}

/// Same for chunked bodies: a short one is drained and the connection reused...
#[test]
fn short_unread_chunked_body_keeps_connection_alive() {
    let srv = TestServer::start(test_limits());
    let mut s = connect(srv.addr);
    write!(
        s,
        "POST /drop HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n\
         GET /second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();

    let (data, closed, _) = read_until_closed(&mut s);
    let answer = String::from_utf8_lossy(&data);
    assert!(closed);
    assert!(answer.starts_with("HTTP/1.1 500"), "answer: {:?}", answer);
    assert!(answer.ends_with("ok:/second"), "answer: {:?}", answer);
    assert_eq!(srv.seen(), vec!["/drop", "/second"]);
}

/// ...and an endless chunked body is drained only up to the bound, then the connection is
/// closed without parsing a request hidden in it.
#[test]
fn long_unread_chunked_body_closes_connection() {
    let srv = TestServer::start(test_limits());
    let mut chunked = Vec::new();
    for _ in 0..20 {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[b'z'; 0x1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"20\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");

    let mut s = connect(srv.addr);
    let mut w = s.try_clone().unwrap();
    let sent = Instant::now();
    let writer = thread::spawn(move || {
        let _ = w.write_all(
            b"POST /drop HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let _ = w.write_all(&chunked);
    });

    let (data, closed, at) = read_until_closed(&mut s);
    writer.join().unwrap();
    let answer = String::from_utf8_lossy(&data);
    assert!(answer.starts_with("HTTP/1.1 500"), "answer: {:?}", answer);
    assert_eq!(
        answer.matches("HTTP/1.1").count(),
        1,
        "answer: {:?}",
        answer
    );
    assert!(closed, "connection not closed");
    assert_between("close after long unread chunked body", at - sent, 0.0, 0.9);

    thread::sleep(Duration::from_millis(100));
    assert_served(srv.addr, "/after");
    assert_eq!(srv.seen(), vec!["/drop", "/after"]);
}

/// An endless chunk-size line is refused (bounded buffer) instead of growing memory.
#[test]
fn endless_chunk_size_line_is_refused() {
    let srv = TestServer::start(test_limits());
    let mut s = connect(srv.addr);
    let mut w = s.try_clone().unwrap();
    let sent = Instant::now();
    let writer = thread::spawn(move || {
        let _ = w.write_all(
            b"POST /read HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let _ = w.write_all(&vec![b'1'; 4 << 20]); // 4 MiB chunk-size line
    });

    let (data, closed, at) = read_until_closed(&mut s);
    writer.join().unwrap();
    let answer = String::from_utf8_lossy(&data);
    assert!(answer.ends_with("read-error"), "answer: {:?}", answer);
    assert!(closed, "connection not closed");
    assert_between("close after endless chunk-size line", at - sent, 0.0, 0.9);

    assert_served(srv.addr, "/after");
}
