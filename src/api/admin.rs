//! The admin listener: `/healthz` (the database answers), `/readyz` (also the listeners are up, the
//! outbox relay is running and no database failure is held against the node: store::health),
//! `/metrics` (Prometheus text format).

use super::http::text;
use super::server::{Request, Response, Server};
use crate::app::App;

fn db_ok(app: &App) -> bool {
    app.store.read(crate::store::answers).is_ok()
}

/// The relay's dispatcher went round within the last few seconds.
fn relay_alive(app: &App) -> bool {
    let hb = app.relay_heartbeat.load(std::sync::atomic::Ordering::Relaxed);
    hb != 0 && (app.clock.unix() - hb).abs() <= 10
}

/// An admin request; `admin` is the admin listener itself (None only while it starts).
pub fn handle(app: &App, soap: &Server, admin: Option<&Server>, rq: &Request) -> Response {
    match rq.path() {
        "/healthz" => {
            if db_ok(app) { text(200, "ok\n") } else { text(503, "database unavailable\n") }
        }
        "/readyz" => {
            let listening = soap.local_addr().is_some();
            if !db_ok(app) || !listening {
                text(503, "not ready\n")
            } else if let Some(why) = app.store.health().unready() {
                text(503, &format!("not ready: {why}\n"))
            } else if !relay_alive(app) {
                text(503, "not ready: outbox relay stopped\n")
            } else {
                text(200, "ready\n")
            }
        }
        "/metrics" => {
            refresh_gauges(app, soap, admin);
            Response::new(200, crate::runtime::metrics::CONTENT_TYPE, app.metrics.render().into_bytes()).with_header("Cache-Control", "no-store")
        }
        _ => text(404, "not found\n"),
    }
}

/// Destinations the outbox gauges have shown.
static OUTBOX_DESTINATIONS: std::sync::Mutex<std::collections::BTreeSet<String>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

pub const HTTP_REFUSED: &str = "vnetd_http_refused_total";
pub const HTTP_REFUSED_HELP: &str =
    "HTTP answers refusing a request before it reached an operation, by listener and status (400, 408, 413, 414, 431, 503: bad or late heads and bodies, limits, connection cap, full worker queue)";
const TLS_FAILED: &str = "vnetd_tls_handshake_failures_total";
const TLS_FAILED_HELP: &str = "TLS handshakes on the SOAP listener that closed the connection: not finished within read_timeout_s (timeout) or failed (error: not TLS, no common protocol, certificate refused)";
/// The statuses of `vnetd_http_refused_total`.
const REFUSED_STATUSES: [&str; 6] = ["400", "408", "413", "414", "431", "503"];

