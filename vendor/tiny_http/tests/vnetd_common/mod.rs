//! vnetd: helpers shared by the vnetd regression tests (raw `TcpStream` clients against an
//! in-process server on 127.0.0.1).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tiny_http::{Limits, Request, Response, Server};

/// Limits used by the tests: short timeouts so that timeouts can be observed quickly.
pub fn test_limits() -> Limits {
    Limits {
        read_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

/// A server whose requests are each handled in their own thread:
/// - `/drop...` is dropped without reading its body (tiny_http answers 500),
/// - `/read...` has its body read to the end, then is answered `read:<len>` or `read-error`,
/// - `/sleep...` is answered like the default after 1.5 s,
/// - anything else is answered `ok:<url>`.
///
/// Every URL seen is recorded in `seen`.
pub struct TestServer {
    pub server: Arc<Server>,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(limits: Limits) -> TestServer {
        let server = Arc::new(Server::http_with_limits("127.0.0.1:0", limits).unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, seen, stop) = (server.clone(), seen.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match server.recv_timeout(Duration::from_millis(50)) {
                        Ok(Some(rq)) => {
                            seen.lock().unwrap().push(rq.url().to_string());
                            thread::spawn(move || handle(rq));
                        }
                        Ok(None) => {}
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        TestServer {
            server,
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn handle(mut rq: Request) {
    if rq.url().starts_with("/drop") {
        drop(rq);
    } else if rq.url().starts_with("/read") {
        let mut body = Vec::new();
        let answer = match rq.as_reader().read_to_end(&mut body) {
            Ok(n) => format!("read:{}", n),
            Err(_) => "read-error".to_string(),
        };
        let _ = rq.respond(Response::from_string(answer));
    } else {
        if rq.url().starts_with("/sleep") {
            thread::sleep(Duration::from_millis(1500));
        }
        let answer = format!("ok:{}", rq.url());
        let _ = rq.respond(Response::from_string(answer));
    }
}

/// Connects with 5 s socket timeouts so that no test can hang.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `GET path` with `Connection: close` and returns the whole answer.
pub fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = connect(addr);
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        path
    )
    .unwrap();
    let (data, closed, _) = read_until_closed(&mut s);
    assert!(
        closed,
        "server did not close after a Connection: close request"
    );
    String::from_utf8_lossy(&data).into_owned()
}

/// Asserts that `GET path` is answered `200` with body `ok:<path>`.
pub fn assert_served(addr: SocketAddr, path: &str) {
    let answer = get(addr, path);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with(&format!("ok:{}", path)),
        "unexpected answer to GET {}: {:?}",
        path,
        answer
    );
}

/// Reads until the server closes the connection (EOF or reset) or the socket's own read
/// timeout expires. Returns what was read, whether the connection was closed, and when.
pub fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, bool, Instant) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (data, true, Instant::now()),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return (data, false, Instant::now())
            }
            // reset by the server: closed too
            Err(_) => return (data, true, Instant::now()),
        }
    }
}

/// Asserts that `elapsed` lies within `[min, max]` seconds.
pub fn assert_between(what: &str, elapsed: Duration, min: f64, max: f64) {
    let secs = elapsed.as_secs_f64();
    assert!(
        secs >= min && secs <= max,
        "{}: took {:.3} s, expected between {} and {} s",
        what,
        secs,
        min,
        max
    );
}
