//! Roaming approvals in the catalogue (spec 4.3 RoamServiceNotify, 6.6, 9 `vnetd roam`):
//! roam-in (another province's or the centre's item approved for this province's users) and
//! roam-out (a local item approved for other provinces' users), kept per item.

use crate::store::DbResult;
use crate::store::{Read, Write};
use rusqlite::{params, OptionalExtension};

/// RoamServiceNotify Status: 1 approved, 2 revoked, 0 unknown.
pub const APPROVED: &str = "1";
pub const REVOKED: &str = "2";
pub const UNKNOWN: &str = "0";

/// An approval or revocation from the centre.
#[derive(Debug, Clone)]
pub struct Notice {
    pub approve: bool,
    pub spid: String,
    pub sp_province: String,
    pub service_id: String,
    pub item_id: String,
    pub item_name: String,
    pub fee_type: String,
    pub price: i64,
}

/// The roaming state of an item in one direction: roam-in when the SP is not of `own`
/// province, roam-out otherwise.
pub fn status(conn: &Read, own: &str, sp_province: &str, item_id: &str) -> DbResult<&'static str> {
    let row: Option<(bool, String, bool, String)> = conn
        .query_row("SELECT roam_in = 1, roam_in_source, roam_out = 1, roam_out_source FROM item WHERE service_item_id = ?1", [item_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((roam_in, in_src, roam_out, out_src)) = row else { return Ok(UNKNOWN) };
    Ok(if sp_province != own {
        if roam_in { APPROVED } else if in_src.is_empty() { UNKNOWN } else { REVOKED }
    } else if roam_out {
        APPROVED
    } else if out_src == "import" {
        UNKNOWN
    } else {
        REVOKED
    })
}

/// Apply an approval or revocation. Roam-in of an item not yet in the catalogue adds it (with its
/// SP and service) as a foreign item. Returns the new status, or None when a local item named
/// for roam-out does not exist.
pub fn apply(conn: &Write, own: &str, n: &Notice, now: i64) -> DbResult<Option<&'static str>> {
    if n.sp_province == own {
        let changed = conn.execute(
            "UPDATE item SET roam_out = ?2, roam_out_source = 'notify', updated_at = ?3
             WHERE service_item_id = ?1 AND service_id = ?4",
            params![n.item_id, n.approve, now, n.service_id],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        return Ok(Some(if n.approve { APPROVED } else { REVOKED }));
    }
    let scope = if n.sp_province == "00" { "national" } else { "province" };
    conn.execute(
        "INSERT INTO sp(spid, name, scope, province_id, updated_at) VALUES (?1, ?1, ?2, ?3, ?4)
         ON CONFLICT(spid) DO UPDATE SET province_id = ?3, scope = ?2, updated_at = ?4",
        params![n.spid, scope, n.sp_province, now],
    )?;
    conn.execute(
        "INSERT INTO service(service_id, spid, name, status, updated_at) VALUES (?1, ?2, ?3, 'active', ?4)
         ON CONFLICT(service_id) DO UPDATE SET spid = ?2, updated_at = ?4",
        params![n.service_id, n.spid, n.item_name, now],
    )?;
    conn.execute(
        "INSERT INTO item(service_item_id, service_id, name, fee_type, price, status, roam_in, roam_in_source, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, 'notify', ?7)
         ON CONFLICT(service_item_id) DO UPDATE SET service_id = ?2, name = ?3, fee_type = ?4, price = ?5, roam_in = ?6,
             roam_in_source = 'notify', updated_at = ?7",
        params![n.item_id, n.service_id, n.item_name, n.fee_type, n.price, n.approve, now],
    )?;
    Ok(Some(if n.approve { APPROVED } else { REVOKED }))
}

/// Every item with a roaming state: direction, SPID, SP province, ServiceID, ServiceItemID,
/// name, state, set by.
pub fn list(conn: &Read, own: &str) -> DbResult<Vec<Vec<String>>> {
    let mut st = conn.prepare(
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

/// `vnetd roam revoke`: end the roam-out approval of a local item and queue RoamServiceRevoke
/// (6.6) in the same transaction. Err when the item is not a local item of that SP and service.
pub fn revoke_out(conn: &Write, spid: &str, service_id: &str, item_id: &str, reason: &str, now: i64) -> DbResult<Result<(), String>> {
    let local: Option<String> = conn
        .query_row(
            "SELECT sp.province_id FROM item i JOIN service s ON s.service_id = i.service_id JOIN sp ON sp.spid = s.spid
             WHERE i.service_item_id = ?1 AND s.service_id = ?2 AND sp.spid = ?3",
            params![item_id, service_id, spid],
            |r| r.get(0),
        )
        .optional()?;
    match local.as_deref() {
        None => return Ok(Err(format!("no item {item_id} of service {service_id} of SP {spid} in the catalogue"))),
        Some(p) if !p.is_empty() => return Ok(Err(format!("SP {spid} is not of this province: only local services roam out"))),
        Some(_) => {}
    }
    conn.execute(
        "UPDATE item SET roam_out = 0, roam_out_source = 'cli', updated_at = ?2 WHERE service_item_id = ?1",
        params![item_id, now],
    )?;
    let op = &crate::spec::outbound::ROAM_SERVICE_REVOKE;
    let payload = crate::spec::outbound::ordered(
        op.payload(),
        vec![("SPID", spid.to_string()), ("ServiceID", service_id.to_string()), ("ServiceItemID", item_id.to_string()), ("Reason", reason.to_string())],
    );
    crate::store::outbox::enqueue_op(conn, op, crate::store::outbox::CENTRE, &format!("roam:{spid}"), &payload, None, now)?;
    Ok(Ok(()))
}
