//! Idempotency records (spec 2.7, 11): the stored answer of a state-changing request by
//! (caller, operation, TransactionID), with the fingerprint of its fields.

use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension};

/// The stored (fingerprint, response JSON) of a request, if any.
pub fn stored(tx: &Read, caller: &str, operation: &str, txid: &str) -> DbResult<Option<(String, String)>> {
    let conn = tx.conn();
    Ok(conn
        .prepare_cached("SELECT fingerprint, response FROM idempotency WHERE caller = ?1 AND operation = ?2 AND txid = ?3")?
        .query_row(params![caller, operation, txid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Store the answer of a request whose effect commits in the same transaction.
pub fn store(tx: &Write, caller: &str, operation: &str, txid: &str, fingerprint: &str, response: &str, now: i64) -> DbResult<()> {
    let conn = tx.conn();
    conn.prepare_cached("INSERT INTO idempotency(caller, operation, txid, fingerprint, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(params![caller, operation, txid, fingerprint, response, now])?;
    Ok(())
}

/// Delete up to `limit` records older than `cutoff` (housekeeping, 7.5). Returns how many.
pub fn prune(tx: &Write, cutoff: i64, limit: i64) -> DbResult<usize> {
    let conn = tx.conn();
    Ok(conn
        .prepare_cached("DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency WHERE created_at < ?1 LIMIT ?2)")?
        .execute(params![cutoff, limit])?)
}
