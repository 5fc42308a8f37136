//! Operational support: logging, metrics, signals and systemd.
pub mod logging;
pub mod metrics;
pub mod ratelog;
pub mod reach;
pub mod reload;
pub mod signals;
