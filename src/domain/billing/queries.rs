//! The read side: ChargeQuery, OrderQuery, BillQuery, Reconcile and ReconDetail.

use super::*;

pub use crate::store::charges::{bill, day_detail, day_totals, find as find_charge, BillLine, DetailLine, FoundCharge};

/// A user's orders, newest period first, optionally only one SP's and one service's.
pub fn user_orders(tx: &Read, user_id: &str, spid: Option<&str>, service_id: Option<&str>) -> DbResult<Vec<OrderRow>> {
    order_db::of_user(tx, user_id, spid, service_id)
}
