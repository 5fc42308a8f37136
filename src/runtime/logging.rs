//! The daemon's logger: one `log::Log` implementation, installed once, that can be re-routed.
//!
//! * From process start until the configuration has been read, records go to stderr as
//!   `<RFC 3339 time> <LEVEL> <target>: <message>` ([`init_stderr`]); the time carries the node's
//!   UTC offset once [`set_utc_offset`] was called (`2026-12-07T21:30:14.354+08:00`), UTC before.
//! * Once the config is read, [`switch`] re-routes the same logger to syslog (local Unix socket,
//!   RFC 3164 framing, process name `vnetd`, facility `daemon`, header time in the node's offset) or keeps
//!   stderr. If syslog cannot be opened, `switch` returns `Err` and nothing changes, so the caller
//!   can stay on stderr.
//! * Audit events (logins, lockouts, key changes, status changes, password resets, admin
//!   commands) are their own stream: records with target [`AUDIT_TARGET`] go to a second syslog
//!   connection with facility `authpriv` (or, on stderr, appear as `... INFO audit: ...`).
//!   Ordinary records never go to the audit stream. Audit records are emitted whatever the
//!   configured level, unless the level is `off`. Use [`audit`] to write them.
//!
//! Syslog delivery: the `syslog` crate keeps one connected socket and loses every later message
//! once the syslog daemon recreates its socket (rsyslog/journald restart). Here, any send error
//! causes a reconnect and one retry of that message; if that fails too, the message is dropped
//! (counted in [`dropped_messages`]) and the next message tries to reconnect again. Sends have a
//! short timeout; after a timeout (syslog is alive but not reading) the stream drops messages for
//! a short back-off instead of making every caller wait. After a drop, the next delivered message
//! is followed by a warning saying how many were lost.
//!
//! Every message is kept on one line: control characters (newline, carriage return, ...) are
//! escaped as `\n`, `\r`, `\u{..}`, so text from peers cannot forge extra log lines.
//!
//! **Secrets**: this module cannot know what is secret. Callers must never pass passwords,
//! password hashes, keys, IVs, Authenticators, tickets or session tokens in a log message or
//! in an audit field; log an identifier (peer id, account, key version) instead.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend, Severity};

/// The `log` target that marks a record as an audit event.
pub const AUDIT_TARGET: &str = "audit";

/// The process name written into every syslog line.
pub const PROCESS_NAME: &str = "vnetd";

/// Local syslog sockets tried by [`switch`], in order (the same list as the `syslog` crate).
pub const DEFAULT_SYSLOG_PATHS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

/// Longest message body sent to syslog (rsyslog's default maximum message size is 8 KiB).
const MAX_SYSLOG_MESSAGE_BYTES: usize = 8 * 1024;
const TRUNCATED_MARKER: &str = "...[truncated]";
/// How long one send to syslog may block when the daemon's queue is full.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);
/// After a send timed out, drop messages for this long instead of waiting again.
const STALL_BACKOFF: Duration = Duration::from_secs(1);

/// Where ordinary (non-audit) log records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Syslog,
}

static LOGGER: Router = Router::new();

/// Installs the global logger writing to stderr at `level`.
///
/// Call once at process start. A second call does not panic: it only re-routes to stderr with
/// the new level (the same as `switch(LogTarget::Stderr, level)`). If some other logger is
/// already installed, a one-line note is written to stderr and nothing else happens.
pub fn init_stderr(level: LevelFilter) {
    match install() {
        Ok(()) => {
            LOGGER.use_stderr(level);
            log::set_max_level(max_level_for(level));
        }
        Err(reason) => {
            let _ = writeln!(io::stderr(), "{PROCESS_NAME}: {reason}");
        }
    }
}

/// Re-routes the installed logger (installing it if [`init_stderr`] was not called).
///
/// `LogTarget::Syslog` uses the first existing path of [`DEFAULT_SYSLOG_PATHS`]. On `Err`
/// (no syslog socket, connection refused, permission denied, ...) nothing has changed.
pub fn switch(target: LogTarget, level: LevelFilter) -> Result<(), String> {
    match target {
        LogTarget::Stderr => {
            install()?;
            LOGGER.use_stderr(level);
            log::set_max_level(max_level_for(level));
            Ok(())
        }
        LogTarget::Syslog => {
            let path = DEFAULT_SYSLOG_PATHS
                .iter()
                .map(Path::new)
                .find(|p| p.exists())
                .ok_or_else(|| {
                    format!(
                        "no local syslog socket found (tried {})",
                        DEFAULT_SYSLOG_PATHS.join(", ")
                    )
                })?;
            switch_to_syslog_at(path, level)
        }
    }
}

