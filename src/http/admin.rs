//! The admin listener: `/healthz` (the database answers), `/readyz` (also the listeners are up, the
//! outbox relay is running and no database failure is held against the node: store::health),
//! `/metrics` (Prometheus text format).

use super::{respond, text};
use crate::app::App;
use tiny_http::{Request, Server};

fn db_ok(app: &App) -> bool {
    app.store.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)).is_ok()
}

/// The relay's dispatcher went round within the last few seconds.
fn relay_alive(app: &App) -> bool {
    let hb = app.relay_heartbeat.load(std::sync::atomic::Ordering::Relaxed);
    hb != 0 && (app.clock.unix() - hb).abs() <= 10
}

pub fn handle(app: &App, soap: &Server, rq: Request) {
    let path = rq.url().split('?').next().unwrap_or("").to_string();
    match path.as_str() {
        "/healthz" => {
            if db_ok(app) { text(rq, 200, "ok\n") } else { text(rq, 503, "database unavailable\n") }
        }
        "/readyz" => {
            let listening = soap.server_addr().to_ip().is_some();
            if !db_ok(app) || !listening {
                text(rq, 503, "not ready\n")
            } else if let Some(why) = app.store.health().unready() {
                text(rq, 503, &format!("not ready: {why}\n"))
            } else if !relay_alive(app) {
                text(rq, 503, "not ready: outbox relay stopped\n")
            } else {
                text(rq, 200, "ready\n")
            }
        }
        "/metrics" => {
            refresh_gauges(app, soap);
            respond(rq, 200, "text/plain; version=0.0.4; charset=utf-8", app.metrics.render().into_bytes());
        }
        _ => text(rq, 404, "not found\n"),
    }
}

/// Destinations the outbox gauges have shown.
static OUTBOX_DESTINATIONS: std::sync::Mutex<std::collections::BTreeSet<String>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Gauges read at scrape time.
fn refresh_gauges(app: &App, soap: &Server) {
    let m = &app.metrics;
    m.set_gauge("vnetd_open_connections", "Open connections on the SOAP listener", &[], soap.open_connections() as f64);
    use std::sync::atomic::Ordering::Relaxed;
    m.set_gauge("vnetd_store_commits", "Write transactions committed since start (one fsync each)", &[], crate::store::COMMITS.load(Relaxed) as f64);
    m.set_gauge("vnetd_store_write_jobs", "Write jobs committed since start (many per commit: group commit)", &[], crate::store::JOBS.load(Relaxed) as f64);
    let backlog = app.store.read(|c| {
        let mut st = c.prepare(
            "SELECT destination, state, count(*), coalesce(min(created_at), 0) FROM outbox WHERE state IN ('pending', 'dead') GROUP BY destination, state",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    });
    match backlog {
        Ok(rows) => {
            let now = app.clock.unix();
            // Every destination ever shown starts at zero, so a drained backlog reads 0.
            let mut seen = OUTBOX_DESTINATIONS.lock().unwrap_or_else(|e| e.into_inner());
            seen.extend(rows.iter().map(|r| r.0.clone()));
            for dest in seen.iter() {
                m.set_gauge("vnetd_outbox_backlog", "Messages waiting for delivery", &[("destination", dest)], 0.0);
                m.set_gauge("vnetd_outbox_oldest_age_seconds", "Age of the oldest waiting message", &[("destination", dest)], 0.0);
                m.set_gauge("vnetd_outbox_dead_letters", "Dead-lettered messages", &[("destination", dest)], 0.0);
            }
            for (dest, state, n, oldest) in rows {
                if state == "pending" {
                    m.set_gauge("vnetd_outbox_backlog", "Messages waiting for delivery", &[("destination", &dest)], n as f64);
                    m.set_gauge("vnetd_outbox_oldest_age_seconds", "Age of the oldest waiting message", &[("destination", &dest)], (now - oldest).max(0) as f64);
                } else {
                    m.set_gauge("vnetd_outbox_dead_letters", "Dead-lettered messages", &[("destination", &dest)], n as f64);
                }
            }
        }
        Err(e) => log::error!("cannot read outbox backlog: {e}"),
    }
}