/// Creates every series whose label values are known at start-up, at zero, so that a scrape
/// right after start shows the whole set (rates and alerts need the zero before the first event).
pub fn declare_series(app: &App) {
    let m = &app.metrics;
    for op in crate::api::table::OPS.iter() {
        m.declare_request(op.service.name(), op.name);
    }
    m.declare_request(crate::api::legacy::SERVICE, "getUserProduct");
    for s in crate::spec::Service::ALL {
        m.inc_counter("vnetd_soap_faults_total", "SOAP requests refused with a Client fault", &[("service", s.name())], 0);
    }
    m.inc_counter("vnetd_soap_faults_total", "SOAP requests refused with a Client fault", &[("service", crate::api::legacy::SERVICE)], 0);
    for result in ["ok", "failed", "locked"] {
        m.inc_counter("vnetd_logins_total", "Password logins by outcome", &[("result", result)], 0);
    }
    app.count_hash_busy(0);
    m.inc_counter("vnetd_lockouts_total", "Accounts locked after repeated failures", &[], 0);
    for result in ["ok", "refused"] {
        m.inc_counter("vnetd_tickets_total", "TicketValidate outcomes", &[("result", result)], 0);
    }
    for outcome in ["start", "start_replacing", "late_start_ignored", "stop", "stop_unknown", "interim"] {
        m.inc_counter("vnetd_online_events_total", "OnlineNotify events by outcome", &[("outcome", outcome)], 0);
    }
    for reason in ["invalid", "stale", "foreign_return_url", "csrf"] {
        m.inc_counter("vnetd_web_refused_total", "Browser requests refused (bad token, CSRF)", &[("reason", reason)], 0);
    }
    for op in ["RoamAuthV2", "Charge"] {
        for outcome in ["answered", "failed"] {
            m.inc_counter("vnetd_centre_calls_total", "Synchronous calls to the centre by operation and outcome", &[("operation", op), ("outcome", outcome)], 0);
        }
    }
    for stream in crate::sync::relay::streams() {
        for outcome in ["delivered", "retry"] {
            m.inc_counter("vnetd_outbox_batches_total", "BatchSync batches sent by stream and outcome", &[("stream", stream), ("outcome", outcome)], 0);
        }
        m.set_gauge("vnetd_sync_stream_stalled", "1 while a BatchSync stream waits for `outbox retry --dead`", &[("stream", stream)], 0.0);
    }
    for result in ["-21514", "-21548"] {
        m.inc_counter(
            "vnetd_sync_alarms_total",
            "Deliveries refused for TimeStamp (-21514) or Authenticator (-21548): clocks or keys disagree",
            &[("destination", crate::store::outbox::CENTRE), ("result", result)],
            0,
        );
    }
    m.inc_counter("vnetd_clock_sync_failures_total", "ClockSync exchanges that failed", &[], 0);
    for outcome in ["renewed", "expired"] {
        m.inc_counter("vnetd_rollover_orders_total", "Orders handled by the monthly rollover", &[("outcome", outcome)], 0);
    }
    for listener in ["soap", "admin"] {
        for status in REFUSED_STATUSES {
            m.inc_counter(HTTP_REFUSED, HTTP_REFUSED_HELP, &[("listener", listener), ("status", status)], 0);
        }
    }
    m.inc_counter("vnetd_destination_state_changes_total", crate::runtime::reach::DEST_CHANGES_HELP, &[("destination", crate::store::outbox::CENTRE), ("state", "down")], 0);
    m.inc_counter("vnetd_destination_state_changes_total", crate::runtime::reach::DEST_CHANGES_HELP, &[("destination", crate::store::outbox::CENTRE), ("state", "up")], 0);
    // The outbox gauges for every destination a message can go to: the centre and each SP
    // with a URL (a scrape adds any other destination found in the table).
    {
        let mut seen = OUTBOX_DESTINATIONS.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(crate::store::outbox::CENTRE.to_string());
        for p in app.peers.all() {
            if p.kind == "sp" && p.url.as_deref().is_some_and(|u| !u.is_empty()) {
                seen.insert(p.id.clone());
            }
        }
        for dest in seen.iter() {
            m.set_gauge("vnetd_outbox_backlog", "Messages waiting for delivery", &[("destination", dest)], 0.0);
            m.set_gauge("vnetd_outbox_oldest_age_seconds", "Age of the oldest waiting message", &[("destination", dest)], 0.0);
            m.set_gauge("vnetd_outbox_dead_letters", "Dead-lettered messages", &[("destination", dest)], 0.0);
        }
    }
    // Set by the clock-sync thread, which starts before the listeners: declared, not reset.
    m.declare_gauge("vnetd_clock_offset_seconds", "Offset of the centre clock from node time (ServerTime - midpoint)", &[]);
    m.declare_gauge("vnetd_clock_alarm", "1 while the centre clock is more than clock_alarm_s away", &[]);
    m.set_gauge("vnetd_open_connections", "Open connections on the SOAP listener", &[], 0.0);
    m.inc_counter(STORE_COMMITS, STORE_COMMITS_HELP, &[], 0);
    if app.cfg.tls.inbound() {
        for reason in ["timeout", "error"] {
            m.inc_counter(TLS_FAILED, TLS_FAILED_HELP, &[("reason", reason)], 0);
        }
    }
    m.inc_counter(STORE_JOBS, STORE_JOBS_HELP, &[], 0);
}

const STORE_COMMITS: &str = "vnetd_store_commits_total";
const STORE_COMMITS_HELP: &str = "Write transactions committed since start (one fsync each)";
const STORE_JOBS: &str = "vnetd_store_write_jobs_total";
const STORE_JOBS_HELP: &str = "Write jobs committed since start (many per commit: group commit)";

/// Gauges and library-kept counters read at scrape time.
fn refresh_gauges(app: &App, soap: &Server, admin: Option<&Server>) {
    let m = &app.metrics;
    m.set_gauge("vnetd_open_connections", "Open connections on the SOAP listener", &[], soap.open_connections() as f64);
    use std::sync::atomic::Ordering::Relaxed;
    m.sync_counter(STORE_COMMITS, STORE_COMMITS_HELP, &[], crate::store::COMMITS.load(Relaxed));
    m.sync_counter(STORE_JOBS, STORE_JOBS_HELP, &[], crate::store::JOBS.load(Relaxed));
    for (listener, server) in [("soap", Some(soap)), ("admin", admin)] {
        for (status, n) in server.map(Server::refusals).unwrap_or_default() {
            m.sync_counter(HTTP_REFUSED, HTTP_REFUSED_HELP, &[("listener", listener), ("status", &status.to_string())], n);
        }
    }
    if app.cfg.tls.inbound() {
        let (timeout, error) = soap.tls_failures();
        m.sync_counter(TLS_FAILED, TLS_FAILED_HELP, &[("reason", "timeout")], timeout);
        m.sync_counter(TLS_FAILED, TLS_FAILED_HELP, &[("reason", "error")], error);
    }
    let backlog = app.store.read(crate::store::outbox::backlog);
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
