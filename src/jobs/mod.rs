//! Background jobs on the node clock (spec 7.2, 7.3): the monthly rollover at 00:00:00 on the
//! 1st and the day close `day_close_minute` past midnight. Both are driven by markers in the
//! database (`job_state`), so work missed while the node was down is done at start-up, oldest
//! first, rollovers before day closes (spec 11 "Jobs after downtime"), and an interrupted job
//! continues where its last transaction ended.

pub mod clock_sync;

use crate::app::App;
use crate::domain::billing::{self as bl, WriteCtx};
use crate::domain::calendar::{Cal, Ym};
use crate::store::DbResult;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often housekeeping runs.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);

/// The last LedgerDate whose close is due at `now`: the day before the day holding
/// `now - day_close_minute`.
pub fn last_due_day(cal: Cal, now: i64, close_minute: i64) -> String {
    cal.date8(now - close_minute * 60 - 86_400)
}

/// Set the markers of a database that has none yet: nothing before now is owed.
fn init_markers(app: &App) -> DbResult<()> {
    let cal = Cal::new(app.clock.tz());
    let now = app.clock.unix();
    let (month, day) = (cal.month(now).to_string(), last_due_day(cal, now, app.cfg.billing.day_close_minute));
    app.store.write(move |c| {
        if bl::job_state(c, bl::ROLLED_OVER_MONTH)?.is_none() {
            bl::set_job_state(c, bl::ROLLED_OVER_MONTH, &month)?;
        }
        if bl::job_state(c, bl::CLOSED_THROUGH)?.is_none() {
            bl::set_job_state(c, bl::CLOSED_THROUGH, &day)?;
        }
        Ok(())
    })
}

/// Roll every order over into `month`, chunk by chunk; the month's marker commits with its
/// last chunk.
fn rollover(app: &App, month: Ym) -> DbResult<bl::Rolled> {
    let cal = Cal::new(app.clock.tz());
    let mut total = bl::Rolled::default();
    loop {
        let (province, now) = (app.cfg.node.province_id.clone(), app.clock.unix());
        let r = app.store.write(move |conn| {
            let ctx = WriteCtx::new(conn, cal, &province, now);
            let r = bl::rollover_chunk(&ctx, month, bl::ROLLOVER_CHUNK)?;
            if r.renewed + r.expired < bl::ROLLOVER_CHUNK {
                bl::set_job_state(conn, bl::ROLLED_OVER_MONTH, &month.to_string())?;
            }
            Ok(r)
        })?;
        total.renewed += r.renewed;
        total.expired += r.expired;
        if r.renewed + r.expired < bl::ROLLOVER_CHUNK {
            return Ok(total);
        }
    }
}

/// Do whatever is due now; true if something was done.
pub fn run_due(app: &App) -> DbResult<bool> {
    let cal = Cal::new(app.clock.tz());
    let mut did = false;
    loop {
        let now = app.clock.unix();
        let done = app.store.read(|c| bl::job_state(c, bl::ROLLED_OVER_MONTH))?.and_then(|m| Ym::parse(&m));
        let Some(done) = done else { break };
        if done >= cal.month(now) {
            break;
        }
        let month = done.next();
        let r = rollover(app, month)?;
        log::info!("monthly rollover {month}: {} orders renewed, {} expired", r.renewed, r.expired);
        app.metrics.inc_counter("vnetd_rollover_orders_total", "Orders handled by the monthly rollover", &[("outcome", "renewed")], r.renewed as u64);
        app.metrics.inc_counter("vnetd_rollover_orders_total", "Orders handled by the monthly rollover", &[("outcome", "expired")], r.expired as u64);
        did = true;
    }
    loop {
        let now = app.clock.unix();
        let due = last_due_day(cal, now, app.cfg.billing.day_close_minute);
        let Some(closed) = app.store.read(|c| bl::job_state(c, bl::CLOSED_THROUGH))? else { break };
        if closed >= due {
            break;
        }
        let Some(day) = cal.next_day(&closed) else { break };
        let province = app.cfg.node.province_id.clone();
        let settle = app.store.write({
            let day = day.clone();
            move |conn| bl::close_day(&WriteCtx::new(conn, cal, &province, now), &day)
        })?;
        log::info!("day {day} closed: {settle} SETTLE records");
        did = true;
    }
    Ok(did)
}

/// Rows deleted per transaction by housekeeping (keeps each writer job short).
const PRUNE_CHUNK: i64 = 2000;

