//! Business rules. No HTTP or SOAP types here.
pub mod access;
pub mod billing;
pub mod calendar;
pub mod catalog;
pub mod error;
pub mod passport;
pub mod peers;
pub mod roaming;
pub mod sso;

pub use error::Error;
