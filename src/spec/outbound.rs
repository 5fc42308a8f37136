//! The declaration of every message the node sends (spec 6): one row per outgoing operation and
//! one per BatchSync record layout (6.5). The SOAP client, the synchronous centre calls, the
//! outbox producers, the relay, centre-sim and the bench all read these rows; the contract test
//! (`tests/it/contract.rs`) compares them with `../shared/spec/INTERFACES.md`.
//!
//! Field lists are in Authenticator order and, like the incoming table (`api/table.rs`), end with
//! `TimeStamp` and `Authenticator`. Centre operations start with `SrcDeviceNo` and `ProvinceID`,
//! which the sender adds ([`OutOp::head`]); what a producer supplies is [`OutOp::payload`].

/// Where an outgoing operation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// The URL of the single peer of kind `centre`, under the centre's key.
    Centre,
    /// The SP peer's URL, under the SP's key.
    Sp,
}

/// Namespace of the centre's operations (spec 6).
pub const CENTRE_NS: &str = "http://vnet.cn/centre/v3";
/// Namespace of an SP's OrderNotify endpoint (spec 6.8).
pub const SP_NS: &str = "http://vnet.cn/sp/v3";

impl Dest {
    pub fn namespace(self) -> &'static str {
        match self {
            Dest::Centre => CENTRE_NS,
            Dest::Sp => SP_NS,
        }
    }
}

/// How an outgoing operation is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Answered while the caller waits (6.1, 6.7, 6.9).
    Sync,
    /// Written to the outbox with the change that causes it and delivered by the relay (7.1).
    Queued,
}

/// The list element that follows the Authenticator (BatchSync's `Records`), not signed.
#[derive(Debug, Clone, Copy)]
pub struct Trailer {
    pub name: &'static str,
    pub item: &'static str,
}

/// One outgoing operation.
#[derive(Debug)]
pub struct OutOp {
    pub name: &'static str,
    /// Spec section, for messages and the contract test.
    pub section: &'static str,
    pub dest: Dest,
    pub delivery: Delivery,
    /// Request fields in Authenticator order, `TimeStamp` and `Authenticator` last.
    pub request: &'static [&'static str],
    /// `enc` fields: travel as Base64(3DES) under the destination's key.
    pub enc: &'static [&'static str],
    /// Response fields after Result and ErrDescription.
    pub response: &'static [&'static str],
    pub trailer: Option<Trailer>,
}

/// The fields a centre operation starts with; the sender fills them (own DeviceNo and ProvinceID).
pub const CENTRE_HEAD: &[&str] = &["SrcDeviceNo", "ProvinceID"];

impl OutOp {
    pub fn namespace(&self) -> &'static str {
        self.dest.namespace()
    }
    /// The leading fields the sender adds: SrcDeviceNo and ProvinceID for the centre, none for SPs.
    pub fn head(&self) -> &'static [&'static str] {
        match self.dest {
            Dest::Centre => &self.request[..CENTRE_HEAD.len()],
            Dest::Sp => &[],
        }
    }
    /// The fields covered by the Authenticator: all but the Authenticator itself.
    pub fn signed(&self) -> &'static [&'static str] {
        &self.request[..self.request.len() - 1]
    }
    /// What a producer supplies: the request without the head, TimeStamp and Authenticator.
    pub fn payload(&self) -> &'static [&'static str] {
        &self.request[self.head().len()..self.request.len() - 2]
    }
    pub fn is_enc(&self, field: &str) -> bool {
        self.enc.contains(&field)
    }
}

const fn centre(
    name: &'static str,
    section: &'static str,
    delivery: Delivery,
    request: &'static [&'static str],
    enc: &'static [&'static str],
    response: &'static [&'static str],
) -> OutOp {
    OutOp { name, section, dest: Dest::Centre, delivery, request, enc, response, trailer: None }
}

use Delivery::{Queued, Sync};

const NONE: &[&str] = &[];

