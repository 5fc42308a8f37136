//! Roaming approvals in the catalogue (spec 4.3 RoamServiceNotify, 6.6, 9 `vnetd roam`):
//! roam-in (another province's or the centre's item approved for this province's users) and
//! roam-out (a local item approved for other provinces' users), kept per item.

use crate::store::DbResult;
use crate::store::{Read, Write};
use crate::store::roaming as db;

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
    let row = db::item_state(conn, item_id)?;
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
        let changed = db::set_out_by_notify(conn, &n.item_id, &n.service_id, n.approve, now)?;
        if changed == 0 {
            return Ok(None);
        }
        return Ok(Some(if n.approve { APPROVED } else { REVOKED }));
    }
    let item = db::ForeignItem {
        spid: &n.spid,
        sp_province: &n.sp_province,
        service_id: &n.service_id,
        item_id: &n.item_id,
        item_name: &n.item_name,
        fee_type: &n.fee_type,
        price: n.price,
    };
    db::upsert_foreign_item(conn, &item, n.approve, now)?;
    Ok(Some(if n.approve { APPROVED } else { REVOKED }))
}

pub use crate::store::roaming::list;

/// `vnetd roam revoke`: end the roam-out approval of a local item and queue RoamServiceRevoke
/// (6.6) in the same transaction. Err when the item is not a local item of that SP and service.
pub fn revoke_out(conn: &Write, spid: &str, service_id: &str, item_id: &str, reason: &str, now: i64) -> DbResult<Result<(), String>> {
    let local = db::sp_province_of_item(conn, spid, service_id, item_id)?;
    match local.as_deref() {
        None => return Ok(Err(format!("no item {item_id} of service {service_id} of SP {spid} in the catalogue"))),
        Some(p) if !p.is_empty() => return Ok(Err(format!("SP {spid} is not of this province: only local services roam out"))),
        Some(_) => {}
    }
    db::revoke_out_by_cli(conn, item_id, now)?;
    use crate::spec::outbound::{RoamServiceRevoke, ROAM_SERVICE_REVOKE};
    let payload = RoamServiceRevoke::Payload {
        SPID: spid.to_string(),
        ServiceID: service_id.to_string(),
        ServiceItemID: item_id.to_string(),
        Reason: reason.to_string(),
    }
    .values();
    crate::store::outbox::enqueue_op(conn, &ROAM_SERVICE_REVOKE, crate::store::outbox::CENTRE, &format!("roam:{spid}"), &payload, None, now)?;
    Ok(Ok(()))
}
