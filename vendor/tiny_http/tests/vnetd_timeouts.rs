//! vnetd patch (c): reads are bounded by a per-phase deadline (`Limits::read_timeout`, 1 s
//! here) that a client cannot extend by trickling bytes; writes by `Limits::write_timeout`.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Limits, Response, Server};

#[allow(dead_code)]
mod vnetd_common;
use vnetd_common::*;

/// Writes `bytes` one at a time, every 300 ms, until the server closes the connection.
fn trickle(mut w: std::net::TcpStream, bytes: Vec<u8>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for b in bytes {
            if w.write_all(&[b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(300));
        }
    })
}

#[test]
fn idle_connection_closed_after_read_timeout() {
    let srv = TestServer::start(test_limits());
    let mut idle = connect(srv.addr);
    let opened = Instant::now();

    // a normal client is served while the idle connection is open
    thread::sleep(Duration::from_millis(200));
    assert_served(srv.addr, "/meanwhile");

    let (data, closed, at) = read_until_closed(&mut idle);
    assert!(closed, "idle connection not closed");
    assert!(data.is_empty(), "unexpected answer: {:?}", data);
    assert_between("idle connection closed", at - opened, 0.9, 3.0);
}

#[test]
fn idle_keep_alive_connection_closed_after_read_timeout() {
    let srv = TestServer::start(test_limits());
    let mut s = connect(srv.addr);
    write!(s, "GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).ends_with("ok:/first") {
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        assert!(n > 0, "closed before the first answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();

    let (data, closed, at) = read_until_closed(&mut s);
    assert!(closed, "idle keep-alive connection not closed");
    assert!(data.is_empty(), "unexpected answer: {:?}", data);
    assert_between("idle keep-alive connection closed", at - answered, 0.9, 3.0);
}

/// A handler slower than `read_timeout`: the answer is still delivered. (vnetd: the idle
/// deadline of the keep-alive connection now starts once the answer is written, patch (f);
/// it used to start when the request was handed out.)
#[test]
fn slow_handler_answer_is_delivered() {
    let srv = TestServer::start(test_limits());
    let mut s = connect(srv.addr);
    write!(s, "GET /sleep HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (data, closed, _) = read_until_closed(&mut s);
    let answer = String::from_utf8_lossy(&data);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok:/sleep"),
        "answer: {:?}",
        answer
    );
    assert!(closed);
}

#[test]
fn trickled_request_head_closed_after_read_timeout() {
    let srv = TestServer::start(test_limits());
    let mut s = connect(srv.addr);
    let head = b"GET /slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let first_byte = Instant::now();
    let writer = trickle(s.try_clone().unwrap(), head.to_vec());

    thread::sleep(Duration::from_millis(200));
    assert_served(srv.addr, "/meanwhile");

    let (data, closed, at) = read_until_closed(&mut s);
    assert!(closed, "trickling connection not closed");
    let answer = String::from_utf8_lossy(&data);
    assert!(
        data.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "answer: {:?}",
        answer
    );
    assert_between("trickled head closed", at - first_byte, 0.9, 3.0);
    writer.join().unwrap();
    assert_eq!(srv.seen(), vec!["/meanwhile"]);
}

#[test]
fn trickled_short_body_closed_after_read_timeout() {
    // a body of at most 1 KiB is read by tiny_http itself before the request is handed out
    let srv = TestServer::start(test_limits());
    let mut s = connect(srv.addr);
    s.write_all(b"POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
        .unwrap();
    let body_start = Instant::now();
    let writer = trickle(s.try_clone().unwrap(), vec![b'b'; 100]);

    let (data, closed, at) = read_until_closed(&mut s);
    assert!(closed, "trickling connection not closed");
    let answer = String::from_utf8_lossy(&data);
    assert!(
        data.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "answer: {:?}",
        answer
    );
    assert_between("trickled short body closed", at - body_start, 0.9, 3.0);
    writer.join().unwrap();
    assert!(srv.seen().is_empty());
}

#[test]
fn trickled_long_body_read_by_handler_times_out() {
    let srv = TestServer::start(test_limits());
    let mut s = connect(srv.addr);
    s.write_all(b"POST /read HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let body_start = Instant::now();
    let writer = trickle(s.try_clone().unwrap(), vec![b'b'; 100]);

    let (data, closed, at) = read_until_closed(&mut s);
    let answer = String::from_utf8_lossy(&data);
    // the handler's read fails at the body deadline, then the connection is closed
    assert!(answer.ends_with("read-error"), "answer: {:?}", answer);
    assert!(closed, "connection not closed");
    assert_between("trickled long body closed", at - body_start, 0.9, 3.0);
    writer.join().unwrap();
}

#[test]
fn response_to_a_client_that_does_not_read_times_out() {
    let limits = Limits {
        write_timeout: Duration::from_millis(500),
        ..test_limits()
    };
    let server = Server::http_with_limits("127.0.0.1:0", limits).unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let rq = server.recv().unwrap();
        let started = Instant::now();
        // far more than the socket buffers hold
        let result = rq.respond(Response::from_data(vec![b'r'; 64 << 20]));
        tx.send((result.is_err(), started.elapsed())).unwrap();
    });

    let mut s = connect(addr);
    write!(s, "GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    // never read
    let (failed, elapsed) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("respond() did not return");
    assert!(failed, "respond() to a non-reading client succeeded");
    assert_between("blocked response write", elapsed, 0.4, 5.0);
}

/// An upgraded connection is a raw stream: each read gets its own `read_timeout` (idle
/// timeout) instead of one deadline for the whole stream.
#[test]
fn upgraded_stream_gets_a_per_read_timeout() {
    let server = Server::http_with_limits("127.0.0.1:0", test_limits()).unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    thread::spawn(move || {
        let rq = server.recv().unwrap();
        let mut stream = rq.upgrade("echo", Response::empty(101));
        let mut buf = [0u8; 64];
        // echo until EOF or the idle timeout
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0
                || stream
                    .write_all(&buf[..n])
                    .and_then(|_| stream.flush())
                    .is_err()
            {
                break;
            }
        }
    });

    let mut s = connect(addr);
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed during the 101 answer");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));

    // 2.4 s of traffic, more than read_timeout in total, but never 1 s idle
    for i in 0..6u8 {
        thread::sleep(Duration::from_millis(400));
        s.write_all(&[b'0' + i]).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "upgraded stream closed after {} echoes",
            i
        );
        assert_eq!(b[0], b'0' + i);
    }
    // then idle: closed after read_timeout
    let idle_since = Instant::now();
    let (data, closed, at) = read_until_closed(&mut s);
    assert!(closed && data.is_empty());
    assert_between("idle upgraded stream closed", at - idle_since, 0.9, 3.0);
}