pub const ROAM_AUTH_V2: OutOp = centre(
    "RoamAuthV2",
    "6.1",
    Sync,
    &["SrcDeviceNo", "ProvinceID", "SPID", "ServiceID", "AccountType", "Account", "Password", "UserIP", "RoamType", "TransactionID", "TimeStamp", "Authenticator"],
    &["Password"],
    &["VNetUserID", "ProvinceID", "CityCode", "UserType", "Status"],
);
pub const P_USER_INFO_NOTIFY: OutOp = centre(
    "PUserInfoNotify",
    "6.2",
    Queued,
    &[
        "SrcDeviceNo", "ProvinceID", "ActionType", "VNetUserID", "AccountType", "Account", "Alias", "CityCode", "UserType", "Status", "NumFlag",
        "BindingAccessNo", "ChangeTime", "TimeStamp", "Authenticator",
    ],
    NONE,
    &["ContractID"],
);
pub const P_USER_PASSWORD_NOTIFY: OutOp = centre(
    "PUserPasswordNotify",
    "6.3",
    Queued,
    &["SrcDeviceNo", "ProvinceID", "VNetUserID", "Password", "ChangeTime", "TimeStamp", "Authenticator"],
    &["Password"],
    NONE,
);
pub const PASSWORD_RESET: OutOp = centre(
    "PasswordReset",
    "6.4",
    Queued,
    &["SrcDeviceNo", "ProvinceID", "VNetUserID", "NewPassword", "TransactionID", "TimeStamp", "Authenticator"],
    &["NewPassword"],
    NONE,
);
pub const BATCH_SYNC: OutOp = OutOp {
    trailer: Some(Trailer { name: "Records", item: "Record" }),
    ..centre(
        "BatchSync",
        "6.5",
        Queued,
        &["SrcDeviceNo", "ProvinceID", "Stream", "SequenceID", "TotalCount", "IsFinal", "RecordsDigest", "TimeStamp", "Authenticator"],
        NONE,
        &["LastSequenceID"],
    )
};
pub const ROAM_SERVICE_REVOKE: OutOp = centre(
    "RoamServiceRevoke",
    "6.6",
    Queued,
    &["SrcDeviceNo", "ProvinceID", "SPID", "ServiceID", "ServiceItemID", "Reason", "TimeStamp", "Authenticator"],
    NONE,
    NONE,
);
pub const CLOCK_SYNC: OutOp =
    centre("ClockSync", "6.7", Sync, &["SrcDeviceNo", "ProvinceID", "LocalTime", "TimeStamp", "Authenticator"], NONE, &["ServerTime"]);
pub const ORDER_NOTIFY: OutOp = OutOp {
    name: "OrderNotify",
    section: "6.8",
    dest: Dest::Sp,
    delivery: Queued,
    request: &[
        "SPID", "ProvinceID", "OrderID", "ActionType", "VNetUserID", "ServiceID", "ServiceItemID", "ProductID", "StartTime", "EndTime", "Channel",
        "TimeStamp", "Authenticator",
    ],
    enc: NONE,
    response: NONE,
    trailer: None,
};

// 6.9 roaming consumption: the ProvinceForSP operation's fields (4.1) preceded by SrcDeviceNo and
// ProvinceID. The contract test checks each against the incoming declaration.
pub const SERVICE_AUTH: OutOp = centre(
    "ServiceAuth",
    "6.9",
    Sync,
    &["SrcDeviceNo", "ProvinceID", "SPID", "ServiceID", "ServiceItemID", "VNetUserID", "TimeStamp", "Authenticator"],
    NONE,
    &["FeeType", "EndTime"],
);
pub const ORDER: OutOp = centre(
    "Order",
    "6.9",
    Sync,
    &[
        "SrcDeviceNo", "ProvinceID", "SPID", "ServiceID", "ServiceItemID", "ProductID", "VNetUserID", "ContractID", "IfExtend", "TransactionID",
        "TimeStamp", "Authenticator",
    ],
    NONE,
    &["OrderID", "StartTime", "EndTime"],
);
pub const CANCEL_ORDER: OutOp = centre(
    "CancelOrder",
    "6.9",
    Sync,
    &[
        "SrcDeviceNo", "ProvinceID", "SPID", "ServiceID", "ServiceItemID", "ProductID", "VNetUserID", "StopType", "TransactionID", "TimeStamp",
        "Authenticator",
    ],
    NONE,
    &["OrderID", "EndTime"],
);
pub const RE_ORDER: OutOp = centre(
    "ReOrder",
    "6.9",
    Sync,
    &["SrcDeviceNo", "ProvinceID", "SPID", "ServiceID", "ServiceItemID", "ProductID", "VNetUserID", "TransactionID", "TimeStamp", "Authenticator"],
    NONE,
    &["OrderID", "StartTime", "EndTime"],
);
pub const CHARGE: OutOp = centre(
    "Charge",
    "6.9",
    Sync,
    &["SrcDeviceNo", "ProvinceID", "SPID", "ServiceID", "ServiceItemID", "VNetUserID", "Fee", "BatchCount", "TransactionID", "TimeStamp", "Authenticator"],
    NONE,
    &["TransactionID", "ChargeTime"],
);

/// Every outgoing operation, in spec order.
pub static OUT_OPS: &[&OutOp] = &[
    &ROAM_AUTH_V2,
    &P_USER_INFO_NOTIFY,
    &P_USER_PASSWORD_NOTIFY,
    &PASSWORD_RESET,
    &BATCH_SYNC,
    &ROAM_SERVICE_REVOKE,
    &CLOCK_SYNC,
    &ORDER_NOTIFY,
    &SERVICE_AUTH,
    &ORDER,
    &CANCEL_ORDER,
    &RE_ORDER,
    &CHARGE,
];

/// The outgoing operation `name` (names are unique across destinations).
pub fn find(name: &str) -> Option<&'static OutOp> {
    OUT_OPS.iter().copied().find(|o| o.name == name)
}

/// One BatchSync stream and its record layout (spec 6.5): fields in RecordsDigest order, RecordSeq first.
#[derive(Debug)]
pub struct Stream {
    pub name: &'static str,
    pub fields: &'static [&'static str],
}

