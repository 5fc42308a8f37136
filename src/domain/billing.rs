//! Orders, charges and credit (spec 4.1, 4.3, 4.4, 7.2, 11 "Orders and billing"; docs/billing.md).
//! Every function that changes state runs inside the caller's write transaction, so the order,
//! the charge, the credit debit and their outbox records commit together or not at all.

use super::calendar::{Cal, Ym};
use super::passport::{self as pp, User};
use crate::spec::codes::*;
use crate::store::outbox;
use crate::store::{next_counter, DbResult};
use rusqlite::{params, Connection, OptionalExtension, Row};

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
    pub conn: &'a Connection,
    pub cal: Cal,
    pub province: &'a str,
    pub now: i64,
}

// ---------------------------------------------------------------- catalogue as the rules see it

#[derive(Debug, Clone)]
pub struct Svc {
    pub id: String,
    pub spid: String,
    pub active: bool,
    /// The SP's province: own id, `00` (national) or a foreign province.
    pub sp_province: String,
    pub offline_payment: bool,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub service_id: String,
    pub name: String,
    pub fee_type: String,
    pub price: i64,
    pub active: bool,
    pub roam_in: bool,
    pub roam_out: bool,
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub spid: String,
    pub name: String,
    pub price: i64,
    pub active: bool,
    pub items: Vec<ProductItem>,
}

fn svc(ctx: &Ctx, id: &str) -> DbResult<Option<Svc>> {
    let mut st = ctx.conn.prepare_cached(
        "SELECT s.spid, s.status, sp.province_id, sp.offline_payment FROM service s JOIN sp ON sp.spid = s.spid WHERE s.service_id = ?1",
    )?;
    Ok(st
        .query_row([id], |r| {
            let prov: String = r.get(2)?;
            Ok(Svc {
                id: id.to_string(),
                spid: r.get(0)?,
                active: r.get::<_, String>(1)? == "active",
                sp_province: if prov.is_empty() { ctx.province.to_string() } else { prov },
                offline_payment: r.get(3)?,
            })
        })
        .optional()?)
}

fn item(conn: &Connection, id: &str) -> DbResult<Option<Item>> {
    let mut st = conn.prepare_cached(
        "SELECT service_id, name, fee_type, price, status, roam_in, roam_out FROM item WHERE service_item_id = ?1",
    )?;
    Ok(st
        .query_row([id], |r| {
            Ok(Item {
                id: id.to_string(),
                service_id: r.get(0)?,
                name: r.get(1)?,
                fee_type: r.get(2)?,
                price: r.get(3)?,
                active: r.get::<_, String>(4)? == "active",
                roam_in: r.get(5)?,
                roam_out: r.get(6)?,
            })
        })
        .optional()?)
}

/// An item of a package, as the rules need it.
#[derive(Debug, Clone)]
pub struct ProductItem {
    pub service_id: String,
    pub roam_in: bool,
    pub roam_out: bool,
}

fn product(conn: &Connection, id: &str) -> DbResult<Option<Product>> {
    let mut st = conn.prepare_cached("SELECT spid, name, package_price, status FROM product WHERE product_id = ?1")?;
    let Some(mut p) = st
        .query_row([id], |r| {
            Ok(Product {
                id: id.to_string(),
                spid: r.get(0)?,
                name: r.get(1)?,
                price: r.get(2)?,
                active: r.get::<_, String>(3)? == "active",
                items: Vec::new(),
            })
        })
        .optional()?
    else {
        return Ok(None);
    };
    let mut st = conn.prepare_cached(
        "SELECT i.service_id, i.roam_in, i.roam_out FROM product_item p JOIN item i ON i.service_item_id = p.service_item_id
         WHERE p.product_id = ?1 ORDER BY i.service_item_id",
    )?;
    p.items = st
        .query_map([id], |r| Ok(ProductItem { service_id: r.get(0)?, roam_in: r.get(1)?, roam_out: r.get(2)? }))?
        .collect::<Result<_, _>>()?;
    Ok(Some(p))
}

// ---------------------------------------------------------------- requests and their checks

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
        }
    }
}

/// The checks every ordering operation shares, in the order of spec 11: service and item, product,
/// user, region. Err is the Result code to answer.
pub fn resolve(ctx: &Ctx, req: &Req) -> DbResult<Result<Target, i32>> {
    let exists_only = req.kind == Kind::Cancel;
    let svc = match svc(ctx, &req.service_id)? {
        Some(s) if s.spid == req.spid => s,
        _ => return Ok(Err(SERVICE_UNKNOWN)),
    };
    if !svc.active && !exists_only {
        return Ok(Err(SERVICE_ABNORMAL));
    }
    let item = match &req.item_id {
        None => None,
        Some(id) => match item(ctx.conn, id)? {
            Some(i) if i.service_id == svc.id && (i.active || exists_only) => Some(i),
            _ => return Ok(Err(SERVICE_ITEM_ABNORMAL)),
        },
    };
    let product = match &req.product_id {
        None => None,
        Some(id) => match product(ctx.conn, id)? {
            Some(p) if p.active || exists_only => {
                if !p.items.iter().any(|i| i.service_id == svc.id) {
                    return Ok(Err(PRODUCT_LACKS_SERVICE));
                }
                Some(p)
            }
            _ => return Ok(Err(PRODUCT_UNKNOWN)),
        },
    };
    let user = match pp::by_id(ctx.conn, &req.user_id)? {
        Some(u) => u,
        None if !req.user_id.starts_with(ctx.province) && req.channel == Channel::Sp => {
            // Roaming consumption (6.9): only a local service approved for roaming out.
            let approved = svc.sp_province == ctx.province
                && match (&item, &product) {
                    (Some(i), _) => i.roam_out,
                    (None, Some(p)) => p.items.iter().all(|i| i.roam_out),
                    (None, None) => service_roams_out(ctx.conn, &svc.id)?,
                };
            if !approved && req.kind != Kind::Cancel {
                return Ok(Err(REGION_NOT_ALLOWED));
            }
            return Ok(Ok(Target { svc, item, product, user: None }));
        }
        None => return Ok(Err(ACCOUNT_UNKNOWN)),
    };
    let status_code = match req.kind {
        Kind::Order | Kind::ReOrder => STATUS_NO_ORDER,
        _ => USER_ABNORMAL,
    };
    let status_ok = if req.kind == Kind::Cancel { !user.is_cancelled() } else { user.status == pp::STATUS_NORMAL };
    if !status_ok {
        return Ok(Err(status_code));
    }
    // Region (spec 4 "use rules"): a local user may use another province's or the centre's
    // service only if it was approved for this province. A user can always cancel.
    if svc.sp_province != ctx.province && req.kind != Kind::Cancel {
        let approved = match (&item, &product) {
            (Some(i), _) => i.roam_in,
            (None, Some(p)) => p.items.iter().all(|i| i.roam_in),
            (None, None) => service_roams_in(ctx.conn, &svc.id)?,
        };
        if !approved {
            return Ok(Err(REGION_NOT_ALLOWED));
        }
    }
    Ok(Ok(Target { svc, item, product, user: Some(user) }))
}

