//! The handler interface: what an operation is (`Op`: a message of `crate::spec::incoming` on a
//! service, bound to its handler in `crate::api::table`), the validated request (`Call`, from
//! which a handler's typed request is read) and the business outcome it returns (`Resp`, built
//! from the message's typed response); and the idempotent write every state-changing handler goes
//! through.

use crate::app::App;
use crate::crypto;
use crate::soap::Value;
use crate::spec::codes;
use crate::spec::incoming::{Reply, Request};
use crate::spec::{Field, ListSpec, Service, Ty};
use crate::store::idempotency;
use std::collections::HashMap;

/// How an operation is handled: reads the typed request from the call, calls the typed handler.
pub type Handler = fn(&App, &Call) -> Resp;
/// Checks beyond single-field syntax that need only the request and the clock (validation
/// stage 2): Some(code) refuses the request.
pub type Check = fn(&Call, &crate::clock::Clock) -> Option<i32>;

/// One operation of one service: its declaration (`crate::spec::incoming`) and its handler.
pub struct Op {
    pub service: Service,
    pub name: &'static str,
    /// Request fields in Authenticator order (for authenticated operations: caller id first,
    /// then the operation's fields, then TimeStamp and Authenticator).
    pub request: &'static [Field],
    /// Response fields after Result and ErrDescription, in order.
    pub response: &'static [&'static str],
    pub lists: &'static [ListSpec],
    /// Carries a caller id, TimeStamp and Authenticator (all but GetTime).
    pub authenticated: bool,
    /// Idempotent by TransactionID (spec 2.7).
    pub idempotent: bool,
    pub handler: Handler,
    pub check: Option<Check>,
    pub doc: &'static str,
}

impl Op {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.request.iter().find(|f| f.name == name)
    }
    pub fn list(&self, name: &str) -> Option<&ListSpec> {
        self.lists.iter().find(|l| l.name == name)
    }
}

/// A validated request, as handed to a handler.
pub struct Call {
    pub op: &'static Op,
    /// The calling peer (None only for unauthenticated operations).
    pub caller: Option<std::sync::Arc<crate::domain::peers::Peer>>,
    /// Raw field values as transmitted (absent = empty).
    pub values: HashMap<&'static str, String>,
    /// Decrypted `enc` fields that were present.
    pub plain: HashMap<&'static str, String>,
    /// Fingerprint of the request for idempotency (empty for non-idempotent operations).
    pub fingerprint: String,
}

impl Call {
    /// The handler's typed request: every field by its declared name, `enc` fields decrypted.
    pub fn request<R: Request>(&self) -> R {
        R::read(&|name| {
            let enc = self.op.field(name).is_some_and(|f| f.ty == Ty::Enc);
            if enc { self.plain.get(name) } else { self.values.get(name) }.cloned()
        })
    }
    /// A field's raw value as transmitted, "" when absent: for the envelope checks and for
    /// declaration-driven code (forwarding the fields an outgoing message declares). Handlers
    /// read their typed request instead.
    pub fn raw(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }
    pub fn caller_id(&self) -> &str {
        self.caller.as_ref().map(|p| p.id.as_str()).unwrap_or("")
    }
}

/// A business outcome: Result, ErrDescription and the response values by name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resp {
    pub result: i32,
    pub desc: String,
    pub values: HashMap<String, Value>,
    /// Refused because a bounded pool was full (Argon2): the listener answers HTTP 503 with
    /// `Retry-After` instead of a SOAP body. Never stored.
    #[serde(skip)]
    pub overloaded: bool,
}