/// Routes the logger to the syslog socket at `path` (both the `daemon` and the `authpriv`
/// stream). Both connections are opened before anything changes; on `Err` nothing has changed.
pub fn switch_to_syslog_at(path: &Path, level: LevelFilter) -> Result<(), String> {
    let route = Route::open_syslog(path, SEND_TIMEOUT, STALL_BACKOFF)?;
    install()?;
    LOGGER.set_route(route, level);
    log::set_max_level(max_level_for(level));
    Ok(())
}

/// Writes one audit event: `event=<event> k=v k=v`, at info level with target [`AUDIT_TARGET`].
///
/// Values (and the event) are quoted when they are empty or contain spaces, quotes, `=`,
/// backslashes or control characters; inside quotes `\` and `"` are backslash-escaped and
/// control characters are written as `\n`, `\r`, `\t`, `\u{..}`. Never pass a secret.
/// Emitted whatever the configured level, unless it is `off`.
pub fn audit(event: &str, fields: &[(&str, &str)]) {
    let line = audit_line(event, fields);
    // Straight to the logger: the level gate for audit records is the logger's own.
    log::logger().log(
        &Record::builder()
            .args(format_args!("{line}"))
            .level(Level::Info)
            .target(AUDIT_TARGET)
            .module_path_static(Some(module_path!()))
            .file_static(Some(file!()))
            .line(Some(line!()))
            .build(),
    );
}

/// Changes the level of ordinary records (SIGHUP), keeping the route (stderr or syslog).
pub fn set_level(level: LevelFilter) {
    LOGGER.level.store(level as usize, Ordering::Relaxed);
    log::set_max_level(max_level_for(level));
}

/// Now, as log lines write it (RFC 3339 with the node's UTC offset), for messages that name a time.
pub fn timestamp() -> String {
    now_rfc3339()
}

/// Messages dropped so far because syslog could not take them (for a metric).
pub fn dropped_messages() -> u64 {
    LOGGER.dropped.load(Ordering::Relaxed)
}

/// The audit line for `event` and `fields` (see [`audit`]).
pub fn audit_line(event: &str, fields: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(16 + event.len() + fields.len() * 24);
    out.push_str("event=");
    push_value(&mut out, event);
    for (key, value) in fields {
        out.push(' ');
        push_key(&mut out, key);
        out.push('=');
        push_value(&mut out, value);
    }
    out
}

fn install() -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            log::set_logger(&LOGGER)
                .map_err(|_| "cannot install the logger: another logger is already installed".to_string())
        })
        .clone()
}

/// The `log` crate's global filter: audit records are info, so let info through whenever
/// logging is on; the logger filters ordinary records against the configured level itself.
fn max_level_for(level: LevelFilter) -> LevelFilter {
    if level == LevelFilter::Off {
        LevelFilter::Off
    } else {
        level.max(LevelFilter::Info)
    }
}

