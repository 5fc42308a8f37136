//! The systemd watchdog (`WatchdogSec=` in the unit; systemd passes `WATCHDOG_USEC`): every half
//! interval, `WATCHDOG=1` is sent only if the database writer answered the previous probe (a
//! ping queued behind its jobs, answered between batches) and the outbox relay's dispatcher went
//! round recently. A hung writer (a stuck disk, a deadlock) or relay stops the keepalives, and
//! systemd restarts the service. Without `WATCHDOG_USEC` nothing runs.

use crate::app::App;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Start the keepalive loop when systemd asked for one.
pub fn spawn(app: Arc<App>) -> std::io::Result<Option<Watchdog>> {
    let Some(interval) = sd_notify::watchdog_enabled() else { return Ok(None) };
    let tick = (interval / 2).max(Duration::from_millis(100));
    log::info!(
        "systemd watchdog: {} ms; WATCHDOG=1 every {} ms while the database writer and the outbox relay make progress",
        interval.as_millis(),
        tick.as_millis()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new().name("watchdog".into()).spawn(move || run(&app, &stop2, interval, tick))?;
    Ok(Some(Watchdog { stop, thread }))
}

fn run(app: &App, stop: &AtomicBool, interval: Duration, tick: Duration) {
    // The relay's heartbeat is in node seconds; allow a slow round.
    let relay_slack = interval.as_secs().max(10) as i64;
    let mut probe: Option<(Receiver<()>, Instant)> = None;
    let mut withheld = false;
    while !stop.load(Ordering::Relaxed) {
        let writer = match &probe {
            None => Ok(()),
            Some((rx, sent)) => match rx.try_recv() {
                Ok(()) => Ok(()),
                Err(TryRecvError::Empty) => Err(format!("the database writer has not answered for {} ms", sent.elapsed().as_millis())),
                Err(TryRecvError::Disconnected) => Err("the database writer is gone".to_string()),
            },
        };
        if writer.is_ok() {
            probe = app.store.ping_writer().ok().map(|rx| (rx, Instant::now()));
        }
        let hb = app.relay_heartbeat.load(Ordering::Relaxed);
        let relay = if hb != 0 && (app.clock.unix() - hb).abs() <= relay_slack {
            Ok(())
        } else {
            Err(format!("the outbox relay has not gone round for {} s", app.clock.unix() - hb))
        };
        match writer.and(relay) {
            Ok(()) => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                if withheld {
                    log::warn!("watchdog: progress again; WATCHDOG=1 resumed");
                    withheld = false;
                }
            }
            Err(why) => {
                if !withheld {
                    log::error!("watchdog: {why}; WATCHDOG=1 withheld (systemd restarts vnetd after WatchdogSec)");
                    withheld = true;
                }
            }
        }
        let until = Instant::now() + tick;
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50).min(tick));
        }
    }
}
