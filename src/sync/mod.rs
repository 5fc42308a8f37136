//! Sync with the centre and the SPs (spec 6): the relay that delivers the outbox queue
//! (`crate::store::outbox`) in order, with retries, dead letters and BatchSync streams.

pub mod relay;
