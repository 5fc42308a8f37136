//! Calls the node makes (spec 6): SOAP 1.1 requests to the centre's one URL and to SPs, signed as
//! in 2.4 with the destination's key. Used by the outbox relay and by the synchronous centre calls.

use crate::crypto::{self, TdesKey};
use crate::soap::envelope::{self, Elem};
use crate::soap::writer::{write_fields, Value};
use crate::spec::outbound::{OutOp, CENTRE_HEAD};
use std::time::Duration;

pub use crate::spec::outbound::{CENTRE_NS, SP_NS};

/// Largest answer read from a peer.
const MAX_ANSWER_BYTES: u64 = 4 << 20;

/// Why a call produced no business answer. The text never carries key material.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// Connection refused, reset, timed out, DNS, …
    Transport(String),
    /// An HTTP status other than 200 (a SOAP Fault is reported as `Fault`).
    Status(u16),
    Fault(String),
    /// Not a SOAP answer with a Result.
    Malformed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(e) => write!(f, "transport: {e}"),
            CallError::Status(s) => write!(f, "HTTP status {s}"),
            CallError::Fault(s) => write!(f, "SOAP fault: {s}"),
            CallError::Malformed(s) => write!(f, "malformed answer: {s}"),
        }
    }
}

/// A business answer: Result, ErrDescription and the other fields by name.
#[derive(Debug, Clone)]
pub struct Answer {
    pub result: i32,
    pub desc: String,
    pub body: Elem,
}

impl Answer {
    /// A field of the answer, "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.body.child(name).map(|c| c.text.as_str()).unwrap_or("")
    }
}

/// The request document of `op` in namespace `ns`: fields in order, lists as container + items.
pub fn request(ns: &str, op: &str, fields: &[(&str, Value, &str)]) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    out.push_str(&format!("<soap:Envelope xmlns:soap=\"{}\"><soap:Body>", envelope::SOAP11_NS));
    out.push_str(&format!("<{op} xmlns=\"{ns}\">"));
    write_fields(&mut out, fields);
    out.push_str(&format!("</{op}></soap:Body></soap:Envelope>"));
    out
}

/// `fields` followed by TimeStamp and the Authenticator over every value in order (spec 2.4).
pub fn sign(key: &TdesKey, fields: Vec<(String, String)>, timestamp: String) -> Vec<(String, String)> {
    let mut out = fields;
    out.push(("TimeStamp".into(), timestamp));
    let values: Vec<&str> = out.iter().map(|(_, v)| v.as_str()).collect();
    let auth = crypto::authenticator(key, &values);
    out.push(("Authenticator".into(), auth));
    out
}

/// `fields` (the head and payload of `op`, in declared order) signed as [`sign`]. Debug builds
/// panic when the names are not `op`'s declared fields in order.
pub fn sign_op(op: &OutOp, key: &TdesKey, fields: Vec<(String, String)>, timestamp: String) -> Vec<(String, String)> {
    debug_assert!(
        fields.iter().map(|(n, _)| n.as_str()).eq(op.signed()[..op.signed().len() - 1].iter().copied()),
        "{}: fields {:?} are not the declared {:?}",
        op.name,
        fields.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        op.signed()
    );
    sign(key, fields, timestamp)
}

/// A centre operation's request fields: SrcDeviceNo and ProvinceID ([`CENTRE_HEAD`]) then `payload`.
pub fn centre_fields<N: Into<String>>(device_no: &str, province_id: &str, payload: impl IntoIterator<Item = (N, String)>) -> Vec<(String, String)> {
    let mut out = vec![(CENTRE_HEAD[0].to_string(), device_no.to_string()), (CENTRE_HEAD[1].to_string(), province_id.to_string())];
    out.extend(payload.into_iter().map(|(n, v)| (n.into(), v)));
    out
}

/// The certificates that verify the server of an `https://` URL (rustls): the system's trusted
/// roots, or the CA certificates of `tls.ca_file`.
#[derive(Clone)]
pub struct TlsRoots(ureq::tls::RootCerts);

impl TlsRoots {
    /// The system's roots when `ca_file` is empty, else every certificate of that PEM file; an
    /// unreadable file or one without a certificate is an error naming it.
    pub fn load(ca_file: &str) -> Result<TlsRoots, String> {
        if ca_file.is_empty() {
            return Ok(TlsRoots(ureq::tls::RootCerts::PlatformVerifier));
        }
        let pem = std::fs::read(ca_file).map_err(|e| format!("tls.ca_file {ca_file}: {e}"))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| format!("tls.ca_file {ca_file}: {e}"))? {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            return Err(format!("tls.ca_file {ca_file}: no PEM certificate in it"));
        }
        Ok(TlsRoots(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs))))
    }
}