/// Housekeeping (7.5): drop idempotency records and delivered outbox messages older than
/// `idempotency_days`, a chunk per transaction. Returns the rows deleted.
pub fn housekeeping(app: &App) -> DbResult<usize> {
    let cutoff = app.clock.unix() - app.cfg.security.idempotency_days * 86_400;
    let mut total = 0;
    type Prune = fn(&crate::store::Write, i64, i64) -> DbResult<usize>;
    let prune: [Prune; 2] = [crate::store::idempotency::prune, crate::store::outbox::prune_delivered];
    for f in prune {
        loop {
            let n = app.store.write(move |c| f(c, cutoff, PRUNE_CHUNK))?;
            total += n;
            if (n as i64) < PRUNE_CHUNK {
                break;
            }
        }
    }
    let (now, lim) = (app.clock.unix(), crate::services::sso::limits(app));
    total += app.store.write(move |c| crate::domain::sso::expire(c, now, lim))?;
    let stale_s = app.cfg.access.session_stale_h * 3600;
    loop {
        let n = app.store.write(move |c| crate::domain::access::close_stale(c, now, stale_s, PRUNE_CHUNK))?;
        total += n;
        if (n as i64) < PRUNE_CHUNK {
            break;
        }
    }
    if total > 0 {
        log::info!("housekeeping: pruned {total} rows: idempotency records and delivered outbox messages older than {} days, ended SSO sessions and tickets, broadband sessions with no event for {} h", app.cfg.security.idempotency_days, app.cfg.access.session_stale_h);
    }
    Ok(total)
}

/// Set up the markers and do the work missed while the node was down, before serving.
pub fn catch_up(app: &App) -> DbResult<()> {
    init_markers(app)?;
    run_due(app)?;
    Ok(())
}

/// The job thread: checks once a second until `stop`.
pub fn spawn(app: Arc<App>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("jobs".into()).spawn(move || {
        let mut failing = false;
        let mut next_housekeeping = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if std::time::Instant::now() >= next_housekeeping {
                next_housekeeping = std::time::Instant::now() + HOUSEKEEPING_EVERY;
                if let Err(e) = housekeeping(&app) {
                    log::error!("housekeeping failed (will retry): {e}");
                }
            }
            match run_due(&app) {
                Ok(_) => failing = false,
                Err(e) => {
                    // Logged once per failure streak; retried every second.
                    if !failing {
                        log::error!("background job failed (will retry): {e}");
                    }
                    failing = true;
                }
            }
            app.refusal_log.flush();
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_due_day_follows_the_close_minute() {
        let clock = crate::clock::Clock::manual(time::UtcOffset::from_hms(8, 0, 0).unwrap(), 0);
        let cal = Cal::new(clock.tz());
        let at = |s: &str| clock.parse_ts(s).unwrap();
        assert_eq!(last_due_day(cal, at("2026-11-29 00:29:59"), 30), "20261127");
        assert_eq!(last_due_day(cal, at("2026-11-29 00:30:00"), 30), "20261128");
        assert_eq!(last_due_day(cal, at("2026-12-01 00:30:00"), 30), "20261130");
    }
}

#[cfg(test)]
mod housekeeping_tests {
    use super::*;

    #[test]
    fn prunes_only_what_is_past_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("v.db")).unwrap();
        let cfg = crate::config::Config::default();
        let clock = crate::clock::Clock::manual(time::UtcOffset::UTC, 100 * 86_400);
        let app = App::new(cfg, clock, store.clone()).unwrap();
        let old = 100 * 86_400 - 91 * 86_400;
        let recent = 100 * 86_400 - 89 * 86_400;
        store
            .write(move |c| {
                for (i, t) in [old, recent].iter().enumerate() {
                    c.test_conn().execute(
                        "INSERT INTO idempotency(caller, operation, txid, fingerprint, response, created_at) VALUES ('x', 'Op', ?1, '', '{}', ?2)",
                        (format!("t{i}"), t),
                    )?;
                    c.test_conn().execute(
                        "INSERT INTO outbox(destination, operation, order_key, payload, state, next_attempt_at, created_at, delivered_at)
                         VALUES ('centre', 'PUserInfoNotify', 'user:1', '[]', 'delivered', 0, ?1, ?1)",
                        [t],
                    )?;
                }
                // Never pruned: waiting or dead messages, however old.
                c.test_conn().execute("INSERT INTO outbox(destination, operation, order_key, payload, state, next_attempt_at, created_at) VALUES ('centre', 'X', 'k', '[]', 'pending', 0, 0)", [])?;
                c.test_conn().execute("INSERT INTO outbox(destination, operation, order_key, payload, state, next_attempt_at, created_at) VALUES ('centre', 'X', 'k', '[]', 'dead', 0, 0)", [])?;
                Ok(())
            })
            .unwrap();
        assert_eq!(housekeeping(&app).unwrap(), 2);
        let left: (i64, i64) = store
            .read(|c| Ok(c.test_conn().query_row("SELECT (SELECT count(*) FROM idempotency), (SELECT count(*) FROM outbox)", [], |r| Ok((r.get(0)?, r.get(1)?)))?))
            .unwrap();
        assert_eq!(left, (1, 3));
    }
}
