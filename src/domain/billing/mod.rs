//! Orders, charges and credit (spec 4.1, 4.3, 4.4, 7.2, 11 "Orders and billing"; docs/billing.md).
//! Every function that changes state runs inside the caller's write transaction, so the order,
//! the charge, the credit debit and their outbox records commit together or not at all.

use super::calendar::{Cal, Ym};
use super::passport::{self as pp, User};
use super::Error;
use crate::spec::outbound;
use crate::store::outbox;
use crate::store::catalog as cat;
use crate::store::{charges as charge_db, orders as order_db, peers, users};
use crate::store::{next_counter, DbResult};
use crate::store::{Read, Write};


mod charges;
pub mod ledger;
mod orders;
mod periodic;
mod queries;
#[cfg(test)]
mod tests;

pub use charges::*;
pub use orders::*;
pub use periodic::*;
pub use queries::*;

/// Days after which an expired order can no longer be ReOrdered.
pub const REORDER_WINDOW_S: i64 = 30 * 86_400;

/// Who caused an order event (spec 3, "Order channel").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sp,
    Bss,
    Centre,
    System,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sp => "SP",
            Channel::Bss => "BSS",
            Channel::Centre => "CENTRE",
            Channel::System => "SYSTEM",
        }
    }
}

/// Order event ActionTypes (spec 3).
pub mod action {
    pub const ORDERED: &str = "1";
    pub const CANCELLED: &str = "2";
    pub const RENEWED: &str = "3";
    pub const EXPIRED: &str = "4";
    pub const ENDED_BY_STATUS: &str = "5";
}

/// The ordering operations, for the checks that differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ServiceAuth,
    Order,
    Cancel,
    ReOrder,
    Charge,
    Offline,
}

/// Where the work happens: the transaction, the calendar, this province, node time.
pub struct Ctx<'a> {
    pub tx: &'a Read<'a>,
    pub cal: Cal,
    pub province: &'a str,
    pub now: i64,
}

impl<'a> Ctx<'a> {
    pub fn new(tx: &'a Read<'a>, cal: Cal, province: &'a str, now: i64) -> Ctx<'a> {
        Ctx { tx, cal, province, now }
    }
}

/// A `Ctx` in the writer's transaction: what changes state takes; it derefs to the `Ctx` that
/// reading functions take.
pub struct WriteCtx<'a> {
    pub tx: &'a Write<'a>,
    read: Ctx<'a>,
}

impl<'a> WriteCtx<'a> {
    pub fn new(tx: &'a Write<'a>, cal: Cal, province: &'a str, now: i64) -> WriteCtx<'a> {
        WriteCtx { tx, read: Ctx { tx, cal, province, now } }
    }
}

impl<'a> std::ops::Deref for WriteCtx<'a> {
    type Target = Ctx<'a>;
    fn deref(&self) -> &Ctx<'a> {
        &self.read
    }
}


#[derive(Debug, Clone)]
pub struct Svc {
    pub id: String,
    pub spid: String,
    pub active: bool,
    /// The SP's province: own id, `00` (national) or a foreign province.
    pub sp_province: String,
    pub offline_payment: bool,
}

pub use crate::store::catalog::{Item, Product, ProductItem};

fn svc(ctx: &Ctx, id: &str) -> DbResult<Option<Svc>> {
    Ok(cat::service_row(ctx.tx, id)?.map(|r| Svc {
        id: id.to_string(),
        spid: r.spid,
        active: r.active,
        sp_province: if r.sp_province_id.is_empty() { ctx.province.to_string() } else { r.sp_province_id },
        offline_payment: r.offline_payment,
    }))
}

/// An ordering request after syntax checks: what it names.
#[derive(Debug, Clone)]
pub struct Req {
    pub kind: Kind,
    pub channel: Channel,
    /// The SP whose service is used (the caller for ProvinceForSP, the SPID field otherwise).
    pub spid: String,
    pub service_id: String,
    pub item_id: Option<String>,
    pub product_id: Option<String>,
    pub user_id: String,
}

/// What a request resolved to.
pub struct Target {
    pub svc: Svc,
    pub item: Option<Item>,
    pub product: Option<Product>,
    /// None: a user of another province named by an SP (roaming consumption, spec 6.9), whose
    /// use of this local service is approved for roaming out.
    pub user: Option<User>,
}

impl Target {
    /// The item or product's name as ServiceItemName.
    pub fn name(&self) -> &str {
        match (&self.item, &self.product) {
            (Some(i), _) => &i.name,
            (None, Some(p)) => &p.name,
            _ => "",
        }
    }
    /// The monthly price of the item or package.
    pub fn monthly_price(&self) -> i64 {
        match (&self.product, &self.item) {
            (Some(p), _) => p.price,
            (None, Some(i)) => i.price,
            _ => 0,
        }
    }
    pub fn item_id(&self) -> &str {
        self.item.as_ref().map(|i| i.id.as_str()).unwrap_or("")
    }
    pub fn product_id(&self) -> &str {
        self.product.as_ref().map(|p| p.id.as_str()).unwrap_or("")
    }

