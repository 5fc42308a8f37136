//! Integration tests: one test binary (each file under tests/ would be a separate link).
//! Every test spawns the real `vnetd` binary.

mod fields;
mod harness;
mod smoke;
mod passport;
mod keys;
mod envelope;
mod xml_attacks;
mod crash;
mod cli;
mod http_attacks;
mod front_end;
mod catalog;
mod centre_sim;
mod contract;
mod billing;
mod sync;
mod tls;
mod tls_inbound;
mod web;
mod access;
mod safety;
mod observability;
mod operator;
mod chaos;
