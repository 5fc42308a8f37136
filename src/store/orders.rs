//! The `orders` table (spec 4.1, 7.2; docs/billing.md).

use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub order_id: String,
    pub vnet_user_id: String,
    pub spid: String,
    pub service_id: String,
    pub service_item_id: String,
    pub product_id: String,
    pub contract_id: String,
    pub if_extend: bool,
    pub status: String,
    pub start_at: i64,
    pub end_at: i64,
    pub usable_until: i64,
    pub channel: String,
}

const ORDER_COLUMNS: &str =
    "order_id, vnet_user_id, spid, service_id, service_item_id, product_id, contract_id, if_extend, status, start_at, end_at, usable_until, channel";

fn from_row(r: &Row) -> rusqlite::Result<OrderRow> {
    Ok(OrderRow {
        order_id: r.get(0)?,
        vnet_user_id: r.get(1)?,
        spid: r.get(2)?,
        service_id: r.get(3)?,
        service_item_id: r.get(4)?,
        product_id: r.get(5)?,
        contract_id: r.get(6)?,
        if_extend: r.get(7)?,
        status: r.get(8)?,
        start_at: r.get(9)?,
        end_at: r.get(10)?,
        usable_until: r.get(11)?,
        channel: r.get(12)?,
    })
}

/// An order by its OrderID.
pub fn by_id(tx: &Read, order_id: &str) -> DbResult<Option<OrderRow>> {
    Ok(tx
        .conn()
        .query_row(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?1"), [order_id], from_row)
        .optional()?)
}

/// The user's latest order of an item or a package.
pub fn latest(tx: &Read, user_id: &str, item_id: &str, product_id: &str) -> DbResult<Option<OrderRow>> {
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE vnet_user_id = ?1 AND service_item_id = ?2 AND product_id = ?3
         ORDER BY created_at DESC, rowid DESC LIMIT 1"
    ))?;
    Ok(st.query_row(params![user_id, item_id, product_id], from_row).optional()?)
}

/// Insert or update an order.
pub fn save(tx: &Write, o: &OrderRow, now: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached(&format!(
            "INSERT INTO orders({ORDER_COLUMNS}, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)
         ON CONFLICT(order_id) DO UPDATE SET contract_id = ?7, if_extend = ?8, status = ?9, start_at = ?10, end_at = ?11,
             usable_until = ?12, updated_at = ?14"
        ))?
        .execute(params![
            o.order_id,
            o.vnet_user_id,
            o.spid,
            o.service_id,
            o.service_item_id,
            o.product_id,
            o.contract_id,
            o.if_extend,
            o.status,
            o.start_at,
            o.end_at,
            o.usable_until,
            o.channel,
            now
        ])?;
    Ok(())
}

/// The EndTime of the user's order in effect at `now` of an item or of a package holding it.
pub fn end_in_effect(tx: &Read, user_id: &str, item_id: &str, now: i64) -> DbResult<Option<i64>> {
    let mut st = tx.conn().prepare_cached(
        "SELECT max(usable_until), max(end_at) FROM orders WHERE vnet_user_id = ?1 AND status <> 'expired'
           AND start_at <= ?3 AND usable_until >= ?3
           AND (service_item_id = ?2 OR product_id IN (SELECT product_id FROM product_item WHERE service_item_id = ?2))",
    )?;
    Ok(st.query_row(params![user_id, item_id, now], |r| r.get(1))?)
}

/// The end of the last usable period of the user's orders of an item or of a package holding it
/// (None: never ordered).
pub fn last_usable_until(tx: &Read, user_id: &str, item_id: &str) -> DbResult<Option<i64>> {
    Ok(tx
        .conn()
        .prepare_cached(&format!("SELECT max(usable_until) FROM orders WHERE vnet_user_id = ?1 AND {HOLDING}"))?
        .query_row(params![user_id, item_id], |r| r.get(0))?)
}

/// `?2` is the item or a package holding it.
pub(super) const HOLDING: &str = "(service_item_id = ?2 OR product_id IN (SELECT product_id FROM product_item WHERE service_item_id = ?2))";

/// The user's orders not expired and usable at or after `now`, by OrderID.
pub fn in_effect_of_user(tx: &Read, user_id: &str, now: i64) -> DbResult<Vec<OrderRow>> {
    Ok(tx
        .conn()
        .prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE vnet_user_id = ?1 AND status <> 'expired' AND usable_until >= ?2 ORDER BY order_id"
        ))?
        .query_map(params![user_id, now], from_row)?
        .collect::<Result<_, _>>()?)
}

/// The rollover's chunk: in the order of the index `orders_rollover` (status, end_at, order_id),
/// so a chunk reads only its own rows however many orders are due (schema v8).
const DUE_FOR_ROLLOVER: &str = "WHERE status = 'active' AND end_at < ?1 ORDER BY end_at, order_id LIMIT ?2";

/// Up to `limit` active orders whose period ended before `start` (the rollover's next chunk).
pub fn due_for_rollover(tx: &Read, start: i64, limit: usize) -> DbResult<Vec<OrderRow>> {
    Ok(tx
        .conn()
        .prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders {DUE_FOR_ROLLOVER}"))?
        .query_map(params![start, limit as i64], from_row)?
        .collect::<Result<_, _>>()?)
}

/// A user's orders, newest period first, optionally only one SP's and one service's.
pub fn of_user(tx: &Read, user_id: &str, spid: Option<&str>, service_id: Option<&str>) -> DbResult<Vec<OrderRow>> {
    let mut st = tx.conn().prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE vnet_user_id = ?1 AND (?2 IS NULL OR spid = ?2) AND (?3 IS NULL OR service_id = ?3)
         ORDER BY start_at DESC, created_at DESC, order_id DESC"
    ))?;
    let rows = st.query_map(params![user_id, spid, service_id], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rollover's chunk query reads the due orders in index order: no sort of all of them per
    /// chunk (a rollover of N orders would read N²/1000 rows).
    #[test]
    fn the_rollover_chunk_needs_no_sort() {
        let db = crate::store::memory_db();
        let plan = crate::store::query_plan(&db, &format!("SELECT {ORDER_COLUMNS} FROM orders {DUE_FOR_ROLLOVER}"));
        assert!(plan.contains("INDEX orders_rollover"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
