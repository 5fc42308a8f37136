//! The service edge's choice of protocol Result code for each refusal of the business rules
//! (`domain::Error`): the one place that maps domain reasons to spec codes.

use crate::domain::Error;
use crate::services::Resp;
use crate::spec::codes::*;

/// The Result code that answers a refusal.
pub fn code(e: Error) -> i32 {
    match e {
        Error::UnknownUser => ACCOUNT_UNKNOWN,
        Error::Cancelled | Error::NotNormal => USER_ABNORMAL,
        Error::StatusForbidsOrder => STATUS_NO_ORDER,
        Error::UnknownService => SERVICE_UNKNOWN,
        Error::ServiceSuspended => SERVICE_ABNORMAL,
        Error::ItemUnavailable => SERVICE_ITEM_ABNORMAL,
        Error::UnknownProduct => PRODUCT_UNKNOWN,
        Error::ProductLacksService => PRODUCT_LACKS_SERVICE,
        Error::RegionNotAllowed => REGION_NOT_ALLOWED,
        Error::OverCreditLimit => OVER_LIMIT,
        Error::BalanceShort => BALANCE_SHORT,
        Error::AlreadyOrdered => DUPLICATE_ORDER,
        Error::AlreadyCancelled => DUPLICATE_CANCEL,
        Error::CancelledCannotRenew => CANCELLED_NO_RENEW,
        Error::NotOrdered => NOT_ORDERED,
        Error::NeverOrdered => NEVER_ORDERED,
        Error::OfflinePeriodOver => OFFLINE_EXPIRED,
        Error::PeriodPaid => OFFLINE_ONCE_PER_PERIOD,
    }
}

impl From<Error> for Resp {
    fn from(e: Error) -> Resp {
        Resp::code(code(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal has a code of the business range (spec 3), never 0 or a system error.
    #[test]
    fn every_refusal_has_a_business_code() {
        use Error::*;
        let all = [
            UnknownUser, Cancelled, NotNormal, StatusForbidsOrder, UnknownService, ServiceSuspended, ItemUnavailable, UnknownProduct,
            ProductLacksService, RegionNotAllowed, OverCreditLimit, BalanceShort, AlreadyOrdered, AlreadyCancelled,
            CancelledCannotRenew, NotOrdered, NeverOrdered, OfflinePeriodOver, PeriodPaid,
        ];
        for e in all {
            let c = code(e);
            assert!(c < 0 && c != SYSTEM_ERROR && c != DISK_ERROR, "{e:?}: {c}");
        }
    }
}