fn service_roams_in(conn: &Connection, service_id: &str) -> DbResult<bool> {
    Ok(conn.query_row("SELECT EXISTS(SELECT 1 FROM item WHERE service_id = ?1 AND roam_in = 1)", [service_id], |r| r.get(0))?)
}

fn service_roams_out(conn: &Connection, service_id: &str) -> DbResult<bool> {
    Ok(conn.query_row("SELECT EXISTS(SELECT 1 FROM item WHERE service_id = ?1 AND roam_out = 1)", [service_id], |r| r.get(0))?)
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

// ---------------------------------------------------------------- orders

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

fn order_from_row(r: &Row) -> rusqlite::Result<OrderRow> {
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

impl OrderRow {
    /// Usable at `t`: not expired and inside its period (an immediate stop at s leaves
    /// `usable_until` = s − 1).
    pub fn in_effect(&self, t: i64) -> bool {
        self.status != "expired" && self.start_at <= t && t <= self.usable_until
    }
}

/// The user's latest order of an item or a package.
fn latest_order(conn: &Connection, user_id: &str, item_id: &str, product_id: &str) -> DbResult<Option<OrderRow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE vnet_user_id = ?1 AND service_item_id = ?2 AND product_id = ?3
         ORDER BY created_at DESC, rowid DESC LIMIT 1"
    ))?;
    Ok(st.query_row(params![user_id, item_id, product_id], order_from_row).optional()?)
}

