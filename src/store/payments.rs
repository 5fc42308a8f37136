//! Browser payments by the SP's OrderID (spec 5.3, 4.1 PaymentQuery, 6.9): the `payment` table.

use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension};

/// A browser payment by the SP's OrderID.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub status: String,
    pub result: i32,
    pub transaction_id: String,
    pub fee: i64,
    pub pay_at: Option<i64>,
}

/// What a payment is for, as the PayRequest names it.
#[derive(Debug, Clone)]
pub struct PayFor {
    pub spid: String,
    pub order_id: String,
    pub service_id: String,
    pub item_id: String,
    pub fee: i64,
}

pub fn payment(tx: &Read, spid: &str, order_id: &str) -> DbResult<Option<Payment>> {
    Ok(tx
        .conn()
        .prepare_cached("SELECT status, result, transaction_id, fee, pay_at FROM payment WHERE spid = ?1 AND order_id = ?2")?
        .query_row(params![spid, order_id], |r| {
            Ok(Payment { status: r.get(0)?, result: r.get(1)?, transaction_id: r.get(2)?, fee: r.get(3)?, pay_at: r.get(4)? })
        })
        .optional()?)
}

/// Note a payment page shown (PaymentStatus 1) unless the OrderID is known already.
pub fn note_pending(tx: &Write, p: &PayFor, now: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached(
            "INSERT OR IGNORE INTO payment(spid, order_id, status, service_id, service_item_id, fee, created_at, updated_at)
         VALUES (?1, ?2, '1', ?3, ?4, ?5, ?6, ?6)",
        )?
        .execute(params![p.spid, p.order_id, p.service_id, p.item_id, p.fee, now])?;
    Ok(())
}

/// Record the outcome of a payment attempt (paid, cancelled or failed). A paid OrderID is never
/// overwritten: the caller checks `payment` first in the same transaction.
pub fn record_outcome(tx: &Write, p: &PayFor, user: &str, status: &str, result: i32, txid: &str, now: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached(
            "INSERT INTO payment(spid, order_id, status, result, transaction_id, service_id, service_item_id, fee, vnet_user_id,
                             pay_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)
         ON CONFLICT(spid, order_id) DO UPDATE SET status = excluded.status, result = excluded.result,
             transaction_id = excluded.transaction_id, service_id = excluded.service_id,
             service_item_id = excluded.service_item_id, fee = excluded.fee, vnet_user_id = excluded.vnet_user_id,
             pay_at = excluded.pay_at, updated_at = excluded.updated_at
         WHERE payment.status <> '0'",
        )?
        .execute(params![p.spid, p.order_id, status, result, txid, p.service_id, p.item_id, p.fee, user, now])?;
    Ok(())
}

/// The attempt through the centre a payment holds: its TransactionID ('' none) and start (0 none).
pub fn attempt(tx: &Read, spid: &str, order_id: &str) -> DbResult<Option<(String, i64)>> {
    Ok(tx
        .conn()
        .prepare_cached("SELECT attempt_txid, attempt_at FROM payment WHERE spid = ?1 AND order_id = ?2")?
        .query_row(params![spid, order_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Start an attempt under `txid` (the payment is pending, PaymentStatus 1).
pub fn start_attempt(tx: &Write, p: &PayFor, user: &str, txid: &str, now: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached(
            "INSERT INTO payment(spid, order_id, status, service_id, service_item_id, fee, vnet_user_id, attempt_txid, attempt_at,
                             created_at, updated_at)
         VALUES (?1, ?2, '1', ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8)
         ON CONFLICT(spid, order_id) DO UPDATE SET status = '1', vnet_user_id = excluded.vnet_user_id,
             attempt_txid = excluded.attempt_txid, attempt_at = excluded.attempt_at, updated_at = excluded.updated_at",
        )?
        .execute(params![p.spid, p.order_id, p.service_id, p.item_id, p.fee, user, txid, now])?;
    Ok(())
}

/// End the attempt; its TransactionID is kept for the next try when `keep_txid`.
pub fn end_attempt(tx: &Write, spid: &str, order_id: &str, keep_txid: bool) -> DbResult<()> {
    tx.conn()
        .prepare_cached(
            "UPDATE payment SET attempt_at = 0, attempt_txid = CASE WHEN ?3 THEN attempt_txid ELSE '' END WHERE spid = ?1 AND order_id = ?2",
        )?
        .execute(params![spid, order_id, keep_txid])?;
    Ok(())
}
