//! The service catalogue's tables: `sp`, `service`, `item`, `product`, `product_item` (issue 3;
//! roaming approvals are in `store::roaming`).

use super::{DbError, DbResult, Read, Write};
use rusqlite::{params, OptionalExtension};

/// A service as the use rules read it.
#[derive(Debug, Clone)]
pub struct ServiceRow {
    pub spid: String,
    pub active: bool,
    /// The SP's province: '' for this province, `00` national, else another province.
    pub sp_province_id: String,
    pub offline_payment: bool,
}

/// A service item.
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

/// A package.
#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub spid: String,
    pub name: String,
    pub price: i64,
    pub active: bool,
    pub items: Vec<ProductItem>,
}

/// An item of a package, as the rules need it.
#[derive(Debug, Clone)]
pub struct ProductItem {
    pub service_id: String,
    pub roam_in: bool,
    pub roam_out: bool,
}

pub fn service_row(tx: &Read, id: &str) -> DbResult<Option<ServiceRow>> {
    let mut st = tx.conn().prepare_cached(
        "SELECT s.spid, s.status, sp.province_id, sp.offline_payment FROM service s JOIN sp ON sp.spid = s.spid WHERE s.service_id = ?1",
    )?;
    Ok(st
        .query_row([id], |r| {
            Ok(ServiceRow {
                spid: r.get(0)?,
                active: r.get::<_, String>(1)? == "active",
                sp_province_id: r.get(2)?,
                offline_payment: r.get(3)?,
            })
        })
        .optional()?)
}