fn save_order(conn: &Connection, o: &OrderRow, now: i64) -> DbResult<()> {
    conn.prepare_cached(&format!(
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

fn new_order_id(ctx: &Ctx) -> DbResult<String> {
    let n = next_counter(ctx.conn, "order_id")?;
    Ok(format!("{}{}{:010}", ctx.province, ctx.cal.date8(ctx.now), n))
}

/// Record an order event: the ORDER stream record (6.5) and, for events the SP did not cause, an
/// OrderNotify (6.8) to the SP when it is a peer with a URL.
pub fn order_event(ctx: &Ctx, o: &OrderRow, item_name: &str, action: &str, channel: Channel) -> DbResult<()> {
    let seq = next_counter(ctx.conn, "seq:ORDER")?;
    let record = [
        ("RecordSeq", seq.to_string()),
        ("OrderID", o.order_id.clone()),
        ("ActionType", action.to_string()),
        ("VNetUserID", o.vnet_user_id.clone()),
        ("SPID", o.spid.clone()),
        ("ServiceID", o.service_id.clone()),
        ("ServiceItemID", o.service_item_id.clone()),
        ("ServiceItemName", item_name.to_string()),
        ("ProductID", o.product_id.clone()),
        ("ContractID", o.contract_id.clone()),
        ("StartTime", ctx.cal.ts(o.start_at)),
        ("EndTime", ctx.cal.ts(o.end_at)),
        ("Channel", channel.as_str().to_string()),
        ("EventTime", ctx.cal.ts(ctx.now)),
    ];
    outbox::enqueue(ctx.conn, outbox::CENTRE, outbox::BATCH_SYNC, &outbox::stream_key("ORDER"), &record, None, ctx.now)?;
    if channel != Channel::Sp && sp_has_url(ctx.conn, &o.spid)? {
        let notify = [
            ("SPID", o.spid.clone()),
            ("ProvinceID", ctx.province.to_string()),
            ("OrderID", o.order_id.clone()),
            ("ActionType", action.to_string()),
            ("VNetUserID", o.vnet_user_id.clone()),
            ("ServiceID", o.service_id.clone()),
            ("ServiceItemID", o.service_item_id.clone()),
            ("ProductID", o.product_id.clone()),
            ("StartTime", ctx.cal.ts(o.start_at)),
            ("EndTime", ctx.cal.ts(o.end_at)),
            ("Channel", channel.as_str().to_string()),
        ];
        outbox::enqueue(ctx.conn, &o.spid, "OrderNotify", &outbox::sp_key(&o.spid), &notify, None, ctx.now)?;
    }
    Ok(())
}

fn sp_has_url(conn: &Connection, spid: &str) -> DbResult<bool> {
    let mut st = conn.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM peer WHERE id = ?1 AND kind = 'sp' AND status = 'active' AND url IS NOT NULL AND url <> '')",
    )?;
    Ok(st.query_row([spid], |r| r.get(0))?)
}

// ---------------------------------------------------------------- charges and credit

/// One charge record.
#[derive(Debug, Clone)]
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
pub fn txid_taken(conn: &Connection, spid: &str, txid: &str) -> DbResult<bool> {
    let mut st = conn.prepare_cached("SELECT EXISTS(SELECT 1 FROM charge WHERE spid = ?1 AND transaction_id = ?2)")?;
    Ok(st.query_row(params![spid, txid], |r| r.get(0))?)
}

/// Check the user's credit for `fee` in `bill_month` and debit it (spec 11 "Credit"): postpaid,
/// the month's total plus the fee at most CreditLimit (-21003); prepaid, balance minus the fee at
/// least 0 (-21014).
pub fn debit(conn: &Connection, user_id: &str, fee: i64, bill_month: &str) -> DbResult<Result<(), i32>> {
    let (user_type, limit, balance): (String, i64, i64) = conn
        .prepare_cached("SELECT user_type, credit_limit, balance FROM user WHERE vnet_user_id = ?1")?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let spent: i64 = conn
        .prepare_cached("SELECT total FROM spend WHERE vnet_user_id = ?1 AND bill_month = ?2")?
        .query_row(params![user_id, bill_month], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if user_type == "2" {
        if balance - fee < 0 {
            return Ok(Err(BALANCE_SHORT));
        }
        if fee != 0 {
            conn.prepare_cached("UPDATE user SET balance = balance - ?2 WHERE vnet_user_id = ?1")?.execute(params![user_id, fee])?;
        }
    } else if spent + fee > limit {
        return Ok(Err(OVER_LIMIT));
    }
    conn.prepare_cached(
        "INSERT INTO spend(vnet_user_id, bill_month, total) VALUES (?1, ?2, ?3)
         ON CONFLICT(vnet_user_id, bill_month) DO UPDATE SET total = total + ?3",
    )?
    .execute(params![user_id, bill_month, fee])?;
    Ok(Ok(()))
}

/// Insert a charge and its CHARGE stream record (6.5).
pub fn record_charge(ctx: &Ctx, c: &NewCharge) -> DbResult<()> {
    insert_charge(ctx.conn, c)?;
    let seq = next_counter(ctx.conn, "seq:CHARGE")?;
    let record = [
        ("RecordSeq", seq.to_string()),
        ("TransactionID", c.transaction_id.clone()),
        ("VNetUserID", c.vnet_user_id.clone()),
        ("UserProvinceID", c.user_province_id.clone()),
        ("SPID", c.spid.clone()),
        ("ServiceID", c.service_id.clone()),
        ("ServiceItemID", c.service_item_id.clone()),
        ("ServiceItemName", c.service_item_name.clone()),
        ("FeeType", c.fee_type.clone()),
        ("Fee", c.fee.to_string()),
        ("BatchCount", c.batch_count.to_string()),
        ("ChargeTime", ctx.cal.ts(c.charge_at)),
        ("LedgerDate", c.ledger_date.clone()),
        ("RoamType", c.roam_type.clone()),
    ];
    outbox::enqueue(ctx.conn, outbox::CENTRE, outbox::BATCH_SYNC, &outbox::stream_key("CHARGE"), &record, None, ctx.now)?;
    Ok(())
}

/// Insert a charge row only: a roaming usage (6.9) of another province's user, which that
/// province bills and reports; here it counts for Reconcile and the day's SETTLE.
pub fn insert_charge(conn: &Connection, c: &NewCharge) -> DbResult<()> {
    conn
        .prepare_cached(
            "INSERT INTO charge(spid, transaction_id, operation, vnet_user_id, user_province_id, service_id, service_item_id,
                 service_item_name, product_id, fee_type, fee, batch_count, charge_at, ledger_date, bill_month, roam_type, order_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
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
            c.order_id
        ])?;
    Ok(())
}

/// The charge of one month of an order (Order, ReOrder, renewal).
fn monthly_charge(ctx: &Ctx, t: &Target, user: &User, o: &OrderRow, txid: &str, operation: &'static str, at: i64) -> NewCharge {
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
    }
}

/// Debit and record a charge; Err is the credit code.
fn charge_user(ctx: &Ctx, c: &NewCharge) -> DbResult<Result<(), i32>> {
    if let Err(code) = debit(ctx.conn, &c.vnet_user_id, c.fee, &c.bill_month)? {
        return Ok(Err(code));
    }
    record_charge(ctx, c)?;
    Ok(Ok(()))
}

// ---------------------------------------------------------------- the operations

/// ServiceAuth (4.1): FeeType of the item and, for a monthly item, the EndTime of the order in
/// effect (of the item or a package holding it; -21006 without one).
pub fn service_auth(ctx: &Ctx, t: &Target) -> DbResult<Result<(String, Option<i64>), i32>> {
    let (Some(item), Some(user)) = (&t.item, &t.user) else {
        return Ok(Ok((t.item.as_ref().map(|i| i.fee_type.clone()).unwrap_or_default(), None)));
    };
    if item.fee_type != "2" {
        return Ok(Ok((item.fee_type.clone(), None)));
    }
    let mut st = ctx.conn.prepare_cached(
        "SELECT max(usable_until), max(end_at) FROM orders WHERE vnet_user_id = ?1 AND status <> 'expired'
           AND start_at <= ?3 AND usable_until >= ?3
           AND (service_item_id = ?2 OR product_id IN (SELECT product_id FROM product_item WHERE service_item_id = ?2))",
    )?;
    let end: Option<i64> = st.query_row(params![user.vnet_user_id, item.id, ctx.now], |r| r.get(1))?;
    Ok(match end {
        Some(e) => Ok((item.fee_type.clone(), Some(e))),
        None => Err(NOT_ORDERED),
    })
}

