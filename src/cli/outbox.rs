//! `vnetd outbox status | outbox retry [--dead]`: what waits for delivery, and re-queueing.

use super::{open_store, print_table, CliResult};
use crate::config::Config;
use crate::runtime::logging::audit;
use clap::Subcommand;
use rusqlite::params;

#[derive(Subcommand)]
pub enum OutboxCmd {
    /// Waiting, dead-lettered and delivered messages per destination and operation
    /// (BatchSync per stream)
    Status,
    /// Try every waiting message again now; with --dead, re-queue dead letters first (a stalled
    /// BatchSync stream resumes)
    Retry {
        /// Re-queue the dead letters too
        #[arg(long)]
        dead: bool,
    },
}

use crate::store::outbox::RETRY_MARKER;

pub fn run(cfg: &Config, cmd: OutboxCmd) -> CliResult {
    let store = open_store(cfg)?;
    let clock = cfg.clock();
    match cmd {
        OutboxCmd::Status => {
            let rows = store.read(|c| {
                let mut st = c.prepare(
                    "WITH o AS (SELECT *, CASE WHEN seq IS NULL THEN operation ELSE 'BatchSync ' || substr(order_key, 8) END AS what FROM outbox)
                     SELECT destination, what,
                            sum(state = 'pending'), sum(state = 'dead'), sum(state = 'delivered'),
                            min(CASE WHEN state = 'pending' THEN created_at END),
                            min(CASE WHEN state = 'pending' THEN next_attempt_at END),
                            max(CASE WHEN seq IS NOT NULL AND state = 'delivered' THEN seq END),
                            (SELECT o2.last_error FROM o o2 WHERE o2.destination = o.destination AND o2.what = o.what
                               AND o2.state <> 'delivered' AND o2.last_error <> '' ORDER BY o2.id DESC LIMIT 1)
                     FROM o GROUP BY destination, what ORDER BY destination, what",
                )?;
                let rows = st.query_map([], |r| {
                    let ts = |v: Option<i64>| v.map(|t| clock.format_ts(t)).unwrap_or_default();
                    Ok(vec![
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?.to_string(),
                        r.get::<_, i64>(3)?.to_string(),
                        r.get::<_, i64>(4)?.to_string(),
                        ts(r.get(5)?),
                        ts(r.get(6)?),
                        r.get::<_, Option<i64>>(7)?.map(|v| v.to_string()).unwrap_or_default(),
                        r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                    ])
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })?;
            print_table(
                &["destination", "operation", "pending", "dead", "delivered", "oldest_pending", "next_attempt", "last_delivered_seq", "last_error"],
                &rows,
            );
            Ok(())
        }
        OutboxCmd::Retry { dead } => {
            let now = clock.unix();
            let (revived, pending) = store.write(move |c| {
                let revived = if dead {
                    c.execute("UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?1 WHERE state = 'dead'", [now])?
                } else {
                    0
                };
                let pending = c.execute("UPDATE outbox SET next_attempt_at = ?1 WHERE state = 'pending' AND next_attempt_at > ?1", [now])?;
                c.execute(
                    "INSERT INTO job_state(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = ?2",
                    params![RETRY_MARKER, now.to_string()],
                )?;
                Ok((revived, pending))
            })?;
            audit("outbox_retry", &[("dead", if dead { "1" } else { "0" }), ("revived", &revived.to_string())]);
            if dead {
                println!("re-queued {revived} dead letters; {pending} waiting messages will be tried now");
            } else {
                println!("{pending} waiting messages will be tried now");
            }
            Ok(())
        }
    }
}
