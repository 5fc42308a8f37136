//! vnetd — the ChinaVNet (互联星空) province node, as a library so integration tests and the
//! benchmark can use its codecs; the daemon and CLI live in the `vnetd` binary.

pub mod api;
pub mod app;
pub mod centre_sim;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod jobs;
pub mod runtime;
pub mod services;
pub mod soap;
pub mod spec;
pub mod store;
pub mod sync;
pub mod web;