/// Order (4.1). `t` passed `resolve`; the caller checked the exactly-one rule and the TransactionID.
pub fn order(ctx: &Ctx, t: &Target, channel: Channel, contract_id: &str, if_extend: bool, txid: &str) -> DbResult<Result<OrderRow, i32>> {
    let user = t.user.as_ref().expect("local user");
    if let Some(mut o) = latest_order(ctx.conn, &user.vnet_user_id, t.item_id(), t.product_id())? {
        // An active order past its period that the rollover will renew counts as in effect.
        if o.status == "active" && (o.in_effect(ctx.now) || o.if_extend) {
            return Ok(Err(DUPLICATE_ORDER));
        }
        if o.in_effect(ctx.now) {
            // Cancelled with StopType 1 and still in effect: un-cancel, no new charge (spec 11).
            o.status = "active".into();
            o.if_extend = if_extend;
            save_order(ctx.conn, &o, ctx.now)?;
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
    if let Err(code) = charge_user(ctx, &monthly_charge(ctx, t, user, &o, txid, "Order", ctx.now))? {
        return Ok(Err(code));
    }
    save_order(ctx.conn, &o, ctx.now)?;
    order_event(ctx, &o, t.name(), action::ORDERED, channel)?;
    Ok(Ok(o))
}

/// CancelOrder (4.1, 11): the latest order of the item/product; StopType 2 ends it now.
pub fn cancel(ctx: &Ctx, t: &Target, channel: Channel, immediately: bool) -> DbResult<Result<OrderRow, i32>> {
    let user = t.user.as_ref().expect("local user");
    let Some(mut o) = latest_order(ctx.conn, &user.vnet_user_id, t.item_id(), t.product_id())? else {
        return Ok(Err(NOT_ORDERED));
    };
    if o.status == "cancelled" {
        return Ok(Err(DUPLICATE_CANCEL));
    }
    if !o.in_effect(ctx.now) {
        return Ok(Err(NOT_ORDERED));
    }
    o.status = "cancelled".into();
    o.if_extend = false;
    if immediately {
        // Ended now: EndTime is now, and it is no longer usable from this second on.
        o.end_at = ctx.now;
        o.usable_until = ctx.now - 1;
    }
    save_order(ctx.conn, &o, ctx.now)?;
    order_event(ctx, &o, t.name(), action::CANCELLED, channel)?;
    Ok(Ok(o))
}

/// ReOrder (4.1, 11): reactivate an order that expired less than 30 days ago, with a new period
/// and a charge, under the same OrderID.
pub fn reorder(ctx: &Ctx, t: &Target, channel: Channel, txid: &str) -> DbResult<Result<OrderRow, i32>> {
    let user = t.user.as_ref().expect("local user");
    let Some(mut o) = latest_order(ctx.conn, &user.vnet_user_id, t.item_id(), t.product_id())? else {
        return Ok(Err(NOT_ORDERED));
    };
    match o.status.as_str() {
        "cancelled" => return Ok(Err(CANCELLED_NO_RENEW)),
        "active" if o.in_effect(ctx.now) => return Ok(Err(DUPLICATE_ORDER)),
        // Active but past its period: the rollover has not reached it yet; treat as expired.
        _ => {}
    }
    if ctx.now - o.end_at >= REORDER_WINDOW_S {
        return Ok(Err(NOT_ORDERED));
    }
    let end = ctx.cal.month_end(ctx.cal.month(ctx.now));
    o.status = "active".into();
    o.start_at = ctx.now;
    o.end_at = end;
    o.usable_until = end;
    if let Err(code) = charge_user(ctx, &monthly_charge(ctx, t, user, &o, txid, "ReOrder", ctx.now))? {
        return Ok(Err(code));
    }
    save_order(ctx.conn, &o, ctx.now)?;
    order_event(ctx, &o, t.name(), action::RENEWED, channel)?;
    Ok(Ok(o))
}

/// The charge of a use of an item now (Charge, OfflineCharge), billed to `bill_month`.
fn item_charge(ctx: &Ctx, t: &Target, operation: &'static str, txid: &str, fee: i64, batch_count: i64, bill_month: Ym) -> NewCharge {
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
        product_id: String::new(),
        fee_type: item.fee_type.clone(),
        fee,
        batch_count,
        charge_at: ctx.now,
        ledger_date: ctx.cal.date8(ctx.now),
        bill_month: bill_month.to_string(),
        roam_type: roam_type(&t.svc.sp_province, ctx.province).to_string(),
        order_id: String::new(),
    }
}

/// Charge (4.1): pay per use. The caller checked FeeType, Fee and the TransactionID.
pub fn charge(ctx: &Ctx, t: &Target, fee: i64, batch_count: i64, txid: &str) -> DbResult<Result<i64, i32>> {
    let c = item_charge(ctx, t, "Charge", txid, fee, batch_count, ctx.cal.month(ctx.now));
    Ok(charge_user(ctx, &c)?.map(|()| ctx.now))
}

/// OfflineCharge (4.1, 11) after the SP qualification, FeeType and Fee checks: order history
/// (-20514, -20007), one monthly payment per BillMonth (-20009), credit.
pub fn offline_charge(ctx: &Ctx, t: &Target, fee: i64, bill_month: Ym, txid: &str) -> DbResult<Result<(), i32>> {
    let user = t.user.as_ref().expect("local user");
    let item = t.item.as_ref().expect("item");
    let holding = "(service_item_id = ?2 OR product_id IN (SELECT product_id FROM product_item WHERE service_item_id = ?2))";
    let last_end: Option<i64> = ctx
        .conn
        .prepare_cached(&format!("SELECT max(usable_until) FROM orders WHERE vnet_user_id = ?1 AND {holding}"))?
        .query_row(params![user.vnet_user_id, item.id], |r| r.get(0))?;
    let Some(last_end) = last_end else {
        return Ok(Err(NEVER_ORDERED));
    };
    if bill_month > ctx.cal.month(last_end).plus(2) {
        return Ok(Err(OFFLINE_EXPIRED));
    }
    let paid: bool = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT EXISTS(SELECT 1 FROM charge WHERE vnet_user_id = ?1 AND bill_month = ?3 AND fee_type = '2' AND {holding})"
        ))?
        .query_row(params![user.vnet_user_id, item.id, bill_month.to_string()], |r| r.get(0))?;
    if paid {
        return Ok(Err(OFFLINE_ONCE_PER_PERIOD));
    }
    let c = item_charge(ctx, t, "OfflineCharge", txid, fee, 1, bill_month);
    charge_user(ctx, &c)
}

