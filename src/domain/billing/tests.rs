//! Unit tests of the billing rules against an in-memory database.

use super::*;
use crate::domain::catalog;
use crate::store::Store;
use time::UtcOffset;

const CATALOG: &str = include_str!("../../../tests/data/catalog-example.toml");
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
        f: impl FnOnce(&WriteCtx, Target) -> DbResult<Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
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
                let ctx = WriteCtx::new(conn, cal, "35", now);
                match resolve(&ctx, &req)? {
                    Err(code) => Ok(Err(code)),
                    Ok(t) => f(&ctx, t),
                }
            })
            .unwrap()
    }
    fn order(&self, user: &str, item: Option<&str>, product: Option<&str>, extend: bool, txid: &str) -> Result<OrderRow, Error> {
        let txid = txid.to_string();
        self.with(Kind::Order, user, item, product, move |ctx, t| order(ctx, &t, Channel::Sp, "", extend, &txid))
    }
    fn charge(&self, user: &str, fee: i64, txid: &str) -> Result<i64, Error> {
        let req = charge_request(fee, txid);
        self.with(Kind::Charge, user, Some(PER_USE), None, move |ctx, t| charge(ctx, &t, &req))
    }
    fn rollover(&self, month: Ym) -> Rolled {
        let (cal, now) = (self.cal, self.clock.unix());
        self.store.write(move |conn| rollover_chunk(&WriteCtx::new(conn, cal, "35", now), month, 1000)).unwrap()
    }
    fn order_row(&self, id: &str) -> OrderRow {
        let id = id.to_string();
        self.store
            .read(move |c| Ok(crate::store::orders::by_id(c, &id)?.expect("order")))
            .unwrap()
    }
    fn count(&self, sql: &str) -> i64 {
        let sql = sql.to_string();
        self.store.read(move |c| Ok(c.test_conn().query_row(&sql, [], |r| r.get(0))?)).unwrap()
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
    assert_eq!(w.charge(&post, 200, "a3"), Err(Error::OverCreditLimit));
    // A new bill month starts from zero.
    w.set("2026-12-01 00:00:05");
    assert!(w.charge(&post, 200, "a4").is_ok());
    let pre = w.user("2", 0, 300);
    assert!(w.charge(&pre, 200, "b1").is_ok());
    assert_eq!(w.charge(&pre, 200, "b2"), Err(Error::BalanceShort));
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
    assert_eq!(w.order(&u, Some(MONTHLY), None, true, "o2"), Err(Error::AlreadyOrdered));
    // Cancel with StopType 1: still usable until the period end; a second cancel is -21011.
    let c = w.with(Kind::Cancel, &u, Some(MONTHLY), None, |ctx, t| cancel(ctx, &t, Channel::Sp, false)).unwrap();
    assert_eq!(c.end_at, o.end_at);
    assert!(w.order_row(&o.order_id).in_effect(w.clock.unix()));
    assert_eq!(w.with(Kind::Cancel, &u, Some(MONTHLY), None, |ctx, t| cancel(ctx, &t, Channel::Sp, false)), Err(Error::AlreadyCancelled));
    assert_eq!(w.with(Kind::ReOrder, &u, Some(MONTHLY), None, |ctx, t| reorder(ctx, &t, Channel::Sp, "r1")), Err(Error::CancelledCannotRenew));
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
    assert_eq!(w.with(Kind::ReOrder, &u, Some(MONTHLY), None, |ctx, t| reorder(ctx, &t, Channel::Sp, "r3")).map(|_| ()), Err(Error::NotOrdered));
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
            let mut st = c.test_conn().prepare("SELECT transaction_id, ledger_date FROM charge WHERE operation = 'Renewal' ORDER BY id")?;
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
    assert_eq!(offline(&w, Ym(2026, 11), "f1"), Err(Error::NeverOrdered));
    let o = w.order(&u, Some(MONTHLY), None, false, "o1").unwrap();
    // November is paid by the order itself.
    assert_eq!(offline(&w, Ym(2026, 11), "f2"), Err(Error::PeriodPaid));
    assert!(offline(&w, Ym(2026, 12), "f3").is_ok());
    assert_eq!(offline(&w, Ym(2026, 12), "f4"), Err(Error::PeriodPaid));
    assert!(offline(&w, Ym(2027, 1), "f5").is_ok(), "ended in 11: up to 2027-01");
    assert_eq!(offline(&w, Ym(2027, 2), "f6"), Err(Error::OfflinePeriodOver));
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
            c.test_conn().execute_batch(
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
                let ctx = WriteCtx::new(conn, cal, "35", now);
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
                    Ok(t) => charge(&ctx, &t, &charge_request(50, &txid)),
                }
            })
            .unwrap()
    };
    assert_eq!(national(&w, "n1"), Err(Error::RegionNotAllowed), "not approved for this province");
    w.store.write(|c| Ok(c.test_conn().execute("UPDATE item SET roam_in = 1 WHERE service_item_id = '0000000900000101'", [])?)).unwrap();
    national(&w, "n2").unwrap();
    national(&w, "n3").unwrap();
    let (cal, now) = (w.cal, w.clock.unix());
    let n = w.store.write(move |conn| close_day(&WriteCtx::new(conn, cal, "35", now), "20261110")).unwrap();
    assert_eq!(n, 1);
    let payload: String = w.store.read(|c| Ok(c.test_conn().query_row("SELECT payload FROM outbox WHERE order_key = 'stream:SETTLE'", [], |r| r.get(0))?)).unwrap();
    assert!(payload.contains("[\"SPProvinceID\",\"00\"]") && payload.contains("[\"RoamType\",\"2\"]"), "{payload}");
    assert!(payload.contains("[\"TotalCount\",\"2\"]") && payload.contains("[\"TotalFee\",\"100\"]"), "{payload}");
    assert!(w.store.read(|c| day_closed(c, "20261110")).unwrap());
    assert!(!w.store.read(|c| day_closed(c, "20261111")).unwrap());
}

/// A Charge of one use (the fields the rules read).
fn charge_request(fee: i64, txid: &str) -> crate::spec::incoming::Charge::Request {
    crate::spec::incoming::Charge::Request { Fee: fee.to_string(), TransactionID: txid.to_string(), ..Default::default() }
}
