//! Rate-limited info lines for refused requests that point at an integration fault (unknown
//! caller `-20001`, operation not allowed `-20003`, bad Authenticator `-21548`, TimeStamp out
//! of tolerance `-21514`, SOAP Client faults): an integrator sees why the node refuses them,
//! and a misconfigured or hostile peer cannot flood the log.
//!
//! Per key (the claimed caller id, or the source address when there is none): the first
//! `burst` lines of a window of `window` are logged; the rest are counted, and when the window
//! ends one summary line says how many were suppressed ([`RefusalLog::flush`], called every
//! second by the job thread, or the key's next refusal). At most [`MAX_KEYS`] keys are tracked;
//! beyond that, refusals of new keys share one key `*`, so made-up caller ids cannot grow the
//! table.
//!
//! Never log a secret here: the Authenticator, keys and passwords are not part of the line.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked at once.
pub const MAX_KEYS: usize = 1024;
/// Longest caller id written (the claimed id is request text).
const MAX_ID_CHARS: usize = 40;

struct Slot {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

pub struct RefusalLog {
    burst: AtomicU32,
    window_ms: AtomicU64,
    slots: Mutex<HashMap<String, Slot>>,
}

/// What was refused.
pub struct Refusal<'a> {
    /// The caller id the request claims ("" when the envelope could not be read).
    pub peer: &'a str,
    /// The operation ("" when unknown).
    pub operation: &'a str,
    pub service: &'a str,
    pub source: Option<IpAddr>,
    /// The Result code, or None for a SOAP fault.
    pub code: Option<i32>,
    /// Why, in words (the Result's meaning or the fault reason).
    pub reason: &'a str,
}

/// Does this Result code point at an integration fault worth an info line?
pub fn is_integration_fault(code: i32) -> bool {
    matches!(code, -20001 | -20003 | -21548 | -21514)
}

fn clean(s: &str, max: usize) -> String {
    let t: String = s.chars().take(max).map(|c| if c.is_control() || c.is_whitespace() { '?' } else { c }).collect();
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

impl RefusalLog {
    pub fn new(burst: u32, window: Duration) -> RefusalLog {
        RefusalLog { burst: AtomicU32::new(burst), window_ms: AtomicU64::new(window.as_millis() as u64), slots: Mutex::new(HashMap::new()) }
    }

    /// New limits (SIGHUP); windows already running keep their start.
    pub fn set_limits(&self, burst: u32, window: Duration) {
        self.burst.store(burst, Ordering::Relaxed);
        self.window_ms.store(window.as_millis() as u64, Ordering::Relaxed);
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.load(Ordering::Relaxed))
    }

    /// Logs `r` at info unless its key is over its burst.
    pub fn refused(&self, r: &Refusal) {
        if !log::log_enabled!(log::Level::Info) {
            return;
        }
        let peer = clean(r.peer, MAX_ID_CHARS);
        let source = r.source.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into());
        let key = if r.peer.is_empty() { format!("@{source}") } else { peer.clone() };
        let (burst, window) = (self.burst.load(Ordering::Relaxed), self.window());
        let now = Instant::now();
        let log_it = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let key = if slots.len() >= MAX_KEYS && !slots.contains_key(&key) { "*".to_string() } else { key };
            let slot = slots.entry(key.clone()).or_insert(Slot { started: now, logged: 0, suppressed: 0 });
            if now.duration_since(slot.started) >= window {
                summary(&key, slot, window);
                *slot = Slot { started: now, logged: 0, suppressed: 0 };
            }
            if slot.logged < burst {
                slot.logged += 1;
                true
            } else {
                slot.suppressed += 1;
                false
            }
        };
        if !log_it {
            return;
        }
        let what = match r.code {
            Some(c) => format!("Result {c} ({})", r.reason),
            None => format!("SOAP fault ({})", clean(r.reason, 120)),
        };
        let op = clean(r.operation, 64);
        log::info!("refused {}/{op} from peer {peer} at {source}: {what}", r.service);
    }

    /// Writes the summary of every window that has ended and forgets idle keys.
    pub fn flush(&self) {
        let window = self.window();
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|key, slot| {
            if now.duration_since(slot.started) < window {
                return true;
            }
            summary(key, slot, window);
            false
        });
    }
}

fn summary(key: &str, slot: &mut Slot, window: Duration) {
    if slot.suppressed > 0 {
        let who = match key.strip_prefix('@') {
            Some(src) => format!("from {src}"),
            None if key == "*" => "from other peers".to_string(),
            None => format!("from peer {key}"),
        };
        log::info!(
            "{} more refused request(s) {who} not logged (at most {} logged per {} s)",
            slot.suppressed,
            slot.logged,
            window.as_secs_f64()
        );
        slot.suppressed = 0;
    }
}
