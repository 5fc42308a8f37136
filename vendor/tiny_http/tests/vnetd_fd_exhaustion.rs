//! vnetd patch (b): running out of file descriptors (accept() failing with EMFILE) must not
//! kill the accept thread: once fds are available again, new requests are served.
//!
//! This changes the process's RLIMIT_NOFILE, so it is its own test binary with a single test.

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::Limits;

#[allow(dead_code)]
mod vnetd_common;
use vnetd_common::*;

/// Counts the accept-path errors that tiny_http logs.
struct AcceptErrorCounter;
static ACCEPT_ERRORS: AtomicUsize = AtomicUsize::new(0);
static LOGGER: AcceptErrorCounter = AcceptErrorCounter;

impl log::Log for AcceptErrorCounter {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let msg = record.args().to_string();
        if record.level() == log::Level::Error
            && (msg.contains("accepting new client") || msg.contains("set up new client"))
        {
            ACCEPT_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn flush(&self) {}
}

fn nofile_limit() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_nofile_limit(lim: &libc::rlimit) {
    // SAFETY: setrlimit only reads the struct we pass
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) }, 0);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn accept_survives_fd_exhaustion() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Error);

    let limits = Limits {
        max_connections: 10_000, // the fd limit, not the cap, must be what bites
        read_timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let srv = TestServer::start(limits);
    thread::sleep(Duration::from_millis(100));
    assert_served(srv.addr, "/before");

    // leave only a few free fds
    let original = nofile_limit();
    let lowered = libc::rlimit {
        rlim_cur: (open_fds() + 12) as libc::rlim_t,
        rlim_max: original.rlim_max,
    };
    set_nofile_limit(&lowered);

    // hold connections until this process (server included) is out of fds
    let mut held: Vec<TcpStream> = Vec::new();
    let mut exhausted = false;
    for _ in 0..100 {
        match TcpStream::connect(srv.addr) {
            Ok(s) => held.push(s),
            Err(e) => {
                // (ECONNREFUSED here means the listener is gone: the accept thread died)
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "connect: {}", e);
                exhausted = true;
                break;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(exhausted, "fds were not exhausted");

    // the accept thread keeps failing (and logging) while fds are exhausted
    let start = Instant::now();
    while ACCEPT_ERRORS.load(Ordering::Relaxed) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no accept error was logged"
        );
        thread::sleep(Duration::from_millis(20));
    }

    // release the fds: a new request is served (the fd limit stays lowered)
    drop(held);
    let start = Instant::now();
    while srv.server.open_connections() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "connections not closed"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // let the accept thread also dispose of the connections still in its backlog
    thread::sleep(Duration::from_millis(300));
    assert_served(srv.addr, "/after");

    set_nofile_limit(&original);
}
