//! Centre-only operations of ProvinceForVNet (spec 4.3).

use crate::app::App;
use crate::domain::peers;
use crate::ops::codes::*;
use crate::ops::{Call, Resp};
use crate::ops_support::logging::audit;

/// KeyUpdate: store a new key version for the centre peer (spec 4.3, 11).
pub fn key_update(app: &App, call: &Call) -> Resp {
    let key = call.plain("UpdateKeyValue").unwrap_or("");
    if key.len() != 48 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Resp::err(BAD_PARAMETER, "UpdateKeyValue must be 48 hex digits");
    }
    let now = app.clock.unix();
    let effect_at = match call.opt("EffectTimeStamp") {
        None => now,
        Some(ts) => match app.clock.parse_ts(ts) {
            Some(t) => t,
            None => return Resp::code(BAD_PARAMETER),
        },
    };
    let emergency = call.get("KeyRefreshType") == "2";
    let peer = call.caller_id().to_string();
    let (key, iv) = (key.to_string(), call.opt("DESInitialValue").map(str::to_string));
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
                &[("peer", &peer), ("version", &version), ("type", call.get("KeyRefreshType")), ("effect", &app.clock.format_ts(effect_at))],
            );
            Resp::ok()
        }
        Err(e) => Resp::db(&e),
    }
}
