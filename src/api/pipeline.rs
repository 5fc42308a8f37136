//! The one generic path every SOAP request takes (spec 2.4, 11): envelope → operation → caller →
//! Authenticator → TimeStamp → field syntax → `enc` fields → idempotency → handler → response.

use crate::services::{fingerprint, stored_response, Call, Op, Resp};
use crate::spec::codes;
use crate::spec::{valid, Service, Ty};
use crate::app::App;
use crate::crypto::{self, EncError};
use crate::soap::envelope::{self, SoapVersion};
use crate::soap::writer::{self, FaultCode, Value};
use crate::runtime::ratelog::{self, Refusal};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Seconds for a `Retry-After` header (a 503 for an overloaded pool).
    pub retry_after_s: Option<u32>,
}

fn fault_reply(version: SoapVersion, code: FaultCode, reason: &str) -> Reply {
    Reply {
        status: 500,
        content_type: writer::content_type(version, "UTF-8"),
        body: writer::fault(version, code, reason).into_bytes(),
        retry_after_s: None,
    }
}

/// Handle one POSTed SOAP request for `service`.
/// `source` is the client's address, for the log line of a refusal.
pub fn dispatch(app: &App, service: Service, body: &[u8], content_type: Option<&str>, source: Option<IpAddr>) -> Reply {
    let started = Instant::now();
    // Until the envelope says otherwise, answer in the version the Content-Type suggests.
    let guess = if content_type.is_some_and(|c| c.to_ascii_lowercase().contains("soap+xml")) { SoapVersion::V12 } else { SoapVersion::V11 };
    let xml = match envelope::decode_body(body, content_type) {
        Ok(x) => x,
        Err(e) => return refused(app, service, guess, &e.to_string(), source),
    };
    let env = match envelope::parse(&xml) {
        Ok(e) => e,
        Err(e) => return refused(app, service, guess, &e.to_string(), source),
    };
    let Some(op) = super::table::find(service, &env.op.name) else {
        return refused(app, service, env.version, "unknown operation", source);
    };
    let values = collect(op, &env.op);
    let _db_op = crate::store::OpScope::enter(op.name);
    // The caller id the request claims, for the log line of a refusal (before `process` takes the values).
    let claimed = if op.authenticated { values.get(op.request[0].name).cloned().unwrap_or_default() } else { String::new() };
    let (resp, caller) = process(app, op, values);
    if ratelog::is_integration_fault(resp.result) {
        app.refusal_log.refused(&Refusal {
            peer: &claimed,
            operation: op.name,
            service: service.name(),
            source,
            code: Some(resp.result),
            reason: fault_meaning(resp.result),
        });
    }
    app.metrics.record_request(service.name(), op.name, resp.result, started.elapsed().as_secs_f64());
    if resp.overloaded {
        return overloaded();
    }
    let gb = caller.as_ref().is_some_and(|p| p.gb2312);
    let charset = if gb { "gb2312" } else { "UTF-8" };
    let doc = render(op, env.version, &resp, charset);
    Reply { status: 200, content_type: writer::content_type(env.version, charset), body: writer::encode_for(doc, gb), retry_after_s: None }
}

/// Operations that always hash a password (Argon2 verify): shed on the event loop while its
/// queue is full (`api::http`'s `Service::shed`).
const HASHING: &[&str] = &["UserAuth", "PhoneNumAuth", "CrossAuth", "RoamAuthV2"];

/// Is `op` one that always hashes a password?
pub fn sheds_when_hashing_is_full(op: &str) -> bool {
    HASHING.contains(&op)
}

/// Point reads: one or two indexed look-ups, no writer, no hashing, no outgoing call. They
/// run on the event loop (`api::server::Service::inline`), which spares them two thread
/// hand-offs; anything else, or a body this scan cannot name, goes to a worker.
const INLINE: &[&str] = &["GetUserinfo", "UserInfoQueryV3", "GetTime", "IPAuth", "ServiceAuth"];

