//! The `charge` and `spend` tables: charges (spec 4.1 Charge, OfflineCharge, 6.5, 6.9) and the
//! postpaid month totals (spec 11 "Credit").

use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension};

/// One charge record.
#[derive(Debug, Clone, Default)]
pub struct NewCharge {
    pub spid: String,
    pub transaction_id: String,
    pub operation: &'static str,
    pub vnet_user_id: String,
    pub user_province_id: String,
    pub service_id: String,
    pub service_item_id: String,
    pub service_item_name: String,
    pub product_id: String,
    pub fee_type: String,
    pub fee: i64,
    pub batch_count: i64,
    pub charge_at: i64,
    pub ledger_date: String,
    pub bill_month: String,
    pub roam_type: String,
    pub order_id: String,
}

/// Is a charge TransactionID of this SP already used (by any operation or channel)?
pub fn txid_taken(tx: &Read, spid: &str, txid: &str) -> DbResult<bool> {
    let mut st = tx.conn().prepare_cached("SELECT EXISTS(SELECT 1 FROM charge WHERE spid = ?1 AND transaction_id = ?2)")?;
    Ok(st.query_row(params![spid, txid], |r| r.get(0))?)
}

/// Inserts `c` as the next link of the ledger chain (`store::ledger`).
pub fn insert(tx: &Write, c: &NewCharge) -> DbResult<()> {
    let link = super::ledger::link(&super::ledger::last_link(tx)?, &super::ledger::canonical(c));
    tx.conn()
        .prepare_cached(
            "INSERT INTO charge(spid, transaction_id, operation, vnet_user_id, user_province_id, service_id, service_item_id,
                 service_item_name, product_id, fee_type, fee, batch_count, charge_at, ledger_date, bill_month, roam_type, order_id, link)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?
        .execute(params![
            c.spid,
            c.transaction_id,
            c.operation,
            c.vnet_user_id,
            c.user_province_id,
            c.service_id,
            c.service_item_id,
            c.service_item_name,
            c.product_id,
            c.fee_type,
            c.fee,
            c.batch_count,
            c.charge_at,
            c.ledger_date,
            c.bill_month,
            c.roam_type,
            c.order_id,
            link
        ])?;
    Ok(())
}

/// A user's total of a bill month so far (0 without charges).
pub fn month_spend(tx: &Read, user_id: &str, bill_month: &str) -> DbResult<i64> {
    Ok(tx
        .conn()
        .prepare_cached("SELECT total FROM spend WHERE vnet_user_id = ?1 AND bill_month = ?2")?
        .query_row(params![user_id, bill_month], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Add `fee` to a user's total of a bill month.
pub fn add_spend(tx: &Write, user_id: &str, bill_month: &str, fee: i64) -> DbResult<()> {
    tx.conn()
        .prepare_cached(
            "INSERT INTO spend(vnet_user_id, bill_month, total) VALUES (?1, ?2, ?3)
         ON CONFLICT(vnet_user_id, bill_month) DO UPDATE SET total = total + ?3",
        )?
        .execute(params![user_id, bill_month, fee])?;
    Ok(())
}

/// Has the user a monthly charge (FeeType 2) of the item, or of a package holding it, for
/// `bill_month`?
pub fn monthly_paid(tx: &Read, user_id: &str, item_id: &str, bill_month: &str) -> DbResult<bool> {
    let holding = super::orders::HOLDING;
    Ok(tx
        .conn()
        .prepare_cached(&format!(
            "SELECT EXISTS(SELECT 1 FROM charge WHERE vnet_user_id = ?1 AND bill_month = ?3 AND fee_type = '2' AND {holding})"
        ))?
        .query_row(params![user_id, item_id, bill_month], |r| r.get(0))?)
}

/// What ChargeQuery answers: VNetUserID, ServiceID, ServiceItemID, Fee, ChargeTime (unix).
pub type FoundCharge = (String, String, String, i64, i64);

/// An SP's charge by TransactionID (ChargeQuery).
pub fn find(tx: &Read, spid: &str, txid: &str) -> DbResult<Option<FoundCharge>> {
    let mut st = tx.conn().prepare_cached(
        "SELECT vnet_user_id, service_id, service_item_id, fee, charge_at FROM charge WHERE spid = ?1 AND transaction_id = ?2",
    )?;
    Ok(st.query_row(params![spid, txid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).optional()?)
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
pub fn bill(tx: &Read, user_id: &str, bill_month: &str) -> DbResult<Vec<BillLine>> {
    let mut st = tx.conn().prepare_cached(
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
pub fn day_totals(tx: &Read, spid: &str, date8: &str) -> DbResult<(i64, i64)> {
    let mut st = tx.conn().prepare_cached("SELECT count(*), coalesce(sum(fee), 0) FROM charge WHERE spid = ?1 AND ledger_date = ?2")?;
    Ok(st.query_row(params![spid, date8], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// One reconciliation detail line: TransactionID, VNetUserID, ServiceID, ServiceItemID, FeeType,
/// Fee, ChargeTime (unix).
pub type DetailLine = (String, String, String, String, String, i64, i64);

/// An SP's charges of a LedgerDate ordered by ChargeTime then TransactionID, `limit` from `offset`.
pub fn day_detail(tx: &Read, spid: &str, date8: &str, offset: i64, limit: i64) -> DbResult<Vec<DetailLine>> {
    let mut st = tx.conn().prepare_cached(
        "SELECT transaction_id, vnet_user_id, service_id, service_item_id, fee_type, fee, charge_at FROM charge
         WHERE spid = ?1 AND ledger_date = ?2 ORDER BY charge_at, transaction_id LIMIT ?3 OFFSET ?4",
    )?;
    let rows = st.query_map(params![spid, date8, limit, offset], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The day's SETTLE totals (spec 6.5): per SPID, item and RoamType of the charges of `date8` that
/// involve another province or the centre: SPID, SPProvinceID (`own` for a local SP), ServiceID,
/// ServiceItemID, ServiceItemName, RoamType, TotalCount, TotalFee, ProductID.
pub fn settle_totals(tx: &Read, date8: &str, own: &str) -> DbResult<Vec<[String; 9]>> {
    Ok(tx
        .conn()
        .prepare(
            "SELECT c.spid, coalesce(nullif(sp.province_id, ''), ?2), c.service_id, c.service_item_id, c.service_item_name,
                    c.roam_type, count(*), sum(c.fee), c.product_id
             FROM charge c LEFT JOIN sp ON sp.spid = c.spid
             WHERE c.ledger_date = ?1 AND c.roam_type <> ''
             GROUP BY c.spid, c.service_id, c.service_item_id, c.product_id, c.roam_type
             ORDER BY c.spid, c.service_id, c.service_item_id, c.product_id, c.roam_type",
        )?
        .query_map(params![date8, own], |r| {
            Ok([
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get::<_, i64>(6)?.to_string(),
                r.get::<_, i64>(7)?.to_string(),
                r.get(8)?,
            ])
        })?
        .collect::<Result<_, _>>()?)
}
