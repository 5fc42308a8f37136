//! Service modules: the business calls behind each declared operation.
pub mod access;
pub mod billing;
mod call;
pub mod centre;
pub mod errors;
pub mod passport;
pub mod province_for_vnet;
pub mod sso;

pub use call::{fingerprint, stored_response, write_idempotent, Call, Check, Handler, Op, Resp};
