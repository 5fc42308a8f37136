//! Service modules: the business calls behind each declared operation.
pub mod access;
pub mod billing;
pub mod centre;
pub mod passport;
pub mod province_for_vnet;
pub mod sso;
