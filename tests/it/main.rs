//! Integration tests: one test binary (each file under tests/ would be a separate link).
//! Every test spawns the real `vnetd` binary.

mod harness;
mod smoke;
