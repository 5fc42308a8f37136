//! Why the business rules refuse something. Domain functions answer `Result<_, Error>` inside
//! their `DbResult`; the protocol Result code of each refusal is chosen at the service edge
//! (`services::errors`), never here.

/// A refusal by the business rules, named for its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    // ---- users ----
    /// No user has this VNetUserID.
    UnknownUser,
    /// The user is cancelled (status 03 is final).
    Cancelled,
    /// The user is not in status 00 (normal) for a use of a service.
    NotNormal,
    /// The user's status does not allow ordering (Order, ReOrder).
    StatusForbidsOrder,

    // ---- catalogue and use rules ----
    /// No such service of that SP.
    UnknownService,
    /// The service is suspended.
    ServiceSuspended,
    /// The item is unknown, not of the service, or suspended.
    ItemUnavailable,
    /// The package is unknown or suspended.
    UnknownProduct,
    /// The package holds no item of the service.
    ProductLacksService,
    /// The service is not approved for the user's province (roaming).
    RegionNotAllowed,

    // ---- credit ----
    /// Postpaid: the month's total plus the fee would pass the CreditLimit.
    OverCreditLimit,
    /// Prepaid: the balance does not cover the fee.
    BalanceShort,

    // ---- orders ----
    /// An order of the item or package is in effect already.
    AlreadyOrdered,
    /// The order is cancelled already.
    AlreadyCancelled,
    /// A cancelled order cannot be renewed (ReOrder).
    CancelledCannotRenew,
    /// No order in effect (or none to renew within the window).
    NotOrdered,
    /// The item was never ordered (OfflineCharge).
    NeverOrdered,
    /// The bill month is too long after the last order ended (OfflineCharge).
    OfflinePeriodOver,
    /// The month of the item is paid already (OfflineCharge).
    PeriodPaid,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Error::UnknownUser => "unknown user",
            Error::Cancelled => "the user is cancelled",
            Error::NotNormal => "the user's status is not normal",
            Error::StatusForbidsOrder => "the user's status does not allow ordering",
            Error::UnknownService => "unknown service",
            Error::ServiceSuspended => "the service is suspended",
            Error::ItemUnavailable => "the service item is unknown or suspended",
            Error::UnknownProduct => "the package is unknown or suspended",
            Error::ProductLacksService => "the package holds no item of the service",
            Error::RegionNotAllowed => "not approved for the user's province",
            Error::OverCreditLimit => "over the credit limit",
            Error::BalanceShort => "the balance is too low",
            Error::AlreadyOrdered => "ordered already",
            Error::AlreadyCancelled => "cancelled already",
            Error::CancelledCannotRenew => "a cancelled order cannot be renewed",
            Error::NotOrdered => "not ordered",
            Error::NeverOrdered => "never ordered",
            Error::OfflinePeriodOver => "the bill month is too late for an offline payment",
            Error::PeriodPaid => "the month is paid already",
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}
