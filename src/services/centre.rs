//! Synchronous calls to the centre (spec 6.1 RoamAuthV2, 6.9 roaming consumption): signed with
//! the centre key in effect, answered within `centre_timeout_ms`. Any failure to get a business
//! answer (connection, timeout, HTTP status, SOAP Fault) is `-22500` "centre unavailable".

use crate::app::App;
use crate::spec::codes::SYSTEM_ERROR;
use crate::services::Resp;
use crate::spec::incoming::Reply;
use crate::soap::client::{self, Answer};
use crate::spec::outbound::OutOp;

fn unavailable() -> Resp {
    Resp::err(SYSTEM_ERROR, "centre unavailable")
}

/// Is a centre peer with a URL configured?
pub fn configured(app: &App) -> bool {
    app.peers.centre().is_some_and(|c| c.url.as_deref().is_some_and(|u| !u.is_empty()))
}

/// Call `op` (a centre operation of `spec::outbound`) with SrcDeviceNo and ProvinceID followed by
/// `payload`, `op.payload()`'s fields in declared order (the typed `Payload`'s `values()`); the
/// plaintext of its `enc` fields is encrypted here under the centre key.
pub fn call(app: &App, op: &'static OutOp, payload: Vec<(&'static str, String)>) -> Result<Answer, Resp> {
    let centre = app.peers.centre().ok_or_else(unavailable)?;
    let url = centre.url.clone().filter(|u| !u.is_empty()).ok_or_else(unavailable)?;
    let key = centre.current_key(app.clock.unix()).ok_or_else(unavailable)?.key.clone();
    let payload = payload.into_iter().map(|(name, value)| (name, if op.is_enc(name) { key.encrypt_b64(value.as_bytes()) } else { value }));
    let all = client::centre_fields(&app.cfg.node.device_no, &app.cfg.node.province_id, payload);
    let answer = app.centre_client.send(&url, op, &key, all, app.clock.now_ts(), None);
    let op = op.name;
    match answer {
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

/// The centre's answer as the typed response `R`: its Result and ErrDescription, and R's fields
/// from the answer; `adjust` completes a success (a field the centre does not send).
pub fn relay<R: Reply>(a: &Answer, adjust: impl FnOnce(&mut R)) -> Resp {
    let mut body = R::read_text(&|name| a.get(name).to_string());
    if a.result == crate::spec::codes::OK {
        adjust(&mut body);
    }
    Resp::from(body).with_result(a.result, a.desc.chars().take(256).collect::<String>())
}
