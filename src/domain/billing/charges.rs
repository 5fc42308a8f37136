//! Charges and credit (spec 4.1 Charge, OfflineCharge; 6.5 CHARGE records; 11 "Credit").

use super::*;

pub use crate::store::charges::{txid_taken, NewCharge};

/// Check the user's credit for `fee` in `bill_month` and debit it (spec 11 "Credit"): postpaid,
/// the month's total plus the fee at most CreditLimit (`OverCreditLimit`); prepaid, balance minus
/// the fee at least 0 (`BalanceShort`).
pub fn debit(conn: &Write, user_id: &str, fee: i64, bill_month: &str) -> DbResult<Result<(), Error>> {
    let (user_type, limit, balance) = users::credit(conn, user_id)?;
    let spent = charge_db::month_spend(conn, user_id, bill_month)?;
    if user_type == "2" {
        if balance - fee < 0 {
            return Ok(Err(Error::BalanceShort));
        }
        if fee != 0 {
            users::debit_balance(conn, user_id, fee)?;
        }
    } else if spent + fee > limit {
        return Ok(Err(Error::OverCreditLimit));
    }
    charge_db::add_spend(conn, user_id, bill_month, fee)?;
    Ok(Ok(()))
}

/// Insert a charge and its CHARGE stream record (6.5).
pub fn record_charge(ctx: &WriteCtx, c: &NewCharge) -> DbResult<()> {
    insert_charge(ctx.tx, c)?;
    let seq = next_counter(ctx.tx, "seq:CHARGE")?;
    let record = outbound::ChargeRecord {
        RecordSeq: seq.to_string(),
        TransactionID: c.transaction_id.clone(),
        VNetUserID: c.vnet_user_id.clone(),
        UserProvinceID: c.user_province_id.clone(),
        SPID: c.spid.clone(),
        ServiceID: c.service_id.clone(),
        ServiceItemID: c.service_item_id.clone(),
        ServiceItemName: c.service_item_name.clone(),
        FeeType: c.fee_type.clone(),
        Fee: c.fee.to_string(),
        BatchCount: c.batch_count.to_string(),
        ChargeTime: ctx.cal.ts(c.charge_at),
        LedgerDate: c.ledger_date.clone(),
        RoamType: c.roam_type.clone(),
    };
    outbox::enqueue_record(ctx.tx, &outbound::CHARGE_RECORD, &record.values(), ctx.now)?;
    Ok(())
}

/// Insert a charge row only: a roaming usage (6.9) of another province's user, which that
/// province bills and reports; here it counts for Reconcile and the day's SETTLE.
pub fn insert_charge(tx: &Write, c: &NewCharge) -> DbResult<()> {
    charge_db::insert(tx, c)
}

/// The charge of one month of an order (Order, ReOrder, renewal).
#[allow(clippy::needless_update)] // deliberate: see the struct update below
pub(super) fn monthly_charge(ctx: &Ctx, t: &Target, user: &User, o: &OrderRow, txid: &str, operation: &'static str, at: i64) -> NewCharge {
    NewCharge {
        spid: t.svc.spid.clone(),
        transaction_id: txid.to_string(),
        operation,
        vnet_user_id: user.vnet_user_id.clone(),
        user_province_id: ctx.province.to_string(),
        service_id: o.service_id.clone(),
        service_item_id: t.item_id().to_string(),
        service_item_name: t.name().to_string(),
        product_id: t.product_id().to_string(),
        fee_type: "2".into(),
        fee: t.monthly_price(),
        batch_count: 1,
        charge_at: at,
        ledger_date: ctx.cal.date8(at),
        bill_month: ctx.cal.month(at).to_string(),
        roam_type: roam_type(&t.svc.sp_province, ctx.province).to_string(),
        order_id: o.order_id.clone(),
        // A field added for one operation keeps its default here.
        ..Default::default()
    }
}

/// Debit and record a charge; Err is the credit refusal.
pub(super) fn charge_user(ctx: &WriteCtx, c: &NewCharge) -> DbResult<Result<(), Error>> {
    if let Err(e) = debit(ctx.tx, &c.vnet_user_id, c.fee, &c.bill_month)? {
        return Ok(Err(e));
    }
    record_charge(ctx, c)?;
    Ok(Ok(()))
}


/// The charge of a use of an item now (Charge, OfflineCharge), billed to `bill_month`.
pub(super) fn item_charge(ctx: &Ctx, t: &Target, operation: &'static str, txid: &str, fee: i64, batch_count: i64, bill_month: Ym) -> NewCharge {
    let user = t.user.as_ref().expect("local user");
    let item = t.item.as_ref().expect("item");
    NewCharge {
        spid: t.svc.spid.clone(),
        transaction_id: txid.to_string(),
        operation,
        vnet_user_id: user.vnet_user_id.clone(),
        user_province_id: ctx.province.to_string(),
        service_id: t.svc.id.clone(),
        service_item_id: item.id.clone(),
        service_item_name: item.name.clone(),
        fee_type: item.fee_type.clone(),
        fee,
        batch_count,
        charge_at: ctx.now,
        ledger_date: ctx.cal.date8(ctx.now),
        bill_month: bill_month.to_string(),
        roam_type: roam_type(&t.svc.sp_province, ctx.province).to_string(),
        // No package, no order; a field added for one operation keeps its default here.
        ..Default::default()
    }
}

/// Charge (4.1): pay per use as the request asks (a /pay confirmation is one too). The caller
/// checked FeeType, Fee and the TransactionID.
pub fn charge(ctx: &WriteCtx, t: &Target, req: &crate::spec::incoming::Charge::Request) -> DbResult<Result<i64, Error>> {
    let c = item_charge(ctx, t, "Charge", &req.TransactionID, req.fee(), req.batch_count(), ctx.cal.month(ctx.now));
    Ok(charge_user(ctx, &c)?.map(|()| ctx.now))
}

/// OfflineCharge (4.1, 11) after the SP qualification, FeeType and Fee checks: order history
/// (`NeverOrdered`, `OfflinePeriodOver`), one monthly payment per BillMonth (`PeriodPaid`), credit.
pub fn offline_charge(ctx: &WriteCtx, t: &Target, fee: i64, bill_month: Ym, txid: &str) -> DbResult<Result<(), Error>> {
    let user = t.user.as_ref().expect("local user");
    let item = t.item.as_ref().expect("item");
    let last_end = order_db::last_usable_until(ctx.tx, &user.vnet_user_id, &item.id)?;
    let Some(last_end) = last_end else {
        return Ok(Err(Error::NeverOrdered));
    };
    if bill_month > ctx.cal.month(last_end).plus(2) {
        return Ok(Err(Error::OfflinePeriodOver));
    }
    let paid = charge_db::monthly_paid(ctx.tx, &user.vnet_user_id, &item.id, &bill_month.to_string())?;
    if paid {
        return Ok(Err(Error::PeriodPaid));
    }
    let c = item_charge(ctx, t, "OfflineCharge", txid, fee, 1, bill_month);
    charge_user(ctx, &c)
}
