//! vnetd patch (e): at most `Limits::max_connections` connections are served at once; one
//! more gets a 503 from the accept thread and is closed. The cap also bounds the threads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::Limits;

#[allow(dead_code)]
mod vnetd_common;
use vnetd_common::*;

// the tests count the process's threads: run them one at a time
static SERIAL: Mutex<()> = Mutex::new(());

fn limits() -> Limits {
    Limits {
        max_connections: 4,
        read_timeout: Duration::from_secs(20), // idle connections must stay open
        ..Limits::default()
    }
}

fn wait_for_open_connections(srv: &TestServer, n: usize) {
    let start = Instant::now();
    while srv.server.open_connections() != n {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "open_connections() is {}, expected {}",
            srv.server.open_connections(),
            n
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn process_threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}

#[test]
fn connection_over_the_cap_gets_503() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let srv = TestServer::start(limits());
    assert_eq!(srv.server.open_connections(), 0);

    let idle: Vec<TcpStream> = (0..4).map(|_| connect(srv.addr)).collect();
    wait_for_open_connections(&srv, 4);
    assert_eq!(srv.server.num_connections(), 4);

    let mut fifth = connect(srv.addr);
    let sent = Instant::now();
    write!(fifth, "GET /fifth HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    fifth.read_to_string(&mut answer).unwrap();
    assert_eq!(
        answer,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_between("503 answer", sent.elapsed(), 0.0, 1.0);
    assert_eq!(srv.server.open_connections(), 4);

    drop(idle);
    wait_for_open_connections(&srv, 0);
    assert_served(srv.addr, "/after");
    assert_eq!(srv.seen(), vec!["/after"]);
}

#[test]
fn cap_bounds_the_connection_threads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let srv = TestServer::start(limits());
    thread::sleep(Duration::from_millis(100));
    let before = process_threads();

    // 50 connections, all kept open: 4 are served, 46 refused
    let mut conns = Vec::new();
    let mut refused = 0;
    for _ in 0..50 {
        let mut c = connect(srv.addr);
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = c.read(&mut buf) {
            if buf[..n].starts_with(b"HTTP/1.1 503") {
                refused += 1;
            }
        }
        conns.push(c);
    }
    assert_eq!(refused, 46);
    assert_eq!(srv.server.open_connections(), 4);
    let during = process_threads();
    // one thread per served connection at most (the pool keeps up to 4 idle threads anyway)
    assert!(
        during <= before + 4,
        "threads: {} before, {} with 50 connections",
        before,
        during
    );

    drop(conns);
    wait_for_open_connections(&srv, 0);
    assert_served(srv.addr, "/after");
}
