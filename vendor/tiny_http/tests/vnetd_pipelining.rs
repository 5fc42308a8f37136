//! vnetd: at most one request per connection is handed to the application at a time. A client
//! pipelining many requests and never reading the answers holds one worker (until the write
//! timeout), not all of them.

use std::io::Write;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Limits, Response, Server};

#[allow(dead_code)]
mod vnetd_common;
use vnetd_common::*;

#[test]
fn pipelined_requests_with_unread_responses_do_not_hold_every_worker() {
    let limits = Limits {
        write_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let server = Arc::new(Server::http_with_limits("127.0.0.1:0", limits).unwrap());
    let addr = server.server_addr().to_ip().unwrap();

    // a fixed pool of 4 application workers; answers far larger than the socket buffers
    for _ in 0..4 {
        let server = server.clone();
        thread::spawn(move || loop {
            let rq = match server.recv() {
                Ok(rq) => rq,
                Err(_) => return,
            };
            let body = format!("ok:{}", rq.url());
            let answer = if rq.url().starts_with("/big") {
                Response::from_data(vec![b'x'; 256 << 10])
            } else {
                Response::from_data(body.into_bytes())
            };
            let _ = rq.respond(answer);
        });
    }

    // 1000 pipelined requests on one connection, no answer ever read
    let attacker = connect(addr);
    let writer = {
        let mut w = attacker.try_clone().unwrap();
        thread::spawn(move || {
            let mut all = Vec::new();
            for i in 0..1000 {
                write!(all, "GET /big/{} HTTP/1.1\r\nHost: localhost\r\n\r\n", i).unwrap();
            }
            // may stop early once the server stops reading and the buffers are full
            let _ = w.write_all(&all);
        })
    };
    // let the server take (and, before the fix, queue) what it will
    thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    write!(
        s,
        "GET /other HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (data, closed, at) = read_until_closed(&mut s);
    let answer = String::from_utf8_lossy(&data);
    assert!(
        closed && answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok:/other"),
        "other client not served within 1 s: {:?}",
        answer
    );
    assert!(at - started < Duration::from_secs(1));

    let _ = attacker.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
}
