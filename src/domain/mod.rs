//! Business rules. No HTTP or SOAP types here.
pub mod access;
pub mod billing;
pub mod calendar;
pub mod catalog;
pub mod passport;
pub mod peers;
pub mod roaming;
pub mod sso;