pub fn item(tx: &Read, id: &str) -> DbResult<Option<Item>> {
    let mut st = tx.conn().prepare_cached(
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

/// A package with its items.
pub fn product(tx: &Read, id: &str) -> DbResult<Option<Product>> {
    let conn = tx.conn();
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

/// Is some item of the service approved for roam-in?
pub fn service_roams_in(tx: &Read, service_id: &str) -> DbResult<bool> {
    Ok(tx.conn().query_row("SELECT EXISTS(SELECT 1 FROM item WHERE service_id = ?1 AND roam_in = 1)", [service_id], |r| r.get(0))?)
}

/// Is some item of the service approved for roam-out?
pub fn service_roams_out(tx: &Read, service_id: &str) -> DbResult<bool> {
    Ok(tx.conn().query_row("SELECT EXISTS(SELECT 1 FROM item WHERE service_id = ?1 AND roam_out = 1)", [service_id], |r| r.get(0))?)
}

/// A service as the use rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInfo {
    pub spid: String,
    pub active: bool,
    /// The SP is of this province (not national, not another province's).
    pub local: bool,
    /// Some item of it is approved for this province's users (RoamServiceNotify).
    pub roams_in: bool,
    /// Some item of it is approved for other provinces' users (roam-out).
    pub roams_out: bool,
}

pub fn service(tx: &Read, service_id: &str) -> DbResult<Option<ServiceInfo>> {
    let mut st = tx.conn().prepare_cached(
        "SELECT s.spid, s.status, sp.province_id = '',
                EXISTS(SELECT 1 FROM item WHERE item.service_id = s.service_id AND item.roam_in = 1),
                EXISTS(SELECT 1 FROM item WHERE item.service_id = s.service_id AND item.roam_out = 1)
         FROM service s JOIN sp ON sp.spid = s.spid WHERE s.service_id = ?1",
    )?;
    Ok(st
        .query_row([service_id], |r| {
            Ok(ServiceInfo {
                spid: r.get(0)?,
                active: r.get::<_, String>(1)? == "active",
                local: r.get(2)?,
                roams_in: r.get(3)?,
                roams_out: r.get(4)?,
            })
        })
        .optional()?)
}

/// The SP's name when the service is the SP's.
pub fn sp_name_of_service(tx: &Read, spid: &str, service_id: &str) -> DbResult<Option<String>> {
    Ok(tx
        .conn()
        .prepare_cached("SELECT sp.name FROM service s JOIN sp ON sp.spid = s.spid WHERE s.service_id = ?1 AND s.spid = ?2")?
        .query_row([service_id, spid], |r| r.get(0))
        .optional()?)
}

/// The item's name when the item is of the service.
pub fn item_name_of_service(tx: &Read, service_id: &str, item_id: &str) -> DbResult<Option<String>> {
    Ok(tx
        .conn()
        .prepare_cached("SELECT name FROM item WHERE service_item_id = ?1 AND service_id = ?2")?
        .query_row([item_id, service_id], |r| r.get(0))
        .optional()?)
}

/// ServiceItemName of an order: the item's name, or the package's when `product_id` is not empty.
pub fn item_or_product_name(tx: &Read, item_id: &str, product_id: &str) -> DbResult<String> {
    let (sql, id) = if product_id.is_empty() {
        ("SELECT name FROM item WHERE service_item_id = ?1", item_id)
    } else {
        ("SELECT name FROM product WHERE product_id = ?1", product_id)
    };
    Ok(tx.conn().prepare_cached(sql)?.query_row([id], |r| r.get(0)).optional()?.unwrap_or_default())
}

// ---- import ----

pub fn sp_exists(tx: &Read, spid: &str) -> DbResult<bool> {
    Ok(tx.conn().query_row("SELECT 1 FROM sp WHERE spid = ?1", [spid], |_| Ok(())).optional()?.is_some())
}

/// The SP of a service.
pub fn spid_of_service(tx: &Read, service_id: &str) -> DbResult<Option<String>> {
    Ok(tx.conn().query_row("SELECT spid FROM service WHERE service_id = ?1", [service_id], |r| r.get(0)).optional()?)
}

/// The SP and FeeType of an item.
pub fn item_sp_and_fee_type(tx: &Read, item_id: &str) -> DbResult<Option<(String, String)>> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT s.spid, i.fee_type FROM item i JOIN service s ON s.service_id = i.service_id WHERE i.service_item_id = ?1",
            [item_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub fn upsert_sp(tx: &Write, spid: &str, name: &str, scope: &str, offline_payment: bool, roam_out: bool, now: i64) -> DbResult<()> {
    tx.conn().execute(
        "INSERT INTO sp(spid, name, scope, offline_payment, roam_out, updated_at, province_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, CASE ?3 WHEN 'national' THEN '00' ELSE '' END)
             ON CONFLICT(spid) DO UPDATE SET name = ?2, scope = ?3, offline_payment = ?4, roam_out = ?5, updated_at = ?6,
                 province_id = excluded.province_id",
        params![spid, name, scope, offline_payment, roam_out, now],
    )?;
    Ok(())
}

pub fn upsert_service(tx: &Write, service_id: &str, spid: &str, name: &str, status: &str, now: i64) -> DbResult<()> {
    tx.conn().execute(
        "INSERT INTO service(service_id, spid, name, status, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(service_id) DO UPDATE SET spid = ?2, name = ?3, status = ?4, updated_at = ?5",
        params![service_id, spid, name, status, now],
    )?;
    Ok(())
}

/// An item of an import. Roam-out is seeded from the item's SP unless RoamServiceNotify or
/// `vnetd roam` set it.
#[allow(clippy::too_many_arguments)]
pub fn upsert_item(tx: &Write, item_id: &str, service_id: &str, name: &str, fee_type: &str, price: i64, status: &str, now: i64) -> DbResult<()> {
    tx.conn().execute(
        "INSERT INTO item(service_item_id, service_id, name, fee_type, price, status, roam_out, roam_out_source, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                     (SELECT sp.roam_out FROM service JOIN sp ON sp.spid = service.spid WHERE service.service_id = ?2), 'import', ?7)
             ON CONFLICT(service_item_id) DO UPDATE SET service_id = ?2, name = ?3, fee_type = ?4, price = ?5, status = ?6,
                 roam_out = CASE WHEN roam_out_source = 'import' THEN excluded.roam_out ELSE roam_out END, updated_at = ?7",
        params![item_id, service_id, name, fee_type, price, status, now],
    )?;
    Ok(())
}

/// A package of an import with its items (replacing the ones it had).
#[allow(clippy::too_many_arguments)]
pub fn upsert_product(tx: &Write, product_id: &str, spid: &str, name: &str, package_price: i64, status: &str, items: &[String], now: i64) -> DbResult<()> {
    let conn = tx.conn();
    conn.execute(
        "INSERT INTO product(product_id, spid, name, package_price, status, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(product_id) DO UPDATE SET spid = ?2, name = ?3, package_price = ?4, status = ?5, updated_at = ?6",
        params![product_id, spid, name, package_price, status, now],
    )?;
    conn.execute("DELETE FROM product_item WHERE product_id = ?1", [product_id])?;
    for it in items {
        conn.execute("INSERT OR IGNORE INTO product_item(product_id, service_item_id) VALUES (?1, ?2)", params![product_id, it])?;
    }
    Ok(())
}

/// Every catalogue entry as listing rows: kind, id, owner, name, fee_type, price, status, roam_out.
pub fn list(tx: &Read) -> DbResult<Vec<Vec<String>>> {
    let mut out = Vec::new();
    let queries = [
        "SELECT 'sp', spid, '', name, '', '', scope || CASE WHEN offline_payment THEN ',offline' ELSE '' END, roam_out FROM sp ORDER BY spid",
        "SELECT 'service', service_id, spid, name, '', '', status, '' FROM service ORDER BY service_id",
        "SELECT 'item', service_item_id, service_id, name, fee_type, price, status, roam_out || '(' || roam_out_source || ')' FROM item ORDER BY service_item_id",
        "SELECT 'product', p.product_id, p.spid, p.name, '2', p.package_price, p.status,
                (SELECT group_concat(service_item_id, ',') FROM product_item WHERE product_id = p.product_id) FROM product p ORDER BY p.product_id",
    ];
    for q in queries {
        let mut st = tx.conn().prepare(q)?;
        let rows = st.query_map([], |r| {
            (0..8)
                .map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                    rusqlite::types::Value::Integer(n) => n.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Null => String::new(),
                    other => format!("{other:?}"),
                }))
                .collect::<Result<Vec<_>, _>>()
        })?;
        for r in rows {
            out.push(r.map_err(DbError::Sqlite)?);
        }
    }
    Ok(out)
}