impl Resp {
    pub fn ok() -> Resp {
        Resp { result: 0, desc: String::new(), values: HashMap::new(), overloaded: false }
    }
    /// A failure with the code's standard description.
    pub fn code(result: i32) -> Resp {
        Resp { result, desc: codes::describe(result).to_string(), values: HashMap::new(), overloaded: false }
    }
    /// A failure with a specific description (must never carry internals or secrets).
    pub fn err(result: i32, desc: impl Into<String>) -> Resp {
        Resp { result, desc: desc.into(), values: HashMap::new(), overloaded: false }
    }
    /// The hashing pool's queue is full: HTTP 503 with `Retry-After` at once (a login waits for
    /// no queue longer than the pool's).
    pub fn overloaded() -> Resp {
        Resp { overloaded: true, ..Resp::err(codes::SYSTEM_ERROR, "busy, try again") }
    }
    /// A failure with the code's standard description that still carries response fields
    /// (RoamServiceNotify's Status, Reconcile's local totals).
    pub fn coded(result: i32, body: impl Reply) -> Resp {
        Resp { result, desc: codes::describe(result).to_string(), ..Resp::from(body) }
    }
    /// The same answer with another Result and description (Reconcile answers -22001 with its
    /// response fields).
    pub fn with_result(self, result: i32, desc: impl Into<String>) -> Resp {
        Resp { result, desc: desc.into(), ..self }
    }
    /// A database failure, logged here once with its cause; the peer sees only the code. A
    /// refused write (disk full, read-only) is logged at error once per episode by
    /// `store::health` and counted per request in `vnetd_requests_total{result="-22501"}`: a line
    /// per request would flood a log that may be on the full disk.
    pub fn db(e: &crate::store::DbError) -> Resp {
        log::log!(e.log_level(), "database error: {e}");
        Resp::code(if e.is_disk() { codes::DISK_ERROR } else { codes::SYSTEM_ERROR })
    }
    /// Stored as the idempotent answer? Not for parameter or system errors (spec 11).
    pub fn storable(&self) -> bool {
        !((-21999..=-21500).contains(&self.result) || self.result == codes::SYSTEM_ERROR || self.result == codes::DISK_ERROR)
    }
}

/// Success with a message's typed response.
impl<R: Reply> From<R> for Resp {
    fn from(r: R) -> Resp {
        let values = r.into_values().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Resp { result: 0, desc: String::new(), values, overloaded: false }
    }
}

/// SHA-1 over every field but TimeStamp and Authenticator (spec 11).
pub fn fingerprint(op: &Op, values: &HashMap<&'static str, String>) -> String {
    let mut s = String::new();
    for f in op.request.iter().filter(|f| f.name != "TimeStamp" && f.name != "Authenticator") {
        s.push_str(f.name);
        s.push('\u{1f}');
        s.push_str(values.get(f.name).map(String::as_str).unwrap_or(""));
        s.push('\u{1e}');
    }
    crypto::sha1_b64(s.as_bytes())
}

/// The stored answer to a repeat of `call`: the same fingerprint gives the stored response, another
/// one -21513 (spec 2.7).
pub fn stored_response(conn: &crate::store::Read, call_caller: &str, op: &str, txid: &str, fp: &str) -> crate::store::DbResult<Option<Resp>> {
    Ok(idempotency::stored(conn, call_caller, op, txid)?.map(|(stored_fp, json)| {
        if stored_fp != fp {
            return Resp::code(codes::BAD_TRANSACTION_ID);
        }
        serde_json::from_str::<Resp>(&json).unwrap_or_else(|e| {
            log::error!("stored idempotent response is unreadable: {e}");
            Resp::code(codes::SYSTEM_ERROR)
        })
    }))
}

/// Run the state change `f` of an idempotent operation in the writer, together with the
/// idempotency record: the authoritative repeat check happens in the same transaction, so
/// concurrent repeats cause one effect, and a stored response exists iff its effect committed.
pub fn write_idempotent<F>(app: &App, call: &Call, f: F) -> Resp
where
    F: FnOnce(&crate::store::Write) -> crate::store::DbResult<Resp> + Send + 'static,
{
    let (caller, op, txid, fp) = (call.caller_id().to_string(), call.op.name, call.raw("TransactionID").to_string(), call.fingerprint.clone());
    let now = app.clock.unix();
    let r = app.store.write_with(move |c| {
        if let Some(stored) = stored_response(c, &caller, op, &txid, &fp)? {
            return Ok((stored, false));
        }
        let resp = f(c)?;
        // A parameter or system error is not stored (spec 11), and whatever `f` wrote for it is
        // rolled back: no effect without its idempotency record.
        if !resp.storable() {
            return Ok((resp, false));
        }
        let json = serde_json::to_string(&resp).map_err(|e| crate::store::DbError::Other(e.to_string()))?;
        idempotency::store(c, &caller, op, &txid, &fp, &json, now)?;
        Ok((resp, true))
    });
    r.unwrap_or_else(|e| Resp::db(&e))
}
