//! What the running daemon needs besides its business: logging and audit, metrics, the refusal
//! log, destination reachability, signals, and the Argon2 hashing pool.
pub mod hashing;
pub mod logging;
pub mod metrics;
pub mod ratelog;
pub mod reach;
pub mod signals;
