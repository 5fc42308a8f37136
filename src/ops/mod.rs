//! The operation registry. Every SOAP operation is declared once, as data (`table.rs`); that one
//! declaration drives request parsing, field validation with the per-field codes, the
//! Authenticator, idempotency, the WSDL and the response shape. Service modules hold only the
//! business calls.

pub mod legacy;
pub mod pipeline;
pub mod table;

use crate::app::App;
use crate::spec::{Field, ListSpec, Service};
use crate::spec::codes;
use crate::soap::Value;
use std::collections::HashMap;

/// How an operation is handled.
pub type Handler = fn(&App, &Call) -> Resp;

/// The declaration of one operation of one service.
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
    /// Checks beyond single-field syntax that need only the request and the clock (validation
    /// stage 2): Some(code) refuses the request.
    pub check: Option<fn(&Call, &crate::clock::Clock) -> Option<i32>>,
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
    /// The field's value, "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }
    /// The field's value, None when absent or empty.
    pub fn opt(&self, name: &str) -> Option<&str> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }
    /// The decrypted value of an `enc` field.
    pub fn plain(&self, name: &str) -> Option<&str> {
        self.plain.get(name).map(String::as_str)
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
}

impl Resp {
    pub fn ok() -> Resp {
        Resp { result: 0, desc: String::new(), values: HashMap::new() }
    }
    /// A failure with the code's standard description.
    pub fn code(result: i32) -> Resp {
        Resp { result, desc: codes::describe(result).to_string(), values: HashMap::new() }
    }
    /// A failure with a specific description (must never carry internals or secrets).
    pub fn err(result: i32, desc: impl Into<String>) -> Resp {
        Resp { result, desc: desc.into(), values: HashMap::new() }
    }
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Resp {
        self.values.insert(name.to_string(), Value::Text(value.into()));
        self
    }
    pub fn with_list(mut self, name: &str, items: Vec<Vec<(String, String)>>) -> Resp {
        self.values.insert(name.to_string(), Value::List(items));
        self
    }
    /// A database failure, logged here once with its cause; the peer sees only the code.
    pub fn db(e: &crate::store::DbError) -> Resp {
        log::error!("database error: {e}");
        Resp::code(if e.is_disk() { codes::DISK_ERROR } else { codes::SYSTEM_ERROR })
    }
    /// Stored as the idempotent answer? Not for parameter or system errors (spec 11).
    pub fn storable(&self) -> bool {
        !((-21999..=-21500).contains(&self.result) || self.result == codes::SYSTEM_ERROR || self.result == codes::DISK_ERROR)
    }
}