/// Account cancellation (UserStatusChange 03) ends every order in effect now (ActionType 5).
pub fn end_orders_of_user(ctx: &Ctx, user_id: &str) -> DbResult<usize> {
    let orders: Vec<OrderRow> = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE vnet_user_id = ?1 AND status <> 'expired' AND usable_until >= ?2 ORDER BY order_id"
        ))?
        .query_map(params![user_id, ctx.now], order_from_row)?
        .collect::<Result<_, _>>()?;
    for mut o in orders.iter().cloned() {
        o.status = "cancelled".into();
        o.if_extend = false;
        o.end_at = ctx.now.max(o.start_at);
        o.usable_until = ctx.now - 1;
        save_order(ctx.conn, &o, ctx.now)?;
        let name = order_name(ctx.conn, &o)?;
        order_event(ctx, &o, &name, action::ENDED_BY_STATUS, Channel::System)?;
    }
    Ok(orders.len())
}

/// ServiceItemName of an order: the item's or the package's name.
fn order_name(conn: &Connection, o: &OrderRow) -> DbResult<String> {
    let (sql, id) = if o.product_id.is_empty() {
        ("SELECT name FROM item WHERE service_item_id = ?1", &o.service_item_id)
    } else {
        ("SELECT name FROM product WHERE product_id = ?1", &o.product_id)
    };
    Ok(conn.prepare_cached(sql)?.query_row([id], |r| r.get(0)).optional()?.unwrap_or_default())
}

// ---------------------------------------------------------------- monthly rollover (7.2)

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
pub fn rollover_chunk(ctx: &Ctx, month: Ym, limit: usize) -> DbResult<Rolled> {
    let start = ctx.cal.month_start(month);
    let end = ctx.cal.month_end(month);
    let orders: Vec<OrderRow> = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'active' AND end_at < ?1 ORDER BY end_at, order_id LIMIT ?2"
        ))?
        .query_map(params![start, limit as i64], order_from_row)?
        .collect::<Result<_, _>>()?;
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
                if !txid_taken(ctx.conn, &c.spid, &txid)? && charge_user(ctx, &c)?.is_ok() {
                    save_order(ctx.conn, &next, ctx.now)?;
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
            save_order(ctx.conn, &o, ctx.now)?;
            let name = order_name(ctx.conn, &o)?;
            order_event(ctx, &o, &name, action::EXPIRED, Channel::System)?;
            done.expired += 1;
        }
    }
    Ok(done)
}

// ---------------------------------------------------------------- day close (7.3)

