//! Synchronous calls to the centre (spec 6.1 RoamAuthV2, 6.9 roaming consumption): signed with
//! the centre key in effect, answered within `centre_timeout_ms`. Any failure to get a business
//! answer (connection, timeout, HTTP status, SOAP Fault) is `-22500` "centre unavailable".

use crate::app::App;
use crate::spec::codes::SYSTEM_ERROR;
use crate::services::{Call, Resp};
use crate::soap::client::{self, Answer};

fn unavailable() -> Resp {
    Resp::err(SYSTEM_ERROR, "centre unavailable")
}

/// Is a centre peer with a URL configured?
pub fn configured(app: &App) -> bool {
    app.peers.centre().is_some_and(|c| c.url.as_deref().is_some_and(|u| !u.is_empty()))
}

/// Call `op` at the centre with SrcDeviceNo and ProvinceID followed by `fields`; `encrypt`
/// names fields whose plaintext is encrypted here under the centre key.
pub fn call(app: &App, op: &str, fields: Vec<(String, String)>, encrypt: &[&str]) -> Result<Answer, Resp> {
    let centre = app.peers.centre().ok_or_else(unavailable)?;
    let url = centre.url.clone().filter(|u| !u.is_empty()).ok_or_else(unavailable)?;
    let key = centre.current_key(app.clock.unix()).ok_or_else(unavailable)?.key.clone();
    let mut all = vec![("SrcDeviceNo".to_string(), app.cfg.node.device_no.clone()), ("ProvinceID".to_string(), app.cfg.node.province_id.clone())];
    for (name, value) in fields {
        let value = if encrypt.contains(&name.as_str()) { key.encrypt_b64(value.as_bytes()) } else { value };
        all.push((name, value));
    }
    let signed = client::sign(&key, all, app.clock.now_ts());
    match app.centre_client.call(&url, client::CENTRE_NS, op, &client::text_fields(&signed)) {
        Ok(a) => {
            app.reach.answered(&app.metrics, crate::store::outbox::CENTRE, &url);
            app.metrics.inc_counter("vnetd_centre_calls_total", "Synchronous calls to the centre by operation and outcome", &[("operation", op), ("outcome", "answered")], 1);
            Ok(a)
        }
        Err(e) => {
            app.metrics.inc_counter("vnetd_centre_calls_total", "Synchronous calls to the centre by operation and outcome", &[("operation", op), ("outcome", "failed")], 1);
            // Not answering: one warning when it starts and one when it ends (`reach`), each
            // attempt at debug. An answer that is not a business answer: a warning each time.
            match e {
                client::CallError::Transport(_) | client::CallError::Status(_) => {
                    log::debug!("centre call {op} failed: {e}");
                    app.reach.failed(&app.metrics, crate::store::outbox::CENTRE, &url, &e);
                }
                _ => {
                    log::warn!("centre call {op} failed: {e}");
                    app.reach.answered(&app.metrics, crate::store::outbox::CENTRE, &url);
                }
            }
            Err(unavailable())
        }
    }
}

/// The centre's answer as this operation's response: Result, ErrDescription and the listed fields.
pub fn relay_answer(call: &Call, a: &Answer) -> Resp {
    let mut r = Resp { result: a.result, desc: a.desc.chars().take(256).collect(), values: Default::default() };
    for name in call.op.response {
        r = r.with(name, a.get(name));
    }
    r
}
