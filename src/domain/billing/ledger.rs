//! Verifying the charge ledger's hash chain (`store::ledger`): `vnetd ledger verify`.

use crate::store::ledger::{self, GENESIS};
use crate::store::{DbResult, Store};
use std::collections::HashMap;

/// Rows read per transaction while verifying.
const PAGE: i64 = 10_000;

/// What a verification found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Chained charges whose link was recomputed and matched.
    pub checked: u64,
    /// Charges before the chain began (written before schema version 7).
    pub unchained: u64,
    /// Day heads that matched the recomputed chain.
    pub heads: u64,
    /// The first break, in words; None: the chain holds.
    pub broken: Option<String>,
}

/// Recomputes the chain from the first charge of `from` (yyyyMMdd; None: from the first charge)
/// and compares every link and every stored day head from then on.
pub fn verify(store: &Store, from: Option<&str>) -> DbResult<Verdict> {
    let mut v = Verdict::default();
    let (mut after, mut prev) = match from {
        None => (0, GENESIS.to_string()),
        Some(d) => match store.read(|tx| ledger::start_at(tx, d))? {
            Some(x) => x,
            None => (i64::MAX, GENESIS.to_string()),
        },
    };
    let heads = store.read(|tx| ledger::heads_from(tx, from.unwrap_or("")))?;
    let by_last: HashMap<i64, (&str, &str)> = heads.iter().map(|(d, id, h)| (*id, (d.as_str(), h.as_str()))).collect();
    let mut chained = false;
    let mut matched = std::collections::HashSet::new();
    'pages: while after < i64::MAX {
        let rows = store.read(|tx| ledger::rows_after(tx, after, PAGE))?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let what = || format!("charge {} (SPID {}, TransactionID {}, LedgerDate {})", row.id, row.charge.spid, row.charge.transaction_id, row.charge.ledger_date);
            if row.link.is_empty() {
                if chained {
                    v.broken = Some(format!("{} has no link, after chained charges: its link was removed", what()));
                    break 'pages;
                }
                v.unchained += 1;
                prev = GENESIS.to_string();
            } else {
                chained = true;
                if ledger::link(&prev, &ledger::canonical_with(&row.charge, &row.operation)) != row.link {
                    v.broken = Some(format!(
                        "{}: its link does not follow from the charge before it (this row was changed, or a row before it was deleted, inserted or moved)",
                        what()
                    ));
                    break 'pages;
                }
                v.checked += 1;
                prev = row.link.clone();
            }
            if let Some((date, head)) = by_last.get(&row.id) {
                if *head != row.link {
                    v.broken = Some(format!("the head stored at the close of {date} does not match {}: the chain was rewritten after the close", what()));
                    break 'pages;
                }
                v.heads += 1;
                matched.insert(row.id);
            }
            after = row.id;
        }
    }
    if v.broken.is_none() {
        // A day head whose charge was never walked: that charge (the last of the day) is gone.
        if let Some((date, id, _)) = heads.iter().find(|(_, id, _)| *id > 0 && !matched.contains(id)) {
            v.broken = Some(format!("the close of {date} ended at charge {id}, which is gone: charges were deleted"));
        }
    }
    Ok(v)
}
