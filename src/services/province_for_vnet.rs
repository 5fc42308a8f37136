//! Centre-only operations of ProvinceForVNet (spec 4.3).

use crate::app::App;
use crate::domain::{peers, roaming};
use crate::services::passport;
use crate::spec::codes::*;
use crate::services::{Call, Resp};
use crate::spec::incoming::{KeyUpdate, RoamAuthV2, RoamServiceNotify};
use crate::runtime::logging::audit;

/// KeyUpdate: store a new key version for the centre peer (spec 4.3, 11).
pub fn key_update(app: &App, call: &Call, req: KeyUpdate::Request) -> Resp {
    let key = req.UpdateKeyValue;
    if key.len() != 48 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Resp::err(BAD_PARAMETER, "UpdateKeyValue must be 48 hex digits");
    }
    let now = app.clock.unix();
    let effect_at = match &req.EffectTimeStamp {
        None => now,
        Some(ts) => match app.clock.parse_ts(ts) {
            Some(t) => t,
            None => return Resp::code(BAD_PARAMETER),
        },
    };
    let emergency = req.KeyRefreshType == "2";
    let peer = call.caller_id().to_string();
    let iv = req.DESInitialValue;
    let r = app.store.write({
        let peer = peer.clone();
        move |c| peers::add_key(c, &peer, &key, iv.as_deref(), effect_at, emergency, now)
    });
    match r {
        Ok(version) => {
            app.peers.invalidate();
            let version = version.map(|v| v.to_string()).unwrap_or_else(|| "unchanged".into());
            audit(
                "key_update",
                &[("peer", &peer), ("version", &version), ("type", &req.KeyRefreshType), ("effect", &app.clock.format_ts(effect_at))],
            );
            Resp::ok()
        }
        Err(e) => Resp::db(&e),
    }
}

/// RoamAuthV2 (4.3): the centre asks this home province to authenticate its user for a roaming
/// use. Auth rules; a ServiceID must be approved for this province (-21001). Not stored (11).
pub fn roam_auth_v2(app: &App, call: &Call, req: RoamAuthV2::Request) -> Resp {
    let channel = format!("centre:{}", call.caller_id());
    let user = match passport::authenticate(app, &channel, &req.AccountType, &req.Account, &req.Password) {
        Ok(u) => u,
        Err(passport::AuthFail::Refused(r)) => return r,
        Err(passport::AuthFail::NotLocal) => return passport::unknown_account(app, &channel),
    };
    if let Some(id) = &req.ServiceID {
        match app.store.read(|c| crate::domain::catalog::service(c, id)) {
            Ok(Some(s)) if s.local || s.roams_in => {}
            Ok(_) => return Resp::code(REGION_NOT_ALLOWED),
            Err(e) => return Resp::db(&e),
        }
    }
    passport::auth_result(app, user).into()
}

/// RoamServiceNotify (4.3): approve (1), revoke (2) or verify (3) the roaming of an item: roam-in
/// for another province's or the centre's item, roam-out for a local one. Status 1/2/0.
pub fn roam_service_notify(app: &App, call: &Call, req: RoamServiceNotify::Request) -> Resp {
    let own = app.cfg.node.province_id.clone();
    let action = req.ActionType;
    let notice = roaming::Notice {
        approve: action == "1",
        spid: req.SPID,
        sp_province: req.SPProvinceID,
        service_id: req.ServiceID,
        item_id: req.ServiceItemID,
        item_name: req.ServiceItemName,
        fee_type: req.FeeType,
        price: req.Price.parse().unwrap_or(0),
    };
    let status = |s: &str| RoamServiceNotify::Response { Status: s.to_string() };
    if action == "3" {
        return match app.store.read(|c| roaming::status(c, &own, &notice.sp_province, &notice.item_id)) {
            Ok(s) => status(s).into(),
            Err(e) => Resp::db(&e),
        };
    }
    let now = app.clock.unix();
    let r = app.store.write({
        let (own, notice) = (own.clone(), notice.clone());
        move |c| roaming::apply(c, &own, &notice, now)
    });
    match r {
        Ok(Some(s)) => {
            let direction = if notice.sp_province == own { "out" } else { "in" };
            audit(
                "roaming_change",
                &[("by", call.caller_id()), ("direction", direction), ("item", &notice.item_id), ("status", s)],
            );
            status(s).into()
        }
        Ok(None) => Resp::coded(SERVICE_ITEM_ABNORMAL, status(roaming::UNKNOWN)),
        Err(e) => Resp::db(&e),
    }
}
