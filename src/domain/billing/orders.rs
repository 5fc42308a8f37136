//! Orders (spec 4.1 Order, CancelOrder, ReOrder, ServiceAuth; 6.5 ORDER records; 6.8 OrderNotify).

use super::*;

pub use crate::store::orders::OrderRow;

impl OrderRow {
    /// Usable at `t`: not expired and inside its period (an immediate stop at s leaves
    /// `usable_until` = s − 1).
    pub fn in_effect(&self, t: i64) -> bool {
        self.status != "expired" && self.start_at <= t && t <= self.usable_until
    }
}

/// The user's latest order of an item or a package.
pub(super) fn latest_order(tx: &Read, user_id: &str, item_id: &str, product_id: &str) -> DbResult<Option<OrderRow>> {
    order_db::latest(tx, user_id, item_id, product_id)
}

pub(super) fn save_order(tx: &Write, o: &OrderRow, now: i64) -> DbResult<()> {
    order_db::save(tx, o, now)
}

pub(super) fn new_order_id(ctx: &WriteCtx) -> DbResult<String> {
    let n = next_counter(ctx.tx, "order_id")?;
    Ok(format!("{}{}{:010}", ctx.province, ctx.cal.date8(ctx.now), n))
}

/// Record an order event: the ORDER stream record (6.5) and, for events the SP did not cause, an
/// OrderNotify (6.8) to the SP when it is a peer with a URL.
pub fn order_event(ctx: &WriteCtx, o: &OrderRow, item_name: &str, action: &str, channel: Channel) -> DbResult<()> {
    let seq = next_counter(ctx.tx, "seq:ORDER")?;
    let (start, end) = (ctx.cal.ts(o.start_at), ctx.cal.ts(o.end_at));
    let record = outbound::OrderRecord {
        RecordSeq: seq.to_string(),
        OrderID: o.order_id.clone(),
        ActionType: action.to_string(),
        VNetUserID: o.vnet_user_id.clone(),
        SPID: o.spid.clone(),
        ServiceID: o.service_id.clone(),
        ServiceItemID: o.service_item_id.clone(),
        ServiceItemName: item_name.to_string(),
        ProductID: o.product_id.clone(),
        ContractID: o.contract_id.clone(),
        StartTime: start.clone(),
        EndTime: end.clone(),
        Channel: channel.as_str().to_string(),
        EventTime: ctx.cal.ts(ctx.now),
    };
    outbox::enqueue_record(ctx.tx, &outbound::ORDER_RECORD, &record.values(), ctx.now)?;
    if channel != Channel::Sp && peers::sp_has_url(ctx.tx, &o.spid)? {
        let notify = outbound::OrderNotify::Payload {
            SPID: o.spid.clone(),
            ProvinceID: ctx.province.to_string(),
            OrderID: o.order_id.clone(),
            ActionType: action.to_string(),
            VNetUserID: o.vnet_user_id.clone(),
            ServiceID: o.service_id.clone(),
            ServiceItemID: o.service_item_id.clone(),
            ProductID: o.product_id.clone(),
            StartTime: start,
            EndTime: end,
            Channel: channel.as_str().to_string(),
        };
        outbox::enqueue_op(ctx.tx, &outbound::ORDER_NOTIFY, &o.spid, &outbox::sp_key(&o.spid), &notify.values(), None, ctx.now)?;
    }
    Ok(())
}

/// ServiceAuth (4.1): FeeType of the item and, for a monthly item, the EndTime of the order in
/// effect (of the item or a package holding it; `NotOrdered` without one).
pub fn service_auth(ctx: &Ctx, t: &Target) -> DbResult<Result<(String, Option<i64>), Error>> {
    let (Some(item), Some(user)) = (&t.item, &t.user) else {
        return Ok(Ok((t.item.as_ref().map(|i| i.fee_type.clone()).unwrap_or_default(), None)));
    };
    if item.fee_type != "2" {
        return Ok(Ok((item.fee_type.clone(), None)));
    }
    let end = order_db::end_in_effect(ctx.tx, &user.vnet_user_id, &item.id, ctx.now)?;
    Ok(match end {
        Some(e) => Ok((item.fee_type.clone(), Some(e))),
        None => Err(Error::NotOrdered),
    })
}

