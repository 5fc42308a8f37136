//! The periodic work: monthly rollover (7.2), day close (7.3) and the job markers.

use super::*;

/// Orders handled per transaction by the rollover.
pub const ROLLOVER_CHUNK: usize = 500;

/// What one rollover chunk did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rolled {
    pub renewed: usize,
    pub expired: usize,
}

/// Roll up to `limit` orders over into `month`: every active order whose period ended before the
/// month starts is renewed (IfExtend 1, user 00, item/package and service active, credit) or
/// expires. A processed order no longer matches, so repeating after an interruption does each
/// order once. Returns what was done; zero of both means the month is complete.
pub fn rollover_chunk(ctx: &WriteCtx, month: Ym, limit: usize) -> DbResult<Rolled> {
    let start = ctx.cal.month_start(month);
    let end = ctx.cal.month_end(month);
    let orders = order_db::due_for_rollover(ctx.tx, start, limit)?;
    let mut done = Rolled::default();
    for mut o in orders {
        let req = Req {
            kind: Kind::Order,
            channel: Channel::System,
            spid: o.spid.clone(),
            service_id: o.service_id.clone(),
            item_id: Some(o.service_item_id.clone()).filter(|s| !s.is_empty()),
            product_id: Some(o.product_id.clone()).filter(|s| !s.is_empty()),
            user_id: o.vnet_user_id.clone(),
        };
        // The ordinary use rules decide whether the order may continue (user 00, active
        // catalogue entries, roaming approval); then credit.
        let target = resolve(ctx, &req)?.ok().filter(|t| t.user.is_some());
        let renewed = match (o.if_extend, target) {
            (true, Some(t)) => {
                let user = t.user.as_ref().expect("local user");
                let mut next = o.clone();
                next.start_at = start;
                next.end_at = end;
                next.usable_until = end;
                let txid = format!("RN{}{}", o.order_id, month);
                let c = monthly_charge(ctx, &t, user, &next, &txid, "Renewal", start);
                if !txid_taken(ctx.tx, &c.spid, &txid)? && charge_user(ctx, &c)?.is_ok() {
                    save_order(ctx.tx, &next, ctx.now)?;
                    order_event(ctx, &next, t.name(), action::RENEWED, Channel::System)?;
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        if renewed {
            done.renewed += 1;
        } else {
            o.status = "expired".into();
            save_order(ctx.tx, &o, ctx.now)?;
            let name = order_name(ctx.tx, &o)?;
            order_event(ctx, &o, &name, action::EXPIRED, Channel::System)?;
            done.expired += 1;
        }
    }
    Ok(done)
}


/// Close `date8`: SETTLE records (totals per SPID, item and RoamType of the day's charges that
/// involve another province or the centre) and the closed marker, in the caller's transaction.
/// Returns the number of SETTLE records.
pub fn close_day(ctx: &WriteCtx, date8: &str) -> DbResult<usize> {
    let rows = charge_db::settle_totals(ctx.tx, date8, ctx.province)?;
    for r in &rows {
        let seq = next_counter(ctx.tx, "seq:SETTLE")?;
        let record = outbound::SettleRecord {
            RecordSeq: seq.to_string(),
            LedgerDate: date8.to_string(),
            SPID: r[0].clone(),
            SPProvinceID: r[1].clone(),
            ServiceID: r[2].clone(),
            ServiceItemID: r[3].clone(),
            ServiceItemName: r[4].clone(),
            RoamType: r[5].clone(),
            TotalCount: r[6].clone(),
            TotalFee: r[7].clone(),
        };
        outbox::enqueue_record(ctx.tx, &outbound::SETTLE_RECORD, &record.values(), ctx.now)?;
    }
    // The ledger chain's head at this close (tamper evidence: `recon export` prints it).
    crate::store::ledger::record_head(ctx.tx, date8, ctx.now)?;
    set_job_state(ctx.tx, CLOSED_THROUGH, date8)?;
    Ok(rows.len())
}

pub const ROLLED_OVER_MONTH: &str = "rolled_over_month";
pub const CLOSED_THROUGH: &str = "closed_through";

pub use crate::store::job_state::{get as job_state, set as set_job_state};

/// Is `date8` closed (Reconcile answers -22003 until then)?
pub fn day_closed(conn: &Read, date8: &str) -> DbResult<bool> {
    Ok(job_state(conn, CLOSED_THROUGH)?.is_some_and(|c| date8 <= c.as_str()))
}
