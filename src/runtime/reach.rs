//! Whether the destinations the node calls (the centre, SPs) answer: one warning when one
//! starts failing and one when it answers again, instead of a line per attempt (attempts are
//! logged at debug by their callers). Used by the outbox relay and by the synchronous centre
//! calls, which share the state: the centre is down once, whoever noticed.

use crate::runtime::metrics::Metrics;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Help text of `vnetd_destination_state_changes_total`.
pub const DEST_CHANGES_HELP: &str = "A destination (the centre, an SP) became unreachable (down) or reachable again (up)";

pub const STATE_CHANGES: &str = "vnetd_destination_state_changes_total";

struct Down {
    since: String,
    started: Instant,
    failures: u64,
}

#[derive(Default)]
pub struct Reachability {
    down: Mutex<HashMap<String, Down>>,
}

impl Reachability {
    /// One call to `dest` ("centre" or an SP id) at `url` failed to get an answer.
    pub fn failed(&self, metrics: &Metrics, dest: &str, url: &str, error: &dyn std::fmt::Display) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let key = format!("{dest} {url}");
        if let Some(d) = down.get_mut(&key) {
            d.failures += 1;
            return;
        }
        let since = crate::runtime::logging::timestamp();
        log::warn!("{} {url} unreachable since {since}: {error}", label(dest));
        metrics.inc_counter(STATE_CHANGES, DEST_CHANGES_HELP, &[("destination", dest), ("state", "down")], 1);
        down.insert(key, Down { since, started: Instant::now(), failures: 1 });
    }

    /// A call to `dest` at `url` got an answer (whatever its Result).
    pub fn answered(&self, metrics: &Metrics, dest: &str, url: &str) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_empty() {
            return;
        }
        if let Some(d) = down.remove(&format!("{dest} {url}")) {
            log::warn!(
                "{} {url} reachable again after {} failure(s) / {:.0} s (unreachable since {})",
                label(dest),
                d.failures,
                d.started.elapsed().as_secs_f64(),
                d.since
            );
            metrics.inc_counter(STATE_CHANGES, DEST_CHANGES_HELP, &[("destination", dest), ("state", "up")], 1);
        }
    }
}

fn label(dest: &str) -> String {
    if dest == crate::store::outbox::CENTRE {
        "centre".into()
    } else {
        format!("SP {dest}")
    }
}