/// Close `date8`: SETTLE records (totals per SPID, item and RoamType of the day's charges that
/// involve another province or the centre) and the closed marker, in the caller's transaction.
/// Returns the number of SETTLE records.
pub fn close_day(ctx: &Ctx, date8: &str) -> DbResult<usize> {
    let rows: Vec<[String; 9]> = ctx
        .conn
        .prepare(
            "SELECT c.spid, coalesce(nullif(sp.province_id, ''), ?2), c.service_id, c.service_item_id, c.service_item_name,
                    c.roam_type, count(*), sum(c.fee), c.product_id
             FROM charge c LEFT JOIN sp ON sp.spid = c.spid
             WHERE c.ledger_date = ?1 AND c.roam_type <> ''
             GROUP BY c.spid, c.service_id, c.service_item_id, c.product_id, c.roam_type
             ORDER BY c.spid, c.service_id, c.service_item_id, c.product_id, c.roam_type",
        )?
        .query_map(params![date8, ctx.province], |r| {
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
        .collect::<Result<_, _>>()?;
    for r in &rows {
        let seq = next_counter(ctx.conn, "seq:SETTLE")?;
        let record = [
            ("RecordSeq", seq.to_string()),
            ("LedgerDate", date8.to_string()),
            ("SPID", r[0].clone()),
            ("SPProvinceID", r[1].clone()),
            ("ServiceID", r[2].clone()),
            ("ServiceItemID", r[3].clone()),
            ("ServiceItemName", r[4].clone()),
            ("RoamType", r[5].clone()),
            ("TotalCount", r[6].clone()),
            ("TotalFee", r[7].clone()),
        ];
        outbox::enqueue(ctx.conn, outbox::CENTRE, outbox::BATCH_SYNC, &outbox::stream_key("SETTLE"), &record, None, ctx.now)?;
    }
    set_job_state(ctx.conn, CLOSED_THROUGH, date8)?;
    Ok(rows.len())
}

pub const ROLLED_OVER_MONTH: &str = "rolled_over_month";
pub const CLOSED_THROUGH: &str = "closed_through";

pub fn job_state(conn: &Connection, name: &str) -> DbResult<Option<String>> {
    Ok(conn.query_row("SELECT value FROM job_state WHERE name = ?1", [name], |r| r.get(0)).optional()?)
}

pub fn set_job_state(conn: &Connection, name: &str, value: &str) -> DbResult<()> {
    conn.execute(
        "INSERT INTO job_state(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = ?2",
        params![name, value],
    )?;
    Ok(())
}

/// Is `date8` closed (Reconcile answers -22003 until then)?
pub fn day_closed(conn: &Connection, date8: &str) -> DbResult<bool> {
    Ok(job_state(conn, CLOSED_THROUGH)?.is_some_and(|c| date8 <= c.as_str()))
}

// ---------------------------------------------------------------- queries

/// What ChargeQuery answers: VNetUserID, ServiceID, ServiceItemID, Fee, ChargeTime (unix).
pub type FoundCharge = (String, String, String, i64, i64);

/// An SP's charge by TransactionID (ChargeQuery).
pub fn find_charge(conn: &Connection, spid: &str, txid: &str) -> DbResult<Option<FoundCharge>> {
    let mut st = conn.prepare_cached(
        "SELECT vnet_user_id, service_id, service_item_id, fee, charge_at FROM charge WHERE spid = ?1 AND transaction_id = ?2",
    )?;
    Ok(st.query_row(params![spid, txid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).optional()?)
}

/// A user's orders, newest period first, optionally only one SP's and one service's.
pub fn user_orders(conn: &Connection, user_id: &str, spid: Option<&str>, service_id: Option<&str>) -> DbResult<Vec<OrderRow>> {
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
pub fn bill(conn: &Connection, user_id: &str, bill_month: &str) -> DbResult<Vec<BillLine>> {
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
pub fn day_totals(conn: &Connection, spid: &str, date8: &str) -> DbResult<(i64, i64)> {
    let mut st = conn.prepare_cached("SELECT count(*), coalesce(sum(fee), 0) FROM charge WHERE spid = ?1 AND ledger_date = ?2")?;
    Ok(st.query_row(params![spid, date8], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// One reconciliation detail line: TransactionID, VNetUserID, ServiceID, ServiceItemID, FeeType,
/// Fee, ChargeTime (unix).
pub type DetailLine = (String, String, String, String, String, i64, i64);

/// An SP's charges of a LedgerDate ordered by ChargeTime then TransactionID, `limit` from `offset`.
pub fn day_detail(conn: &Connection, spid: &str, date8: &str, offset: i64, limit: i64) -> DbResult<Vec<DetailLine>> {
    let mut st = conn.prepare_cached(
        "SELECT transaction_id, vnet_user_id, service_id, service_item_id, fee_type, fee, charge_at FROM charge
         WHERE spid = ?1 AND ledger_date = ?2 ORDER BY charge_at, transaction_id LIMIT ?3 OFFSET ?4",
    )?;
    let rows = st.query_map(params![spid, date8, limit, offset], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog;
    use crate::store::Store;
    use time::UtcOffset;

    const CATALOG: &str = include_str!("../../tests/data/catalog-example.toml");
    const SP: &str = "35000001";
    const SVC: &str = "3500000100000001";
    const PER_USE: &str = "3500000100000101";
    const MONTHLY: &str = "3500000100000102";
    const PACKAGE: &str = "3500000900000001";

    struct World {
        _dir: tempfile::TempDir,
        store: Store,
        cal: Cal,
        clock: crate::clock::Clock,
    }

    impl World {
        fn new(at: &str) -> World {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("v.db")).unwrap();
            let tz = UtcOffset::from_hms(8, 0, 0).unwrap();
            let clock = crate::clock::Clock::manual(tz, 0);
            let now = clock.parse_ts(at).unwrap();
            clock.advance(now);
            let f = catalog::parse(CATALOG).unwrap();
            store.write(move |c| Ok(catalog::import(c, &f, 1)?.unwrap())).unwrap();
            World { _dir: dir, store, cal: Cal::new(tz), clock }
        }
        fn set(&self, at: &str) {
            let t = self.clock.parse_ts(at).unwrap();
            self.clock.advance(t - self.clock.unix());
        }
        fn user(&self, user_type: &str, credit: i64, balance: i64) -> String {
            let u = pp::NewUser {
                account_type: "01".into(),
                account: format!("acct{}", self.clock.unix() + rand_suffix()),
                password_phc: None,
                city_code: "0591".into(),
                user_type: user_type.into(),
                credit_limit: credit,
                balance,
                alias: String::new(),
                binding_access_no: String::new(),
            };
            let now = self.clock.unix();
            self.store.write(move |c| Ok(pp::create(c, "35", &u, now)?.vnet_user_id)).unwrap()
        }
        /// Run `f` with a resolved target in one transaction.
        fn with<T: Send + 'static>(
            &self,
            kind: Kind,
            user: &str,
            item: Option<&str>,
            product: Option<&str>,
            f: impl FnOnce(&Ctx, Target) -> DbResult<Result<T, i32>> + Send + 'static,
        ) -> Result<T, i32> {
            let req = Req {
                kind,
                channel: Channel::Sp,
                spid: SP.into(),
                service_id: SVC.into(),
                item_id: item.map(str::to_string),
                product_id: product.map(str::to_string),
                user_id: user.into(),
            };
            let (cal, now) = (self.cal, self.clock.unix());
            self.store
                .write(move |conn| {
                    let ctx = Ctx { conn, cal, province: "35", now };
                    match resolve(&ctx, &req)? {
                        Err(code) => Ok(Err(code)),
                        Ok(t) => f(&ctx, t),
                    }
                })
                .unwrap()
        }
        fn order(&self, user: &str, item: Option<&str>, product: Option<&str>, extend: bool, txid: &str) -> Result<OrderRow, i32> {
            let txid = txid.to_string();
            self.with(Kind::Order, user, item, product, move |ctx, t| order(ctx, &t, Channel::Sp, "", extend, &txid))
        }
        fn charge(&self, user: &str, fee: i64, txid: &str) -> Result<i64, i32> {
            let txid = txid.to_string();
            self.with(Kind::Charge, user, Some(PER_USE), None, move |ctx, t| charge(ctx, &t, fee, 1, &txid))
        }
        fn rollover(&self, month: Ym) -> Rolled {
            let (cal, now) = (self.cal, self.clock.unix());
            self.store.write(move |conn| rollover_chunk(&Ctx { conn, cal, province: "35", now }, month, 1000)).unwrap()
        }
        fn order_row(&self, id: &str) -> OrderRow {
            let id = id.to_string();
            self.store
                .read(move |c| Ok(c.query_row(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?1"), [id], order_from_row)?))
                .unwrap()
        }
        fn count(&self, sql: &str) -> i64 {
            let sql = sql.to_string();
            self.store.read(move |c| Ok(c.query_row(&sql, [], |r| r.get(0))?)).unwrap()
        }
    }

    fn rand_suffix() -> i64 {
        use std::sync::atomic::{AtomicI64, Ordering};
        static N: AtomicI64 = AtomicI64::new(0);
        N.fetch_add(1, Ordering::Relaxed) * 1_000_000_000
    }

    #[test]
    fn credit_is_never_overdrawn() {
        let w = World::new("2026-11-10 10:00:00");
        let post = w.user("1", 500, 0);
        assert!(w.charge(&post, 200, "a1").is_ok());
        assert!(w.charge(&post, 200, "a2").is_ok());
        assert_eq!(w.charge(&post, 200, "a3"), Err(OVER_LIMIT));
        // A new bill month starts from zero.
        w.set("2026-12-01 00:00:05");
        assert!(w.charge(&post, 200, "a4").is_ok());
        let pre = w.user("2", 0, 300);
        assert!(w.charge(&pre, 200, "b1").is_ok());
        assert_eq!(w.charge(&pre, 200, "b2"), Err(BALANCE_SHORT));
        assert_eq!(w.count(&format!("SELECT balance FROM user WHERE vnet_user_id = '{pre}'")), 100);
        assert_eq!(w.count("SELECT count(*) FROM charge"), 4);
        assert_eq!(w.count("SELECT count(*) FROM outbox WHERE order_key = 'stream:CHARGE'"), 4);
        assert_eq!(w.count("SELECT value FROM counter WHERE name = 'seq:CHARGE'"), 4);
    }

    #[test]
    fn order_cancel_uncancel_and_reorder() {
        let w = World::new("2026-11-10 10:00:00");
        let u = w.user("1", 100_000, 0);
        let o = w.order(&u, Some(MONTHLY), None, true, "o1").unwrap();
        assert_eq!(o.order_id.len(), 20);
        assert_eq!(w.cal.ts(o.end_at), "2026-11-30 23:59:59");
        assert_eq!(w.order(&u, Some(MONTHLY), None, true, "o2"), Err(DUPLICATE_ORDER));
        // Cancel with StopType 1: still usable until the period end; a second cancel is -21011.
        let c = w.with(Kind::Cancel, &u, Some(MONTHLY), None, |ctx, t| cancel(ctx, &t, Channel::Sp, false)).unwrap();
        assert_eq!(c.end_at, o.end_at);
        assert!(w.order_row(&o.order_id).in_effect(w.clock.unix()));
        assert_eq!(w.with(Kind::Cancel, &u, Some(MONTHLY), None, |ctx, t| cancel(ctx, &t, Channel::Sp, false)), Err(DUPLICATE_CANCEL));
        assert_eq!(w.with(Kind::ReOrder, &u, Some(MONTHLY), None, |ctx, t| reorder(ctx, &t, Channel::Sp, "r1")), Err(CANCELLED_NO_RENEW));
        // Ordering again un-cancels: same OrderID, no second charge.
        let again = w.order(&u, Some(MONTHLY), None, false, "o3").unwrap();
        assert_eq!(again.order_id, o.order_id);
        assert!(!again.if_extend);
        assert_eq!(w.count("SELECT count(*) FROM charge"), 1);
        // It expires at the month end (IfExtend 0); ReOrder within 30 days renews it.
        w.set("2026-12-01 00:00:00");
        assert_eq!(w.rollover(Ym(2026, 12)), Rolled { renewed: 0, expired: 1 });
        assert_eq!(w.rollover(Ym(2026, 12)), Rolled::default(), "exactly once");
        w.set("2026-12-20 08:00:00");
        let r = w.with(Kind::ReOrder, &u, Some(MONTHLY), None, |ctx, t| reorder(ctx, &t, Channel::Sp, "r2")).unwrap();
        assert_eq!(r.order_id, o.order_id);
        assert_eq!(w.cal.ts(r.end_at), "2026-12-31 23:59:59");
        assert_eq!(w.count("SELECT count(*) FROM charge"), 2);
        // Expired 30 days ago or more: -21006.
        w.set("2027-01-01 00:00:00");
        w.rollover(Ym(2027, 1));
        w.set("2027-01-30 23:59:59");
        assert!(w.with(Kind::ReOrder, &u, Some(MONTHLY), None, |_, _| Ok(Ok(()))).is_ok());
        w.set("2027-01-31 00:00:00");
        assert_eq!(w.with(Kind::ReOrder, &u, Some(MONTHLY), None, |ctx, t| reorder(ctx, &t, Channel::Sp, "r3")).map(|_| ()), Err(NOT_ORDERED));
    }

    #[test]
    fn rollover_renews_once_per_month_and_stops_at_the_first_credit_failure() {
        let w = World::new("2026-10-15 10:00:00");
        // Credit for three months of the package (1500 each) but not four.
        let u = w.user("2", 0, 4500);
        let o = w.order(&u, None, Some(PACKAGE), true, "p1").unwrap();
        let poor = w.user("2", 0, 1000);
        let op = w.order(&poor, Some(MONTHLY), None, true, "m1").unwrap();
        // Down across two boundaries: each missed month once, in order.
        w.set("2026-12-03 09:00:00");
        assert_eq!(w.rollover(Ym(2026, 11)), Rolled { renewed: 1, expired: 1 });
        assert_eq!(w.rollover(Ym(2026, 12)), Rolled { renewed: 1, expired: 0 });
        assert_eq!(w.rollover(Ym(2026, 12)), Rolled::default());
        let row = w.order_row(&o.order_id);
        assert_eq!(w.cal.ts(row.start_at), "2026-12-01 00:00:00");
        assert_eq!(w.cal.ts(row.end_at), "2026-12-31 23:59:59");
        assert_eq!(w.order_row(&op.order_id).status, "expired");
        assert_eq!(w.count(&format!("SELECT balance FROM user WHERE vnet_user_id = '{u}'")), 0);
        let renewals: Vec<(String, String)> = w
            .store
            .read(|c| {
                let mut st = c.prepare("SELECT transaction_id, ledger_date FROM charge WHERE operation = 'Renewal' ORDER BY id")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .unwrap();
        assert_eq!(
            renewals,
            vec![(format!("RN{}202611", o.order_id), "20261101".to_string()), (format!("RN{}202612", o.order_id), "20261201".to_string())]
        );
        // The third month fails for credit: the order expires (ActionType 4).
        w.set("2027-01-01 00:00:00");
        assert_eq!(w.rollover(Ym(2027, 1)), Rolled { renewed: 0, expired: 1 });
        let actions = w.count("SELECT count(*) FROM outbox WHERE order_key = 'stream:ORDER' AND payload LIKE '%\"ActionType\",\"4\"%'");
        assert_eq!(actions, 2);
    }

    #[test]
    fn offline_charge_rules() {
        let w = World::new("2026-11-10 10:00:00");
        let u = w.user("1", 100_000, 0);
        let offline = |w: &World, month: Ym, txid: &str| {
            let txid = txid.to_string();
            w.with(Kind::Offline, &u, Some(MONTHLY), None, move |ctx, t| offline_charge(ctx, &t, 1000, month, &txid))
        };
        assert_eq!(offline(&w, Ym(2026, 11), "f1"), Err(NEVER_ORDERED));
        let o = w.order(&u, Some(MONTHLY), None, false, "o1").unwrap();
        // November is paid by the order itself.
        assert_eq!(offline(&w, Ym(2026, 11), "f2"), Err(OFFLINE_ONCE_PER_PERIOD));
        assert!(offline(&w, Ym(2026, 12), "f3").is_ok());
        assert_eq!(offline(&w, Ym(2026, 12), "f4"), Err(OFFLINE_ONCE_PER_PERIOD));
        assert!(offline(&w, Ym(2027, 1), "f5").is_ok(), "ended in 11: up to 2027-01");
        assert_eq!(offline(&w, Ym(2027, 2), "f6"), Err(OFFLINE_EXPIRED));
        let _ = o;
    }

    #[test]
    fn day_close_writes_settle_for_roaming_charges_only() {
        let w = World::new("2026-11-10 10:00:00");
        let u = w.user("1", 100_000, 0);
        w.charge(&u, 200, "c1").unwrap();
        // A national SP's item approved for this province.
        w.store
            .write(|c| {
                c.execute_batch(
                    "INSERT INTO sp(spid, name, scope, province_id, updated_at) VALUES ('00000009', 'n', 'national', '00', 1);
                     INSERT INTO service(service_id, spid, name, status, updated_at) VALUES ('0000000900000001', '00000009', 's', 'active', 1);
                     INSERT INTO item(service_item_id, service_id, name, fee_type, price, status, roam_in, updated_at)
                       VALUES ('0000000900000101', '0000000900000001', 'i', '1', 50, 'active', 0, 1);",
                )?;
                Ok(())
            })
            .unwrap();
        let national = |w: &World, txid: &str| {
            let (cal, now, txid, u) = (w.cal, w.clock.unix(), txid.to_string(), u.clone());
            w.store
                .write(move |conn| {
                    let ctx = Ctx { conn, cal, province: "35", now };
                    let req = Req {
                        kind: Kind::Charge,
                        channel: Channel::Centre,
                        spid: "00000009".into(),
                        service_id: "0000000900000001".into(),
                        item_id: Some("0000000900000101".into()),
                        product_id: None,
                        user_id: u,
                    };
                    match resolve(&ctx, &req)? {
                        Err(code) => Ok(Err(code)),
                        Ok(t) => charge(&ctx, &t, 50, 1, &txid),
                    }
                })
                .unwrap()
        };
        assert_eq!(national(&w, "n1"), Err(REGION_NOT_ALLOWED), "not approved for this province");
        w.store.write(|c| Ok(c.execute("UPDATE item SET roam_in = 1 WHERE service_item_id = '0000000900000101'", [])?)).unwrap();
        national(&w, "n2").unwrap();
        national(&w, "n3").unwrap();
        let (cal, now) = (w.cal, w.clock.unix());
        let n = w.store.write(move |conn| close_day(&Ctx { conn, cal, province: "35", now }, "20261110")).unwrap();
        assert_eq!(n, 1);
        let payload: String = w.store.read(|c| Ok(c.query_row("SELECT payload FROM outbox WHERE order_key = 'stream:SETTLE'", [], |r| r.get(0))?)).unwrap();
        assert!(payload.contains("[\"SPProvinceID\",\"00\"]") && payload.contains("[\"RoamType\",\"2\"]"), "{payload}");
        assert!(payload.contains("[\"TotalCount\",\"2\"]") && payload.contains("[\"TotalFee\",\"100\"]"), "{payload}");
        assert!(w.store.read(|c| day_closed(c, "20261110")).unwrap());
        assert!(!w.store.read(|c| day_closed(c, "20261111")).unwrap());
    }
}
