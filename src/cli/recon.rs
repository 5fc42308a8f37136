//! `vnetd recon export --sp SPID --date yyyyMMdd [--out FILE]`: the day's reconciliation detail
//! for operators (spec 11 "CLI formats"): a header line `#<SPID>|<LedgerDate>|<TotalCount>|<TotalFee>`,
//! then one line per charge `TransactionID|VNetUserID|ServiceID|ServiceItemID|FeeType|Fee|ChargeTime`,
//! ordered by ChargeTime then TransactionID (as ReconDetail).

use super::{open_store, CliResult, Failed};
use crate::config::Config;
use crate::domain::billing as bl;
use crate::domain::calendar::Cal;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ReconCmd {
    /// Write one SP's charges of one LedgerDate
    Export {
        /// The SP (8 digits)
        #[arg(long)]
        sp: String,
        /// The LedgerDate, yyyyMMdd
        #[arg(long)]
        date: String,
        /// Write here (atomically) instead of standard output
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Rows fetched per query while exporting.
const PAGE: i64 = 10_000;

pub fn run(cfg: &Config, cmd: ReconCmd) -> CliResult {
    let ReconCmd::Export { sp, date, out } = cmd;
    if sp.len() != 8 || !sp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failed(format!("--sp must be 8 digits, not {sp:?}")));
    }
    let cal = Cal::new(cfg.clock().tz());
    if date.len() != 8 || cal.day_start(&date).is_none() {
        return Err(Failed(format!("--date must be a day as yyyyMMdd, not {date:?}")));
    }
    let store = open_store(cfg)?;
    let (count, total) = store.read(|c| bl::day_totals(c, &sp, &date))?;
    if !store.read(|c| bl::day_closed(c, &date))? {
        eprintln!("note: {date} is not closed yet; its charges may still change");
    }
    // The ledger's chain head at the day's close, for safekeeping outside the node (stderr:
    // the export's format is fixed by spec 11).
    match store.read(|c| crate::store::ledger::head(c, &date))? {
        Some((id, head)) if !head.is_empty() => eprintln!("ledger head at the close of {date}: {head} (charge {id})"),
        Some(_) => eprintln!("ledger head at the close of {date}: none (no chained charge yet)"),
        None => {}
    }
    match out {
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            write_detail(&store, cal, &sp, &date, (count, total), &mut w)?;
            w.flush()?;
        }
        Some(path) => {
            // Written beside the target and renamed: a reader never sees half a file.
            let tmp = path.with_extension("tmp");
            let write = || -> Result<(), Failed> {
                let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
                write_detail(&store, cal, &sp, &date, (count, total), &mut w)?;
                w.into_inner().map_err(|e| Failed(e.to_string()))?.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                Ok(())
            };
            write().map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Failed(format!("cannot write {}: {}", path.display(), e.0))
            })?;
            eprintln!("wrote {count} charges ({total} fen) to {}", path.display());
        }
    }
    Ok(())
}

fn write_detail(store: &crate::store::Store, cal: Cal, sp: &str, date: &str, (count, total): (i64, i64), w: &mut dyn Write) -> Result<(), Failed> {
    writeln!(w, "#{sp}|{date}|{count}|{total}")?;
    let mut offset = 0;
    loop {
        let lines = store.read(|c| bl::day_detail(c, sp, date, offset, PAGE))?;
        for (txid, user, service, item, fee_type, fee, at) in &lines {
            writeln!(w, "{txid}|{user}|{service}|{item}|{fee_type}|{fee}|{}", cal.ts(*at))?;
        }
        offset += lines.len() as i64;
        if (lines.len() as i64) < PAGE {
            return Ok(());
        }
    }
}
