//! Roaming approvals kept per item in the catalogue (spec 4.3 RoamServiceNotify, 6.6, 9 `vnetd
//! roam`): `item.roam_in`/`roam_out` and who set them.

use super::{DbResult, Read, Write};
use rusqlite::{params, OptionalExtension};

/// An item's roaming columns: roam_in, roam_in_source, roam_out, roam_out_source.
pub fn item_state(tx: &Read, item_id: &str) -> DbResult<Option<(bool, String, bool, String)>> {
    Ok(tx
        .conn()
        .query_row("SELECT roam_in = 1, roam_in_source, roam_out = 1, roam_out_source FROM item WHERE service_item_id = ?1", [item_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?)
}

/// Set the roam-out approval of a local item of a service as RoamServiceNotify says. Returns the
/// rows changed (0: no such item of that service).
pub fn set_out_by_notify(tx: &Write, item_id: &str, service_id: &str, approve: bool, now: i64) -> DbResult<usize> {
    Ok(tx.conn().execute(
        "UPDATE item SET roam_out = ?2, roam_out_source = 'notify', updated_at = ?3
             WHERE service_item_id = ?1 AND service_id = ?4",
        params![item_id, approve, now, service_id],
    )?)
}

/// A foreign item named by RoamServiceNotify.
pub struct ForeignItem<'a> {
    pub spid: &'a str,
    pub sp_province: &'a str,
    pub service_id: &'a str,
    pub item_id: &'a str,
    pub item_name: &'a str,
    pub fee_type: &'a str,
    pub price: i64,
}

/// Add or update a foreign SP, service and item, and set the item's roam-in approval.
pub fn upsert_foreign_item(tx: &Write, f: &ForeignItem, approve: bool, now: i64) -> DbResult<()> {
    let conn = tx.conn();
    let scope = if f.sp_province == "00" { "national" } else { "province" };
    conn.execute(
        "INSERT INTO sp(spid, name, scope, province_id, updated_at) VALUES (?1, ?1, ?2, ?3, ?4)
         ON CONFLICT(spid) DO UPDATE SET province_id = ?3, scope = ?2, updated_at = ?4",
        params![f.spid, scope, f.sp_province, now],
    )?;
    conn.execute(
        "INSERT INTO service(service_id, spid, name, status, updated_at) VALUES (?1, ?2, ?3, 'active', ?4)
         ON CONFLICT(service_id) DO UPDATE SET spid = ?2, updated_at = ?4",
        params![f.service_id, f.spid, f.item_name, now],
    )?;
    conn.execute(
        "INSERT INTO item(service_item_id, service_id, name, fee_type, price, status, roam_in, roam_in_source, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, 'notify', ?7)
         ON CONFLICT(service_item_id) DO UPDATE SET service_id = ?2, name = ?3, fee_type = ?4, price = ?5, roam_in = ?6,
             roam_in_source = 'notify', updated_at = ?7",
        params![f.item_id, f.service_id, f.item_name, f.fee_type, f.price, approve, now],
    )?;
    Ok(())
}

/// Every item with a roaming state: direction, SPID, SP province, ServiceID, ServiceItemID,
/// name, state, set by.
pub fn list(tx: &Read, own: &str) -> DbResult<Vec<Vec<String>>> {
    let mut st = tx.conn().prepare(
        "SELECT CASE WHEN sp.province_id = '' THEN 'out' ELSE 'in' END, sp.spid,
                CASE WHEN sp.province_id = '' THEN ?1 ELSE sp.province_id END, i.service_id, i.service_item_id, i.name,
                CASE WHEN sp.province_id = '' THEN (CASE WHEN i.roam_out = 1 THEN 'approved' WHEN i.roam_out_source = 'import' THEN 'not approved' ELSE 'revoked' END)
                     ELSE (CASE WHEN i.roam_in = 1 THEN 'approved' WHEN i.roam_in_source = '' THEN 'not approved' ELSE 'revoked' END) END,
                CASE WHEN sp.province_id = '' THEN i.roam_out_source ELSE i.roam_in_source END
         FROM item i JOIN service s ON s.service_id = i.service_id JOIN sp ON sp.spid = s.spid
         WHERE (sp.province_id = '' AND (i.roam_out = 1 OR i.roam_out_source <> 'import')) OR (sp.province_id <> '')
         ORDER BY 1, sp.spid, i.service_id, i.service_item_id",
    )?;
    let rows = st.query_map([own], |r| (0..8).map(|i| r.get::<_, String>(i)).collect::<Result<Vec<_>, _>>())?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The province of the SP of an item of a service of that SP ('' local), if the item is one.
pub fn sp_province_of_item(tx: &Read, spid: &str, service_id: &str, item_id: &str) -> DbResult<Option<String>> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT sp.province_id FROM item i JOIN service s ON s.service_id = i.service_id JOIN sp ON sp.spid = s.spid
             WHERE i.service_item_id = ?1 AND s.service_id = ?2 AND sp.spid = ?3",
            params![item_id, service_id, spid],
            |r| r.get(0),
        )
        .optional()?)
}

/// End the roam-out approval of an item (`vnetd roam revoke`).
pub fn revoke_out_by_cli(tx: &Write, item_id: &str, now: i64) -> DbResult<()> {
    tx.conn().execute(
        "UPDATE item SET roam_out = 0, roam_out_source = 'cli', updated_at = ?2 WHERE service_item_id = ?1",
        params![item_id, now],
    )?;
    Ok(())
}
