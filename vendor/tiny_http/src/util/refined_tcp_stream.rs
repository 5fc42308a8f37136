use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;

// vnetd: the TLS `Stream` wrapper (Http/Https) is gone with the ssl features; the halves wrap
// the plain `Connection` directly.

/// vnetd: state of one accepted connection, shared by its two halves and its
/// `ClientConnection`.
///
/// - Reads are bounded by a deadline per phase (keep-alive idle wait, request head, request
///   body), not only per `read()` call, so a client trickling bytes cannot extend it.
/// - `must_close` marks a connection that must not be reused (unread request body).
/// - Once a connection is upgraded (`Connection: upgrade`) it is a raw stream without phases:
///   each read then gets its own `read_timeout` (an idle timeout).
/// - It counts as one of the server's open connections until the last half is dropped.
pub(crate) struct ConnState {
    read_timeout: Duration,
    // deadline of the current phase; `None` = start it at the next socket read
    deadline: Mutex<Option<Instant>>,
    must_close: AtomicBool,
    raw_stream: AtomicBool,
    open_connections: Arc<AtomicUsize>,
}

impl ConnState {
    pub(crate) fn new(read_timeout: Duration, open_connections: Arc<AtomicUsize>) -> Arc<Self> {
        open_connections.fetch_add(1, Ordering::AcqRel);
        Arc::new(ConnState {
            // (clamped so that `Instant + read_timeout` cannot overflow)
            read_timeout: read_timeout.min(Duration::from_secs(365 * 24 * 3600)),
            deadline: Mutex::new(None),
            must_close: AtomicBool::new(false),
            raw_stream: AtomicBool::new(false),
            open_connections,
        })
    }

    /// Starts a new phase: the next socket read starts a fresh `read_timeout` deadline.
    pub(crate) fn restart_deadline(&self) {
        *self.deadline.lock().unwrap() = None;
    }

    /// Time left before the current phase's deadline, or a `TimedOut` error.
    fn time_left(&self) -> IoResult<Duration> {
        if self.raw_stream.load(Ordering::Acquire) {
            return Ok(self.read_timeout);
        }
        let now = Instant::now();
        let mut deadline = self.deadline.lock().unwrap();
        let deadline = *deadline.get_or_insert(now + self.read_timeout);
        match deadline.checked_duration_since(now) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(IoError::new(ErrorKind::TimedOut, "read deadline exceeded")),
        }
    }

    pub(crate) fn set_must_close(&self) {
        self.must_close.store(true, Ordering::Release);
    }

    pub(crate) fn must_close(&self) -> bool {
        self.must_close.load(Ordering::Acquire)
    }

    pub(crate) fn set_raw_stream(&self) {
        self.raw_stream.store(true, Ordering::Release);
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        self.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct RefinedTcpStream {
    stream: Connection,
    close_read: bool,
    close_write: bool,
    // vnetd: declared after `stream` so the socket is closed before the connection is uncounted
    state: Arc<ConnState>,
}

impl RefinedTcpStream {
    /// vnetd: returns an error instead of panicking when the socket cannot be duplicated
    /// (EMFILE/ENFILE), and applies `write_timeout` to the socket.
    pub(crate) fn new(
        stream: Connection,
        state: Arc<ConnState>,
        write_timeout: Duration,
    ) -> IoResult<(RefinedTcpStream, RefinedTcpStream)> {
        stream.set_write_timeout(Some(write_timeout))?;
        let read = stream.try_clone()?;

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            state: state.clone(),
        };

        let write = RefinedTcpStream {
            stream,
            close_read: false,
            close_write: true,
            state,
        };

        Ok((read, write))
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        false // vnetd: TLS support removed
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        // vnetd: each socket read may only wait for what is left of the phase's deadline;
        // an expired SO_RCVTIMEO (EAGAIN) is reported as `TimedOut`.
        let left = self.state.time_left()?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock => IoError::new(ErrorKind::TimedOut, "read timed out"),
            _ => e,
        })
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        // vnetd: a write that hit the write timeout leaves a response cut short: shut the
        // socket down so the connection is not reused (and its reader stops).
        self.stream.write(buf).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                self.stream.shutdown(Shutdown::Both).ok();
                IoError::new(ErrorKind::TimedOut, "write timed out")
            }
            _ => e,
        })
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