/// May `op` run on the event loop?
pub fn runs_inline(op: &str) -> bool {
    INLINE.contains(&op)
}

/// The local name of the first element inside the SOAP Body (the operation), found by a scan
/// of the bytes (no parse): for load shedding on the event loop. None when not found.
pub fn body_operation(body: &[u8]) -> Option<&str> {
    let at = body.windows(5).position(|w| w == b"Body>")? + 5;
    let rest = &body[at..];
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = rest.get(start..)?.strip_prefix(b"<")?;
    let end = rest.iter().position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/').unwrap_or(rest.len());
    let name = std::str::from_utf8(&rest[..end]).ok()?;
    Some(name.rsplit(':').next().unwrap_or(name))
}

/// A full Argon2 queue: the same fast refusal as a full worker queue (api::server).
pub fn overloaded() -> Reply {
    Reply { status: 503, content_type: "text/plain; charset=utf-8".into(), body: b"busy, try again\n".to_vec(), retry_after_s: Some(1) }
}

/// What an integration-fault Result means, for the log.
fn fault_meaning(code: i32) -> &'static str {
    match code {
        codes::CALLER_UNKNOWN => "caller unknown or disabled",
        codes::NOT_AUTHORIZED => "caller's kind or operation list does not allow this operation",
        codes::BAD_AUTHENTICATOR => "Authenticator does not verify under the caller's keys",
        codes::BAD_TIMESTAMP => "TimeStamp outside the clock tolerance",
        _ => "refused",
    }
}

fn refused(app: &App, service: Service, version: SoapVersion, reason: &str, source: Option<IpAddr>) -> Reply {
    app.metrics.inc_counter("vnetd_soap_faults_total", "SOAP requests refused with a Client fault", &[("service", service.name())], 1);
    app.refusal_log.refused(&Refusal { peer: "", operation: "", service: service.name(), source, code: None, reason });
    fault_reply(version, FaultCode::Client, reason)
}

