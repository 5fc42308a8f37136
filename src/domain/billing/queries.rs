//! The read side: ChargeQuery, OrderQuery, BillQuery, Reconcile and ReconDetail.

use super::*;

/// What ChargeQuery answers: VNetUserID, ServiceID, ServiceItemID, Fee, ChargeTime (unix).
pub type FoundCharge = (String, String, String, i64, i64);

/// An SP's charge by TransactionID (ChargeQuery).
pub fn find_charge(conn: &Read, spid: &str, txid: &str) -> DbResult<Option<FoundCharge>> {
    let mut st = conn.prepare_cached(
        "SELECT vnet_user_id, service_id, service_item_id, fee, charge_at FROM charge WHERE spid = ?1 AND transaction_id = ?2",
    )?;
    Ok(st.query_row(params![spid, txid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).optional()?)
}

/// A user's orders, newest period first, optionally only one SP's and one service's.
pub fn user_orders(conn: &Read, user_id: &str, spid: Option<&str>, service_id: Option<&str>) -> DbResult<Vec<OrderRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE vnet_user_id = ?1 AND (?2 IS NULL OR spid = ?2) AND (?3 IS NULL OR service_id = ?3)
         ORDER BY start_at DESC, created_at DESC, order_id DESC"
    ))?;
    let rows = st.query_map(params![user_id, spid, service_id], order_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One BillQuery line.
#[derive(Debug, Clone, PartialEq)]
pub struct BillLine {
    pub spid: String,
    pub service_id: String,
    pub service_item_id: String,
    pub service_item_name: String,
    pub fee_type: String,
    pub count: i64,
    pub fee: i64,
}

/// A user's charges of a bill month, grouped by item (BillQuery).
pub fn bill(conn: &Read, user_id: &str, bill_month: &str) -> DbResult<Vec<BillLine>> {
    let mut st = conn.prepare_cached(
        "SELECT spid, service_id, service_item_id, service_item_name, fee_type, sum(batch_count), sum(fee) FROM charge
         WHERE vnet_user_id = ?1 AND bill_month = ?2
         GROUP BY spid, service_id, service_item_id, product_id, fee_type
         ORDER BY spid, service_id, service_item_id, product_id",
    )?;
    let rows = st.query_map(params![user_id, bill_month], |r| {
        Ok(BillLine {
            spid: r.get(0)?,
            service_id: r.get(1)?,
            service_item_id: r.get(2)?,
            service_item_name: r.get(3)?,
            fee_type: r.get(4)?,
            count: r.get(5)?,
            fee: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Count and total fee of an SP's charges of a LedgerDate.
pub fn day_totals(conn: &Read, spid: &str, date8: &str) -> DbResult<(i64, i64)> {
    let mut st = conn.prepare_cached("SELECT count(*), coalesce(sum(fee), 0) FROM charge WHERE spid = ?1 AND ledger_date = ?2")?;
    Ok(st.query_row(params![spid, date8], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// One reconciliation detail line: TransactionID, VNetUserID, ServiceID, ServiceItemID, FeeType,
/// Fee, ChargeTime (unix).
pub type DetailLine = (String, String, String, String, String, i64, i64);

/// An SP's charges of a LedgerDate ordered by ChargeTime then TransactionID, `limit` from `offset`.
pub fn day_detail(conn: &Read, spid: &str, date8: &str, offset: i64, limit: i64) -> DbResult<Vec<DetailLine>> {
    let mut st = conn.prepare_cached(
        "SELECT transaction_id, vnet_user_id, service_id, service_item_id, fee_type, fee, charge_at FROM charge
         WHERE spid = ?1 AND ledger_date = ?2 ORDER BY charge_at, transaction_id LIMIT ?3 OFFSET ?4",
    )?;
    let rows = st.query_map(params![spid, date8, limit, offset], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
