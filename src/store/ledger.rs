//! The charge ledger's hash chain (tamper evidence): every charge row carries `link`, the hex
//! SHA-256 of the previous row's link followed by the row's canonical content; each day close
//! stores the chain head then (`ledger_head`). Editing, deleting or reordering rows breaks the
//! chain at the first row touched, and rewriting the whole chain from there on changes the day
//! heads already exported (`recon export` prints them).
//!
//! Canonical content: every column of the row but `id` and `link`, in table order, each as its
//! length in bytes, `:` and the value (integers in decimal), so no value can be confused with
//! its neighbours. The chain is in `id` order; rows written before schema version 7 have an
//! empty link and are outside it (the first chained row follows [`GENESIS`]).

use super::charges::NewCharge;
use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

/// The link before the first chained row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical content of a charge (see the module comment).
pub fn canonical(c: &NewCharge) -> Vec<u8> {
    canonical_with(c, c.operation)
}

/// As `canonical`, with the operation given apart (a row read back holds it as a String).
pub fn canonical_with(c: &NewCharge, operation: &str) -> Vec<u8> {
    let texts = [
        c.spid.as_str(),
        c.transaction_id.as_str(),
        operation,
        c.vnet_user_id.as_str(),
        c.user_province_id.as_str(),
        c.service_id.as_str(),
        c.service_item_id.as_str(),
        c.service_item_name.as_str(),
        c.product_id.as_str(),
        c.fee_type.as_str(),
    ];
    let numbers = [c.fee.to_string(), c.batch_count.to_string(), c.charge_at.to_string()];
    let tail = [c.ledger_date.as_str(), c.bill_month.as_str(), c.roam_type.as_str(), c.order_id.as_str()];
    let mut out = Vec::with_capacity(256);
    for v in texts.iter().copied().chain(numbers.iter().map(String::as_str)).chain(tail) {
        out.extend_from_slice(v.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// The link of a row whose predecessor's link is `prev`.
pub fn link(prev: &str, content: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(content);
    h.finalize().iter().fold(String::with_capacity(64), |mut out, b| {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        out
    })
}

/// The link the next charge row follows: the last row's, or GENESIS.
pub fn last_link(tx: &Read) -> DbResult<String> {
    let last: Option<String> = tx.conn().prepare_cached("SELECT link FROM charge ORDER BY id DESC LIMIT 1")?.query_row([], |r| r.get(0)).optional()?;
    Ok(last.filter(|l| !l.is_empty()).unwrap_or_else(|| GENESIS.to_string()))
}

/// Stores the chain head at the close of `date8`: the last charge row's id and link.
pub fn record_head(tx: &Write, date8: &str, now: i64) -> DbResult<()> {
    let last: Option<(i64, String)> =
        tx.conn().prepare_cached("SELECT id, link FROM charge ORDER BY id DESC LIMIT 1")?.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    let (id, head) = last.unwrap_or((0, String::new()));
    tx.conn()
        .prepare_cached("INSERT OR REPLACE INTO ledger_head(ledger_date, last_id, head, closed_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![date8, id, head, now])?;
    Ok(())
}

/// The head stored at the close of `date8`: (last charge id, link), if the day was closed.
pub fn head(tx: &Read, date8: &str) -> DbResult<Option<(i64, String)>> {
    Ok(tx
        .conn()
        .prepare_cached("SELECT last_id, head FROM ledger_head WHERE ledger_date = ?1")?
        .query_row([date8], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// A charge row as the chain sees it.
pub struct ChainRow {
    pub id: i64,
    /// Every column but the operation, which is `operation`.
    pub charge: NewCharge,
    pub operation: String,
    pub link: String,
}

/// Up to `limit` rows with id > `after`, in id order.
pub fn rows_after(tx: &Read, after: i64, limit: i64) -> DbResult<Vec<ChainRow>> {
    let mut st = tx.conn().prepare_cached(
        "SELECT id, spid, transaction_id, operation, vnet_user_id, user_province_id, service_id, service_item_id, service_item_name,
                product_id, fee_type, fee, batch_count, charge_at, ledger_date, bill_month, roam_type, order_id, link
         FROM charge WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = st.query_map(params![after, limit], |r| {
        Ok(ChainRow {
            id: r.get(0)?,
            operation: r.get(3)?,
            charge: NewCharge {
                spid: r.get(1)?,
                transaction_id: r.get(2)?,
                operation: "",
                vnet_user_id: r.get(4)?,
                user_province_id: r.get(5)?,
                service_id: r.get(6)?,
                service_item_id: r.get(7)?,
                service_item_name: r.get(8)?,
                product_id: r.get(9)?,
                fee_type: r.get(10)?,
                fee: r.get(11)?,
                batch_count: r.get(12)?,
                charge_at: r.get(13)?,
                ledger_date: r.get(14)?,
                bill_month: r.get(15)?,
                roam_type: r.get(16)?,
                order_id: r.get(17)?,
            },
            link: r.get(18)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The id of the first charge row of `date8` or a later day (None: none), and the link of the
/// row before it (GENESIS when none or unchained).
pub fn start_at(tx: &Read, date8: &str) -> DbResult<Option<(i64, String)>> {
    let first: Option<i64> =
        tx.conn().prepare_cached("SELECT min(id) FROM charge WHERE ledger_date >= ?1")?.query_row([date8], |r| r.get(0))?;
    let Some(first) = first else { return Ok(None) };
    let prev: Option<String> =
        tx.conn().prepare_cached("SELECT link FROM charge WHERE id < ?1 ORDER BY id DESC LIMIT 1")?.query_row([first], |r| r.get(0)).optional()?;
    Ok(Some((first - 1, prev.filter(|l| !l.is_empty()).unwrap_or_else(|| GENESIS.to_string()))))
}

/// Every stored day head from `date8` on: (date, last id, head).
pub fn heads_from(tx: &Read, date8: &str) -> DbResult<Vec<(String, i64, String)>> {
    let mut st = tx.conn().prepare_cached("SELECT ledger_date, last_id, head FROM ledger_head WHERE ledger_date >= ?1 ORDER BY ledger_date")?;
    let rows = st.query_map([date8], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NewCharge {
        NewCharge {
            spid: "35000001".into(),
            transaction_id: "T1".into(),
            operation: "Charge",
            vnet_user_id: "350000000001".into(),
            user_province_id: "35".into(),
            service_id: "3500000100000001".into(),
            service_item_id: "3500000100000101".into(),
            service_item_name: "item".into(),
            product_id: String::new(),
            fee_type: "1".into(),
            fee: 200,
            batch_count: 1,
            charge_at: 1_700_000_000,
            ledger_date: "20231114".into(),
            bill_month: "202311".into(),
            roam_type: String::new(),
            order_id: String::new(),
        }
    }

    #[test]
    fn the_link_is_sha256_of_the_previous_link_and_length_prefixed_fields() {
        // Computed independently: Python's hashlib over the same bytes.
        let l = link(GENESIS, &canonical(&sample()));
        assert_eq!(l, "97854f3fe37477fd0a0bcf450583b320244932b9470a7618e202b692941b96a2");
        assert_ne!(link(&l, &canonical(&sample())), l, "the same content later in the chain links differently");
    }

    #[test]
    fn values_cannot_run_into_their_neighbours() {
        let (mut a, mut b) = (sample(), sample());
        (a.service_item_name, a.product_id) = ("ab".into(), "c".into());
        (b.service_item_name, b.product_id) = ("a".into(), "bc".into());
        assert_ne!(canonical(&a), canonical(&b));
        assert_eq!(canonical_with(&NewCharge { operation: "", ..sample() }, "Charge"), canonical(&sample()));
    }
}