pub const ORDER_RECORD: Stream = Stream {
    name: "ORDER",
    fields: &[
        "RecordSeq", "OrderID", "ActionType", "VNetUserID", "SPID", "ServiceID", "ServiceItemID", "ServiceItemName", "ProductID", "ContractID",
        "StartTime", "EndTime", "Channel", "EventTime",
    ],
};
pub const CHARGE_RECORD: Stream = Stream {
    name: "CHARGE",
    fields: &[
        "RecordSeq", "TransactionID", "VNetUserID", "UserProvinceID", "SPID", "ServiceID", "ServiceItemID", "ServiceItemName", "FeeType", "Fee",
        "BatchCount", "ChargeTime", "LedgerDate", "RoamType",
    ],
};
pub const SETTLE_RECORD: Stream = Stream {
    name: "SETTLE",
    fields: &["RecordSeq", "LedgerDate", "SPID", "SPProvinceID", "ServiceID", "ServiceItemID", "ServiceItemName", "RoamType", "TotalCount", "TotalFee"],
};

/// The BatchSync streams, in the order the relay serves them.
pub static STREAMS: &[&Stream] = &[&ORDER_RECORD, &CHARGE_RECORD, &SETTLE_RECORD];

/// The stream `name`.
pub fn stream(name: &str) -> Option<&'static Stream> {
    STREAMS.iter().copied().find(|s| s.name == name)
}

/// The `(name, value)` list of `fields` in declared order, each value from `get`. A declared
/// field `get` does not know (`None`) is a producer that was not updated with the declaration:
/// debug builds panic, release builds send it empty.
pub fn fill(fields: &'static [&'static str], mut get: impl FnMut(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    fields
        .iter()
        .map(|&name| {
            let v = get(name);
            debug_assert!(v.is_some(), "no value for declared field {name} (declared: {fields:?})");
            (name, v.unwrap_or_default())
        })
        .collect()
}

/// `pairs` (any order) as the `(name, value)` list of `fields` in declared order. Debug builds
/// panic when a pair names an undeclared field or a declared field has no pair; release builds
/// drop the first and send the second empty.
pub fn ordered(fields: &'static [&'static str], pairs: Vec<(&str, String)>) -> Vec<(&'static str, String)> {
    for (name, _) in &pairs {
        debug_assert!(fields.contains(name), "{name} is not a declared field (declared: {fields:?})");
    }
    let mut pairs = pairs;
    fill(fields, |name| pairs.iter().position(|(n, _)| *n == name).map(|i| pairs.swap_remove(i).1))
}

/// As [`ordered`], but declared fields without a pair are empty (test and benchmark data).
pub fn ordered_or_empty(fields: &'static [&'static str], pairs: Vec<(&str, String)>) -> Vec<(&'static str, String)> {
    for (name, _) in &pairs {
        debug_assert!(fields.contains(name), "{name} is not a declared field (declared: {fields:?})");
    }
    fields.iter().map(|&name| (name, pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_consistent() {
        let mut seen = std::collections::HashSet::new();
        for op in OUT_OPS {
            assert!(seen.insert(op.name), "{} declared twice", op.name);
            let n = op.request.len();
            assert_eq!(&op.request[n - 2..], ["TimeStamp", "Authenticator"], "{}", op.name);
            match op.dest {
                Dest::Centre => assert_eq!(&op.request[..2], CENTRE_HEAD, "{}", op.name),
                Dest::Sp => assert_eq!(op.request[0], "SPID", "{}", op.name),
            }
            for e in op.enc {
                assert!(op.payload().contains(e), "{}: enc field {e} is not in the payload", op.name);
            }
            let unique: std::collections::HashSet<_> = op.request.iter().collect();
            assert_eq!(unique.len(), n, "{}: duplicate field", op.name);
        }
        for s in STREAMS {
            assert_eq!(s.fields[0], "RecordSeq", "{}", s.name);
        }
    }

    #[test]
    fn helpers_order_by_declaration() {
        let p = ordered(ROAM_SERVICE_REVOKE.payload(), vec![("Reason", "r".into()), ("SPID", "1".into()), ("ServiceItemID", "3".into()), ("ServiceID", "2".into())]);
        assert_eq!(p, [("SPID", "1".to_string()), ("ServiceID", "2".into()), ("ServiceItemID", "3".into()), ("Reason", "r".into())]);
        let e = ordered_or_empty(CLOCK_SYNC.payload(), vec![]);
        assert_eq!(e, [("LocalTime", String::new())]);
        assert_eq!(BATCH_SYNC.payload(), ["Stream", "SequenceID", "TotalCount", "IsFinal", "RecordsDigest"]);
        assert!(ORDER_NOTIFY.head().is_empty() && ORDER_NOTIFY.payload()[0] == "SPID");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not a declared field")]
    fn misspelt_names_fail_in_debug() {
        ordered(ROAM_SERVICE_REVOKE.payload(), vec![("ServiceId", "2".into())]);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "no value for declared field")]
    fn missing_values_fail_in_debug() {
        fill(CLOCK_SYNC.payload(), |_| None);
    }
}
