//! `vnetd outbox status | outbox retry [--dead]`: what waits for delivery, and re-queueing.

use super::{open_store, print_table, CliResult};
use crate::config::Config;
use crate::runtime::logging::audit;
use clap::Subcommand;

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


pub fn run(cfg: &Config, cmd: OutboxCmd) -> CliResult {
    let store = open_store(cfg)?;
    let clock = cfg.clock();
    match cmd {
        OutboxCmd::Status => {
            let ts = |v: Option<i64>| v.map(|t| clock.format_ts(t)).unwrap_or_default();
            let rows: Vec<Vec<String>> = store
                .read(crate::store::outbox::status)?
                .into_iter()
                .map(|l| {
                    vec![
                        l.destination,
                        l.what,
                        l.pending.to_string(),
                        l.dead.to_string(),
                        l.delivered.to_string(),
                        ts(l.oldest_pending),
                        ts(l.next_attempt),
                        l.last_delivered_seq.map(|v| v.to_string()).unwrap_or_default(),
                        l.last_error,
                    ]
                })
                .collect();
            print_table(
                &["destination", "operation", "pending", "dead", "delivered", "oldest_pending", "next_attempt", "last_delivered_seq", "last_error"],
                &rows,
            );
            Ok(())
        }
        OutboxCmd::Retry { dead } => {
            let now = clock.unix();
            let (revived, pending) = store.write(move |c| crate::store::outbox::retry_now(c, dead, now))?;
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
