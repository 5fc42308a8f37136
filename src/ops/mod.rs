//! The operation registry. Every SOAP operation is declared once, as data (`table.rs`); that one
//! declaration drives request parsing, field validation with the per-field codes, the
//! Authenticator, idempotency, the WSDL and the response shape. Service modules hold only the
//! business calls.

pub mod legacy;
pub mod pipeline;
pub mod table;

pub use crate::services::{Call, Op, Resp};

