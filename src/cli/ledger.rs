//! `vnetd ledger verify [--from yyyyMMdd]`: recompute the charge ledger's hash chain and name the
//! first broken link (`store::ledger`, `domain::billing::ledger`). Exit 0: the chain holds; 1: it
//! is broken (the break on standard error) or the check could not run.

use super::{open_store, CliResult, Failed};
use crate::config::Config;
use crate::domain::billing::ledger;
use crate::domain::calendar::Cal;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum LedgerCmd {
    /// Recompute the hash chain of the charges and compare it with every link and day head
    Verify {
        /// Start at the first charge of this LedgerDate (yyyyMMdd); default: the first charge
        #[arg(long)]
        from: Option<String>,
    },
}

pub fn run(cfg: &Config, cmd: LedgerCmd) -> CliResult {
    let LedgerCmd::Verify { from } = cmd;
    if let Some(d) = &from {
        if d.len() != 8 || Cal::new(cfg.clock().tz()).day_start(d).is_none() {
            return Err(Failed(format!("--from must be a day as yyyyMMdd, not {d:?}")));
        }
    }
    let store = open_store(cfg)?;
    let v = ledger::verify(&store, from.as_deref())?;
    if let Some(b) = v.broken {
        return Err(Failed(format!("ledger broken: {b} ({} charges verified before it)", v.checked)));
    }
    let since = from.map(|d| format!(" from {d}")).unwrap_or_default();
    let unchained = if v.unchained > 0 { format!("; {} earlier charges are not chained (written before schema version 7)", v.unchained) } else { String::new() };
    println!("ledger ok: {} charges{since} chained, {} day heads match{unchained}", v.checked, v.heads);
    Ok(())
}