    /// The roaming usage row (spec 6.9, RoamType 1) left by a use of this local service by
    /// `user_id`, a user of another province, that the centre accepted: for reconciliation and
    /// the day's SETTLE; no local user is charged. It carries the monthly price once (an Order or
    /// ReOrder); a Charge sets its own `fee` and `batch_count`.
    #[allow(clippy::needless_update)] // deliberate: see the struct update below
    pub fn roaming_usage(&self, operation: &'static str, user_id: &str, txid: &str, order_id: &str, cal: Cal, now: i64) -> NewCharge {
        NewCharge {
            spid: self.svc.spid.clone(),
            transaction_id: txid.to_string(),
            operation,
            vnet_user_id: user_id.to_string(),
            user_province_id: user_id.chars().take(2).collect(),
            service_id: self.svc.id.clone(),
            service_item_id: self.item_id().to_string(),
            service_item_name: self.name().to_string(),
            product_id: self.product_id().to_string(),
            fee_type: self.item.as_ref().map(|i| i.fee_type.clone()).unwrap_or_else(|| "2".into()),
            fee: self.monthly_price(),
            batch_count: 1,
            charge_at: now,
            ledger_date: cal.date8(now),
            bill_month: cal.month(now).to_string(),
            roam_type: "1".into(),
            order_id: order_id.chars().take(24).collect(),
            // A field added for one operation keeps its default here.
            ..Default::default()
        }
    }
}

/// The checks every ordering operation shares, in the order of spec 11: service and item, product,
/// user, region. Err is the refusal.
pub fn resolve(ctx: &Ctx, req: &Req) -> DbResult<Result<Target, Error>> {
    let exists_only = req.kind == Kind::Cancel;
    let svc = match svc(ctx, &req.service_id)? {
        Some(s) if s.spid == req.spid => s,
        _ => return Ok(Err(Error::UnknownService)),
    };
    if !svc.active && !exists_only {
        return Ok(Err(Error::ServiceSuspended));
    }
    let item = match &req.item_id {
        None => None,
        Some(id) => match cat::item(ctx.tx, id)? {
            Some(i) if i.service_id == svc.id && (i.active || exists_only) => Some(i),
            _ => return Ok(Err(Error::ItemUnavailable)),
        },
    };
    let product = match &req.product_id {
        None => None,
        Some(id) => match cat::product(ctx.tx, id)? {
            Some(p) if p.active || exists_only => {
                if !p.items.iter().any(|i| i.service_id == svc.id) {
                    return Ok(Err(Error::ProductLacksService));
                }
                Some(p)
            }
            _ => return Ok(Err(Error::UnknownProduct)),
        },
    };
    let user = match pp::by_id(ctx.tx, &req.user_id)? {
        Some(u) => u,
        None if !req.user_id.starts_with(ctx.province) && req.channel == Channel::Sp => {
            // Roaming consumption (6.9): only a local service approved for roaming out.
            let approved = svc.sp_province == ctx.province
                && match (&item, &product) {
                    (Some(i), _) => i.roam_out,
                    (None, Some(p)) => p.items.iter().all(|i| i.roam_out),
                    (None, None) => cat::service_roams_out(ctx.tx, &svc.id)?,
                };
            if !approved && req.kind != Kind::Cancel {
                return Ok(Err(Error::RegionNotAllowed));
            }
            return Ok(Ok(Target { svc, item, product, user: None }));
        }
        None => return Ok(Err(Error::UnknownUser)),
    };
    let status_refusal = match req.kind {
        Kind::Order | Kind::ReOrder => Error::StatusForbidsOrder,
        Kind::Cancel => Error::Cancelled,
        _ => Error::NotNormal,
    };
    let status_ok = if req.kind == Kind::Cancel { !user.is_cancelled() } else { user.status == pp::STATUS_NORMAL };
    if !status_ok {
        return Ok(Err(status_refusal));
    }
    // Region (spec 4 "use rules"): a local user may use another province's or the centre's
    // service only if it was approved for this province. A user can always cancel.
    if svc.sp_province != ctx.province && req.kind != Kind::Cancel {
        let approved = match (&item, &product) {
            (Some(i), _) => i.roam_in,
            (None, Some(p)) => p.items.iter().all(|i| i.roam_in),
            (None, None) => cat::service_roams_in(ctx.tx, &svc.id)?,
        };
        if !approved {
            return Ok(Err(Error::RegionNotAllowed));
        }
    }
    Ok(Ok(Target { svc, item, product, user: Some(user) }))
}

/// RoamType of a use, seen from a user of `user_province` (spec 3).
pub fn roam_type(sp_province: &str, user_province: &str) -> &'static str {
    if sp_province == user_province {
        ""
    } else if sp_province == "00" {
        "2"
    } else {
        "1"
    }
}

/// Order's, CancelOrder's and ReOrder's "exactly one of ServiceItemID (a monthly item) and
/// ProductID" (spec 4.1, 11).
pub fn exactly_one(t: &Target) -> bool {
    match (&t.item, &t.product) {
        (Some(i), None) => i.fee_type == "2",
        (None, Some(_)) => true,
        _ => false,
    }
}