fn level_from_usize(n: usize) -> LevelFilter {
    match n {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

fn severity_for(level: Level) -> Severity {
    match level {
        Level::Error => Severity::LOG_ERR,
        Level::Warn => Severity::LOG_WARNING,
        Level::Info => Severity::LOG_INFO,
        Level::Debug | Level::Trace => Severity::LOG_DEBUG,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The logger proper. The global instance is [`LOGGER`]; tests build their own.
struct Router {
    level: AtomicUsize,
    route: RwLock<Route>,
    stderr: StderrOut,
    dropped: AtomicU64,
}

enum Route {
    Stderr,
    Syslog(Box<SyslogStreams>),
}

/// Two connections to the same socket: ordinary records (`daemon`) and audit (`authpriv`).
struct SyslogStreams {
    daemon: Mutex<SyslogStream>,
    audit: Mutex<SyslogStream>,
}

enum StderrOut {
    Process,
    #[cfg(test)]
    Capture(Mutex<Vec<String>>),
}

impl Router {
    const fn new() -> Self {
        Router {
            level: AtomicUsize::new(LevelFilter::Info as usize),
            route: RwLock::new(Route::Stderr),
            stderr: StderrOut::Process,
            dropped: AtomicU64::new(0),
        }
    }

    fn level(&self) -> LevelFilter {
        level_from_usize(self.level.load(Ordering::Relaxed))
    }

    fn use_stderr(&self, level: LevelFilter) {
        self.set_route(Route::Stderr, level);
    }

    fn set_route(&self, route: Route, level: LevelFilter) {
        let mut current = self.route.write().unwrap_or_else(PoisonError::into_inner);
        *current = route;
        self.level.store(level as usize, Ordering::Relaxed);
    }

    fn accepts(&self, level: Level, target: &str) -> bool {
        let configured = self.level();
        configured != LevelFilter::Off && (target == AUDIT_TARGET || level <= configured)
    }

    fn write_stderr(&self, line: String) {
        match &self.stderr {
            StderrOut::Process => {
                let _ = io::stderr().lock().write_all(line.as_bytes());
            }
            #[cfg(test)]
            StderrOut::Capture(lines) => lock(lines).push(line),
        }
    }
}

impl Log for Router {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.accepts(metadata.level(), metadata.target())
    }

    fn log(&self, record: &Record) {
        let target = record.target();
        if !self.accepts(record.level(), target) {
            return;
        }
        let is_audit = target == AUDIT_TARGET;
        // Format before taking any lock: a Display impl that logs must not deadlock us.
        let mut message = String::new();
        let _ = write!(message, "{}", record.args());
        let message = one_line(message);

        let route = self.route.read().unwrap_or_else(PoisonError::into_inner);
        match &*route {
            Route::Stderr => {
                let line = format!("{} {} {}: {}\n", now_rfc3339(), record.level(), target, message);
                drop(route);
                self.write_stderr(line);
            }
            Route::Syslog(streams) => {
                let (stream, text) = if is_audit {
                    (&streams.audit, message)
                } else {
                    (&streams.daemon, format!("{target}: {message}"))
                };
                let text = truncate_for_syslog(text);
                let delivered = lock(stream).send(severity_for(record.level()), &text);
                if !delivered {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn flush(&self) {
        let route = self.route.read().unwrap_or_else(PoisonError::into_inner);
        match &*route {
            Route::Stderr => {
                let _ = io::stderr().flush();
            }
            Route::Syslog(streams) => {
                for stream in [&streams.daemon, &streams.audit] {
                    if let Some(conn) = lock(stream).conn.as_mut() {
                        let _ = conn.backend.flush();
                    }
                }
            }
        }
    }
}

impl Route {
    fn open_syslog(path: &Path, send_timeout: Duration, stall_backoff: Duration) -> Result<Route, String> {
        let daemon = SyslogStream::open(path, Facility::LOG_DAEMON, send_timeout, stall_backoff)?;
        let audit = SyslogStream::open(path, Facility::LOG_AUTHPRIV, send_timeout, stall_backoff)?;
        Ok(Route::Syslog(Box::new(SyslogStreams {
            daemon: Mutex::new(daemon),
            audit: Mutex::new(audit),
        })))
    }
}

type SyslogConn = syslog::Logger<LoggerBackend, Formatter3164>;

/// One syslog connection (one facility) that reconnects after errors.
struct SyslogStream {
    path: PathBuf,
    facility: Facility,
    send_timeout: Duration,
    stall_backoff: Duration,
    /// `None` after a failed reconnect: the next message tries again.
    conn: Option<SyslogConn>,
    /// Set after a send timed out: until then messages are dropped without waiting.
    stalled_until: Option<Instant>,
    /// Messages dropped since the last one delivered.
    dropped: u64,
}

enum SendError {
    /// The socket is alive but full: reconnecting would not help.
    Timeout,
    Failed,
}

impl SyslogStream {
    fn open(path: &Path, facility: Facility, send_timeout: Duration, stall_backoff: Duration) -> Result<Self, String> {
        let conn = connect(path, facility, send_timeout)?;
        Ok(SyslogStream {
            path: path.to_path_buf(),
            facility,
            send_timeout,
            stall_backoff,
            conn: Some(conn),
            stalled_until: None,
            dropped: 0,
        })
    }

    /// Sends one message; on error reconnects and retries once. Returns whether it was delivered.
    fn send(&mut self, severity: Severity, text: &str) -> bool {
        if let Some(until) = self.stalled_until {
            if Instant::now() < until {
                self.dropped += 1;
                return false;
            }
            self.stalled_until = None;
        }
        if let Some(conn) = self.conn.as_mut() {
            match send_on(conn, severity, text) {
                Ok(()) => {
                    self.delivered();
                    return true;
                }
                Err(SendError::Timeout) => return self.stalled(),
                Err(SendError::Failed) => self.conn = None,
            }
        }
        // Reconnect (the syslog daemon may have recreated its socket) and retry once.
        let Ok(mut conn) = connect(&self.path, self.facility, self.send_timeout) else {
            self.dropped += 1;
            return false;
        };
        match send_on(&mut conn, severity, text) {
            Ok(()) => {
                self.conn = Some(conn);
                self.delivered();
                true
            }
            Err(SendError::Timeout) => {
                self.conn = Some(conn);
                self.stalled()
            }
            Err(SendError::Failed) => {
                self.dropped += 1;
                false
            }
        }
    }

    fn stalled(&mut self) -> bool {
        self.stalled_until = Some(Instant::now() + self.stall_backoff);
        self.dropped += 1;
        false
    }

    /// After a delivery, reports (best effort, no retry) how many messages were lost before it.
    fn delivered(&mut self) {
        if self.dropped == 0 {
            return;
        }
        let notice = format!(
            "{}: {} message(s) dropped while syslog was unavailable",
            module_path!(),
            self.dropped
        );
        self.dropped = 0;
        if let Some(conn) = self.conn.as_mut() {
            if send_on(conn, Severity::LOG_WARNING, &notice).is_err() {
                self.conn = None;
            }
        }
    }
}

/// Writes `<PRI>Mmm dd hh:mm:ss vnetd[pid]: text` (RFC 3164, as the `syslog` crate's
/// `Formatter3164` does, but with the node's wall-clock time instead of UTC) in one send.
fn send_on(conn: &mut SyslogConn, severity: Severity, text: &str) -> Result<(), SendError> {
    let f = &conn.formatter;
    let line = format!("<{}>{} {}[{}]: {text}", f.facility as u8 | severity as u8, syslog_stamp(), f.process, f.pid);
    conn.backend.write_all(line.as_bytes()).map_err(|io| {
        if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            SendError::Timeout
        } else {
            SendError::Failed
        }
    })
}

/// Connects to a local syslog socket: datagram first, stream if the socket is a stream socket
/// (as the `syslog` crate does). Sends get `send_timeout` so a stuck syslog cannot hold callers.
fn connect(path: &Path, facility: Facility, send_timeout: Duration) -> Result<SyslogConn, String> {
    let formatter = Formatter3164 {
        facility,
        hostname: None,
        process: PROCESS_NAME.to_string(),
        pid: std::process::id(),
    };
    let fail = |e: io::Error| format!("cannot connect to syslog socket {}: {e}", path.display());
    let dgram = UnixDatagram::unbound().and_then(|sock| sock.connect(path).map(|()| sock));
    let backend = match dgram {
        Ok(sock) => {
            sock.set_write_timeout(Some(send_timeout)).map_err(fail)?;
            LoggerBackend::Unix(sock)
        }
        Err(dgram_err) => match UnixStream::connect(path) {
            Ok(sock) => {
                sock.set_write_timeout(Some(send_timeout)).map_err(fail)?;
                LoggerBackend::UnixStream(BufWriter::new(sock))
            }
            Err(_) => return Err(fail(dgram_err)),
        },
    };
    Ok(syslog::Logger::new(backend, formatter))
}

/// The node's UTC offset in seconds (config `[node] timezone`), used for log timestamps.
static UTC_OFFSET_S: AtomicI32 = AtomicI32::new(0);

/// Log timestamps from now on are written in `offset` (the node's `[node] timezone`).
pub fn set_utc_offset(offset: time::UtcOffset) {
    UTC_OFFSET_S.store(offset.whole_seconds(), Ordering::Relaxed);
}

/// The system time in the node's UTC offset.
fn now_local() -> time::OffsetDateTime {
    let offset = time::UtcOffset::from_whole_seconds(UTC_OFFSET_S.load(Ordering::Relaxed)).unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::now_utc().to_offset(offset)
}

/// `2026-12-07T21:30:14.354+08:00` (RFC 3339 with the node's offset; `+00:00` for UTC).
fn now_rfc3339() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory]:[offset_minute]"
    );
    let now = now_local();
    now.format(&format)
        .unwrap_or_else(|_| format!("{}", now.unix_timestamp()))
}

/// The RFC 3164 header time (`Dec  7 21:30:14` style, `[day]` zero-padded as the `syslog`
/// crate writes it) in the node's offset: the format has no offset field, so it is the
/// node's wall-clock time.
fn syslog_stamp() -> String {
    let format = time::macros::format_description!("[month repr:short] [day] [hour]:[minute]:[second]");
    now_local().format(&format).unwrap_or_default()
}

/// Escapes control characters (except tab) so one record stays one line.
fn one_line(message: String) -> String {
    if !message.chars().any(|c| c.is_control() && c != '\t') {
        return message;
    }
    let mut out = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        match c {
            '\t' => out.push('\t'),
            c if c.is_control() => push_control(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

fn push_control(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn truncate_for_syslog(mut text: String) -> String {
    if text.len() <= MAX_SYSLOG_MESSAGE_BYTES {
        return text;
    }
    let mut end = MAX_SYSLOG_MESSAGE_BYTES - TRUNCATED_MARKER.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(TRUNCATED_MARKER);
    text
}

fn push_key(out: &mut String, key: &str) {
    debug_assert!(!key.is_empty(), "audit field key must not be empty");
    for c in key.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
            out.push(c);
        } else {
            out.push('_');
        }
    }
}

fn push_value(out: &mut String, value: &str) {
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '='));
    if !needs_quotes {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => push_control(out, c),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