/// Field values by declared name (first occurrence wins; unknown elements are ignored).
fn collect(op: &'static Op, elem: &envelope::Elem) -> HashMap<&'static str, String> {
    let mut out = HashMap::with_capacity(op.request.len());
    for f in op.request {
        if let Some(c) = elem.child(f.name) {
            out.insert(f.name, c.text.clone());
        }
    }
    out
}

/// Render a response with every listed element in order.
pub fn render(op: &Op, version: SoapVersion, resp: &Resp, charset: &str) -> String {
    writer::response_with(version, &op.service.namespace(), op.name, charset, |out| {
        writer::write_text(out, "Result", &resp.result.to_string());
        writer::write_text(out, "ErrDescription", &resp.desc);
        for name in op.response {
            match op.list(name) {
                Some(l) => {
                    let items = match resp.values.get(*name) {
                        Some(Value::List(items)) => items.as_slice(),
                        _ => &[],
                    };
                    writer::write_list(out, name, l.item, items);
                }
                None => {
                    let text = match resp.values.get(*name) {
                        Some(Value::Text(t)) => t.as_str(),
                        _ => "",
                    };
                    writer::write_text(out, name, text);
                }
            }
        }
    })
}

/// Envelope checks, syntax, `enc` fields, idempotency look-up, then the handler.
pub fn process(app: &App, op: &'static Op, values: HashMap<&'static str, String>) -> (Resp, Option<Arc<crate::domain::peers::Peer>>) {
    let now = app.clock.unix();
    let mut call = Call { op, caller: None, values, plain: HashMap::new(), fingerprint: String::new() };
    let mut verify_key = None;
    if op.authenticated {
        // A malformed caller id is an unknown caller, even when a peer has that id (spec 11):
        // an SPID sent as SrcDeviceNo must not reach the kind check.
        let id_field = &op.request[0];
        let id = call.raw(id_field.name);
        let peer = match app.peers.get(id) {
            Some(p) if p.active && valid(id_field, id) => p,
            _ => return (Resp::code(codes::CALLER_UNKNOWN), None),
        };
        if peer.kind != op.service.caller_kind() || !peer.may_call(op.name) {
            return (Resp::code(codes::NOT_AUTHORIZED), Some(peer));
        }
        let signed: Vec<&str> = op.request.iter().filter(|f| f.name != "Authenticator").map(|f| call.raw(f.name)).collect();
        let given = call.raw("Authenticator");
        let grace = app.cfg.security.key_grace_h * 3600;
        verify_key = peer
            .verify_keys(now, grace)
            .into_iter()
            .find(|k| crypto::verify_authenticator(&k.key, &signed, given))
            .map(|k| k.key.clone());
        if verify_key.is_none() {
            return (Resp::code(codes::BAD_AUTHENTICATOR), Some(peer));
        }
        let ts_ok = app.clock.parse_ts(call.raw("TimeStamp")).is_some_and(|ts| (ts - now).abs() <= app.cfg.security.clock_tolerance_s);
        if !ts_ok {
            return (Resp::code(codes::BAD_TIMESTAMP), Some(peer));
        }
        call.caller = Some(peer);
    }
    let caller = call.caller.clone();
    // Field syntax in the listed order; the first failure wins.
    for f in op.request {
        if op.authenticated && (f.name == op.request[0].name || f.name == "TimeStamp" || f.name == "Authenticator") {
            continue;
        }
        let v = call.raw(f.name);
        let bad = if v.is_empty() { f.required } else { !valid(f, v) };
        if bad {
            return (Resp::code(codes::param_code(f.name)), caller);
        }
    }
    // Stage-2 checks that need only the request and the clock are syntax: before `enc` fields (spec 11).
    if let Some(check) = op.check {
        if let Some(code) = check(&call, &app.clock) {
            return (Resp::code(code), caller);
        }
    }
    for f in op.request.iter().filter(|f| f.ty == Ty::Enc) {
        let v = call.raw(f.name);
        if v.is_empty() {
            continue;
        }
        let Some(key) = verify_key.as_ref() else { continue };
        match crypto::decrypt_enc_field(key, v) {
            Ok(p) => {
                call.plain.insert(f.name, p);
            }
            Err(EncError::Empty) => return (Resp::code(codes::DECRYPT_EMPTY), caller),
            Err(_) => return (Resp::code(codes::DECRYPT_FAILED), caller),
        }
    }
    if op.idempotent {
        call.fingerprint = fingerprint(op, &call.values);
        match lookup_idempotent(app, &call) {
            Ok(Some(stored)) => return (stored, caller),
            Ok(None) => {}
            Err(e) => return (Resp::db(&e), caller),
        }
    }
    let resp = (op.handler)(app, &call);
    (resp, caller)
}

fn lookup_idempotent(app: &App, call: &Call) -> crate::store::DbResult<Option<Resp>> {
    let (caller, op, txid, fp) = (call.caller_id(), call.op.name, call.raw("TransactionID"), call.fingerprint.as_str());
    app.store.read(|c| stored_response(c, caller, op, txid, fp))
}

#[cfg(test)]
mod tests {
    use super::body_operation;

    #[test]
    fn the_operation_is_found_by_a_scan_of_the_body() {
        let e = |b: &str| body_operation(b.as_bytes()).map(str::to_string);
        assert_eq!(e("<s:Envelope><s:Body><UserAuth><SPID>1</SPID></UserAuth></s:Body></s:Envelope>").as_deref(), Some("UserAuth"));
        assert_eq!(e("<soap:Body>\n  <ns1:PhoneNumAuth xmlns:ns1=\"x\">").as_deref(), Some("PhoneNumAuth"));
        assert_eq!(e("<Body><GetTime/></Body>").as_deref(), Some("GetTime"));
        assert_eq!(e("<Envelope>no body</Envelope>"), None);
        assert_eq!(e("<Body>text</Body>"), None);
    }
}