/// A blocking SOAP client with keep-alive connections; `https://` URLs over TLS (rustls),
/// the server verified against `roots`.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub fn new(timeout: Duration, roots: &TlsRoots) -> Client {
        let tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls).root_certs(roots.0.clone()).build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_idle_connections_per_host(16)
            .user_agent(concat!("vnetd/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client { agent }
    }

    /// POST one operation and read its answer.
    pub fn call(&self, url: &str, ns: &str, op: &str, fields: &[(&str, Value, &str)]) -> Result<Answer, CallError> {
        let doc = request(ns, op, fields);
        let resp = self
            .agent
            .post(url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{op}\""))
            .send(doc.as_bytes())
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = resp
            .into_body()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let parsed = envelope::decode_body(&body, content_type.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|xml| envelope::parse(&xml).map_err(|e| e.to_string()));
        let env = match parsed {
            Ok(env) => env,
            Err(_) if status != 200 => return Err(CallError::Status(status)),
            Err(e) => return Err(CallError::Malformed(e)),
        };
        if env.op.name == "Fault" {
            let reason = ["faultstring", "Reason"]
                .iter()
                .find_map(|n| env.op.child(n))
                .map(|c| if c.text.is_empty() { c.children.first().map(|t| t.text.clone()).unwrap_or_default() } else { c.text.clone() })
                .unwrap_or_default();
            return Err(CallError::Fault(reason.chars().take(200).collect()));
        }
        if status != 200 {
            return Err(CallError::Status(status));
        }
        let result = env
            .op
            .child("Result")
            .and_then(|r| r.text.trim().parse::<i32>().ok())
            .ok_or_else(|| CallError::Malformed(format!("{} without a Result", env.op.name)))?;
        let desc = env.op.child("ErrDescription").map(|c| c.text.clone()).unwrap_or_default();
        Ok(Answer { result, desc, body: env.op })
    }
}

impl Client {
    /// Sign `fields` (head and payload of `op`, declared order) with `key` and POST them to `url`
    /// in `op`'s namespace; `records` is the trailer list (BatchSync's Records) if `op` has one.
    pub fn send(&self, url: &str, op: &OutOp, key: &TdesKey, fields: Vec<(String, String)>, timestamp: String, records: Option<Vec<Vec<(String, String)>>>) -> Result<Answer, CallError> {
        let signed = sign_op(op, key, fields, timestamp);
        let mut all = text_fields(&signed);
        debug_assert_eq!(op.trailer.is_some(), records.is_some(), "{}: trailer", op.name);
        if let (Some(t), Some(r)) = (op.trailer, records) {
            all.push((t.name, Value::List(r), t.item));
        }
        self.call(url, op.namespace(), op.name, &all)
    }
}

/// Text fields as writer fields.
pub fn text_fields(fields: &[(String, String)]) -> Vec<(&str, Value, &str)> {
    fields.iter().map(|(k, v)| (k.as_str(), Value::Text(v.clone()), "")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_signed_in_field_order() {
        let key = TdesKey::from_hex("0123456789abcdeffedcba987654321089abcdef01234567", "0102030405060708").unwrap();
        let f = sign(&key, vec![("SrcDeviceNo".into(), "3500000000000101".into()), ("ProvinceID".into(), "35".into())], "2026-11-29 10:00:00".into());
        assert_eq!(f.len(), 4);
        assert!(crypto::verify_authenticator(&key, &["3500000000000101", "35", "2026-11-29 10:00:00"], &f[3].1));
        let op = &crate::spec::outbound::CLOCK_SYNC;
        assert_eq!(sign_op(op, &key, vec![("SrcDeviceNo".into(), "3500000000000101".into()), ("ProvinceID".into(), "35".into()), ("LocalTime".into(), "x".into())], "t".into()).len(), 5);
        let doc = request(op.namespace(), op.name, &text_fields(&f));
        let env = envelope::parse(&doc).unwrap();
        assert_eq!(env.op.name, "ClockSync");
        assert_eq!(env.op.child("ProvinceID").unwrap().text, "35");
    }
}