/// Order (4.1). `t` passed `resolve`; the caller checked the exactly-one rule and the TransactionID.
pub fn order(ctx: &WriteCtx, t: &Target, channel: Channel, contract_id: &str, if_extend: bool, txid: &str) -> DbResult<Result<OrderRow, Error>> {
    let user = t.user.as_ref().expect("local user");
    if let Some(mut o) = latest_order(ctx.tx, &user.vnet_user_id, t.item_id(), t.product_id())? {
        // An active order past its period that the rollover will renew counts as in effect.
        if o.status == "active" && (o.in_effect(ctx.now) || o.if_extend) {
            return Ok(Err(Error::AlreadyOrdered));
        }
        if o.in_effect(ctx.now) {
            // Cancelled with StopType 1 and still in effect: un-cancel, no new charge (spec 11).
            o.status = "active".into();
            o.if_extend = if_extend;
            save_order(ctx.tx, &o, ctx.now)?;
            order_event(ctx, &o, t.name(), action::RENEWED, channel)?;
            return Ok(Ok(o));
        }
    }
    let end = ctx.cal.month_end(ctx.cal.month(ctx.now));
    let o = OrderRow {
        order_id: new_order_id(ctx)?,
        vnet_user_id: user.vnet_user_id.clone(),
        spid: t.svc.spid.clone(),
        service_id: t.svc.id.clone(),
        service_item_id: t.item_id().to_string(),
        product_id: t.product_id().to_string(),
        contract_id: contract_id.to_string(),
        if_extend,
        status: "active".into(),
        start_at: ctx.now,
        end_at: end,
        usable_until: end,
        channel: channel.as_str().into(),
    };
    if let Err(e) = charge_user(ctx, &monthly_charge(ctx, t, user, &o, txid, "Order", ctx.now))? {
        return Ok(Err(e));
    }
    save_order(ctx.tx, &o, ctx.now)?;
    order_event(ctx, &o, t.name(), action::ORDERED, channel)?;
    Ok(Ok(o))
}

/// CancelOrder (4.1, 11): the latest order of the item/product; StopType 2 ends it now.
pub fn cancel(ctx: &WriteCtx, t: &Target, channel: Channel, immediately: bool) -> DbResult<Result<OrderRow, Error>> {
    let user = t.user.as_ref().expect("local user");
    let Some(mut o) = latest_order(ctx.tx, &user.vnet_user_id, t.item_id(), t.product_id())? else {
        return Ok(Err(Error::NotOrdered));
    };
    if o.status == "cancelled" {
        return Ok(Err(Error::AlreadyCancelled));
    }
    if !o.in_effect(ctx.now) {
        return Ok(Err(Error::NotOrdered));
    }
    o.status = "cancelled".into();
    o.if_extend = false;
    if immediately {
        // Ended now: EndTime is now, and it is no longer usable from this second on.
        o.end_at = ctx.now;
        o.usable_until = ctx.now - 1;
    }
    save_order(ctx.tx, &o, ctx.now)?;
    order_event(ctx, &o, t.name(), action::CANCELLED, channel)?;
    Ok(Ok(o))
}

/// ReOrder (4.1, 11): reactivate an order that expired less than 30 days ago, with a new period
/// and a charge, under the same OrderID.
pub fn reorder(ctx: &WriteCtx, t: &Target, channel: Channel, txid: &str) -> DbResult<Result<OrderRow, Error>> {
    let user = t.user.as_ref().expect("local user");
    let Some(mut o) = latest_order(ctx.tx, &user.vnet_user_id, t.item_id(), t.product_id())? else {
        return Ok(Err(Error::NotOrdered));
    };
    match o.status.as_str() {
        "cancelled" => return Ok(Err(Error::CancelledCannotRenew)),
        "active" if o.in_effect(ctx.now) => return Ok(Err(Error::AlreadyOrdered)),
        // Active but past its period: the rollover has not reached it yet; treat as expired.
        _ => {}
    }
    if ctx.now - o.end_at >= REORDER_WINDOW_S {
        return Ok(Err(Error::NotOrdered));
    }
    let end = ctx.cal.month_end(ctx.cal.month(ctx.now));
    o.status = "active".into();
    o.start_at = ctx.now;
    o.end_at = end;
    o.usable_until = end;
    if let Err(e) = charge_user(ctx, &monthly_charge(ctx, t, user, &o, txid, "ReOrder", ctx.now))? {
        return Ok(Err(e));
    }
    save_order(ctx.tx, &o, ctx.now)?;
    order_event(ctx, &o, t.name(), action::RENEWED, channel)?;
    Ok(Ok(o))
}

/// Account cancellation (UserStatusChange 03) ends every order in effect now (ActionType 5).
pub fn end_orders_of_user(ctx: &WriteCtx, user_id: &str) -> DbResult<usize> {
    let orders = order_db::in_effect_of_user(ctx.tx, user_id, ctx.now)?;
    for mut o in orders.iter().cloned() {
        o.status = "cancelled".into();
        o.if_extend = false;
        o.end_at = ctx.now.max(o.start_at);
        o.usable_until = ctx.now - 1;
        save_order(ctx.tx, &o, ctx.now)?;
        let name = order_name(ctx.tx, &o)?;
        order_event(ctx, &o, &name, action::ENDED_BY_STATUS, Channel::System)?;
    }
    Ok(orders.len())
}

/// ServiceItemName of an order: the item's or the package's name.
pub(super) fn order_name(tx: &Read, o: &OrderRow) -> DbResult<String> {
    cat::item_or_product_name(tx, &o.service_item_id, &o.product_id)
}
