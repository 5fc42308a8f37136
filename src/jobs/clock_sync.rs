//! Clock sync (spec 6.7, 7.4): once at start-up, then every `clock_sync_minutes`, ask the centre
//! for its time. Offset = ServerTime − the midpoint of send and receive; beyond `clock_alarm_s` a
//! warning is logged and the alarm metric set. The node never sets the system clock.

use crate::app::App;
use crate::soap::client::{self, Client};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Node time now, in seconds with a fraction.
fn now_f(app: &App) -> f64 {
    let t = app.clock.now();
    t.unix_timestamp() as f64 + t.nanosecond() as f64 / 1e9
}

/// One exchange: the offset in seconds, or why there is none.
pub fn sync_once(app: &App, client: &Client) -> Result<f64, String> {
    let centre = app.peers.centre().ok_or("no centre peer")?;
    let url = centre.url.clone().filter(|u| !u.is_empty()).ok_or("the centre peer has no URL")?;
    let key = centre.current_key(app.clock.unix()).ok_or("the centre peer has no key in effect")?.key.clone();
    let sent = now_f(app);
    use crate::spec::outbound::{ClockSync, CLOCK_SYNC as op};
    let payload = ClockSync::Payload { LocalTime: app.clock.now_ts() }.values();
    let fields = client::centre_fields(&app.cfg.node.device_no, &app.cfg.node.province_id, payload);
    let answer = client.send(&url, &op, &key, fields, app.clock.now_ts(), None).map_err(|e| e.to_string())?;
    let received = now_f(app);
    if answer.result != 0 {
        return Err(format!("Result {} {}", answer.result, answer.desc));
    }
    let ClockSync::Response { ServerTime } = ClockSync::Response::read(&|n| answer.get(n).to_string());
    let server = app.clock.parse_ts(&ServerTime).ok_or("ServerTime is not yyyy-MM-dd HH:mm:ss")?;
    Ok(server as f64 - (sent + received) / 2.0)
}

fn record(app: &App, offset: f64) {
    let m = &app.metrics;
    m.set_gauge("vnetd_clock_offset_seconds", "Offset of the centre clock from node time (ServerTime - midpoint)", &[], offset);
    let alarm = offset.abs() > app.cfg.sync.clock_alarm_s as f64;
    m.set_gauge("vnetd_clock_alarm", "1 while the centre clock is more than clock_alarm_s away", &[], if alarm { 1.0 } else { 0.0 });
    if alarm {
        log::warn!("clock: the centre's clock is {offset:+.1} s from node time (alarm beyond {} s); the node does not change its clock", app.cfg.sync.clock_alarm_s);
    } else {
        log::debug!("clock: centre offset {offset:+.3} s");
    }
}

/// The clock sync thread: at once, then every `clock_sync_minutes`, until `stop`.
pub fn spawn(app: Arc<App>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("clock-sync".into()).spawn(move || {
        let client = Client::new(Duration::from_millis(app.cfg.sync.centre_timeout_ms.max(100)), &app.tls_roots);
        let every = Duration::from_secs(app.cfg.sync.clock_sync_minutes.max(1) * 60);
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                next = Instant::now() + every;
                match sync_once(&app, &client) {
                    Ok(offset) => record(&app, offset),
                    Err(e) if app.peers.centre().is_none() => log::debug!("clock sync skipped: {e}"),
                    Err(e) => {
                        app.metrics.inc_counter("vnetd_clock_sync_failures_total", "ClockSync exchanges that failed", &[], 1);
                        log::warn!("clock sync with the centre failed: {e}");
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}
