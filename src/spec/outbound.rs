//! The declaration of every message the node sends (spec 6): one row per outgoing operation and
//! one per BatchSync record layout (6.5). The SOAP client, the synchronous centre calls, the
//! outbox producers, the relay, centre-sim and the bench all read these rows; the contract test
//! (`tests/it/contract.rs`) compares them with `../shared/spec/INTERFACES.md`.
//!
//! Field lists are in Authenticator order and, like the incoming messages (`spec::incoming`), end
//! with `TimeStamp` and `Authenticator`. Centre operations start with `SrcDeviceNo` and
//! `ProvinceID`, which the sender adds ([`OutOp::head`]); what a producer supplies is
//! [`OutOp::payload`], built from the operation's typed `Payload` (`outbound::Charge::Payload`,
//! …); records from their typed layout (`ChargeRecord`, …).

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

/// The number of fields of the full request (see `out_request`).
const fn out_len(dest: Dest, payload: &[&str]) -> usize {
    payload.len() + 2 + if matches!(dest, Dest::Centre) { CENTRE_HEAD.len() } else { 0 }
}

/// The full request in Authenticator order: the head, the payload, TimeStamp, Authenticator.
const fn out_request<const N: usize>(dest: Dest, payload: &[&'static str]) -> [&'static str; N] {
    let mut out = ["TimeStamp"; N];
    let mut n = 0;
    if matches!(dest, Dest::Centre) {
        while n < CENTRE_HEAD.len() {
            out[n] = CENTRE_HEAD[n];
            n += 1;
        }
    }
    let mut i = 0;
    while i < payload.len() {
        out[n] = payload[i];
        n += 1;
        i += 1;
    }
    out[n] = "TimeStamp";
    out[n + 1] = "Authenticator";
    out
}

/// Declares the outgoing operations: for each a const `OutOp` and a module named after the
/// operation with its typed `Payload` (what a producer supplies, fields named as on the wire, so a
/// misspelt or forgotten field does not compile) and `Response`.
macro_rules! outgoing {
    ($(
        $(#[doc = $doc:literal])*
        $konst:ident = $m:ident {
            section: $section:literal, dest: $dest:ident, delivery: $delivery:ident,
            payload: [$($f:ident),* $(,)?],
            enc: [$($e:ident),* $(,)?],
            response: [$($r:ident),* $(,)?]
            $(, trailer: $tname:ident of $titem:ident)? $(,)?
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            pub const $konst: OutOp = OutOp {
                name: stringify!($m),
                section: $section,
                dest: Dest::$dest,
                delivery: Delivery::$delivery,
                request: {
                    const N: usize = out_len(Dest::$dest, $m::Payload::FIELDS);
                    const REQUEST: [&str; N] = out_request::<N>(Dest::$dest, $m::Payload::FIELDS);
                    &REQUEST
                },
                enc: &[$(stringify!($e)),*],
                response: $m::Response::FIELDS,
                trailer: outgoing!(@trailer $($tname $titem)?),
            };

            $(#[doc = $doc])*
            #[allow(non_snake_case)]
            pub mod $m {
                /// What the producer supplies: the request without the head, TimeStamp and
                /// Authenticator (`enc` fields in plaintext; the sender encrypts them).
                #[derive(Debug, Clone, Default, PartialEq)]
                pub struct Payload { $(pub $f: String),* }

                impl Payload {
                    pub const FIELDS: &'static [&'static str] = &[$(stringify!($f)),*];

                    /// The fields in declared order.
                    pub fn values(self) -> Vec<(&'static str, String)> {
                        vec![$((stringify!($f), self.$f)),*]
                    }
                }

                /// The answer's fields after Result and ErrDescription.
                #[derive(Debug, Clone, Default, PartialEq)]
                pub struct Response { $(pub $r: String),* }

                impl Response {
                    pub const FIELDS: &'static [&'static str] = &[$(stringify!($r)),*];

                    #[allow(unused_variables)]
                    pub fn read(get: &dyn Fn(&'static str) -> String) -> Self {
                        Response { $($r: get(stringify!($r))),* }
                    }
                }
            }
        )*

        /// Every outgoing operation, in spec order.
        pub static OUT_OPS: &[&OutOp] = &[$(&$konst),*];
    };
    (@trailer) => { None };
    (@trailer $name:ident $item:ident) => { Some(Trailer { name: stringify!($name), item: stringify!($item) }) };
}

outgoing! {
    ROAM_AUTH_V2 = RoamAuthV2 {
        section: "6.1", dest: Centre, delivery: Sync,
        payload: [SPID, ServiceID, AccountType, Account, Password, UserIP, RoamType, TransactionID],
        enc: [Password],
        response: [VNetUserID, ProvinceID, CityCode, UserType, Status],
    }
    P_USER_INFO_NOTIFY = PUserInfoNotify {
        section: "6.2", dest: Centre, delivery: Queued,
        payload: [ActionType, VNetUserID, AccountType, Account, Alias, CityCode, UserType, Status, NumFlag, BindingAccessNo, ChangeTime],
        enc: [],
        response: [ContractID],
    }
    P_USER_PASSWORD_NOTIFY = PUserPasswordNotify {
        section: "6.3", dest: Centre, delivery: Queued,
        payload: [VNetUserID, Password, ChangeTime],
        enc: [Password],
        response: [],
    }
    PASSWORD_RESET = PasswordReset {
        section: "6.4", dest: Centre, delivery: Queued,
        payload: [VNetUserID, NewPassword, TransactionID],
        enc: [NewPassword],
        response: [],
    }
    BATCH_SYNC = BatchSync {
        section: "6.5", dest: Centre, delivery: Queued,
        payload: [Stream, SequenceID, TotalCount, IsFinal, RecordsDigest],
        enc: [],
        response: [LastSequenceID],
        trailer: Records of Record,
    }
    ROAM_SERVICE_REVOKE = RoamServiceRevoke {
        section: "6.6", dest: Centre, delivery: Queued,
        payload: [SPID, ServiceID, ServiceItemID, Reason],
        enc: [],
        response: [],
    }
    CLOCK_SYNC = ClockSync {
        section: "6.7", dest: Centre, delivery: Sync,
        payload: [LocalTime],
        enc: [],
        response: [ServerTime],
    }
    ORDER_NOTIFY = OrderNotify {
        section: "6.8", dest: Sp, delivery: Queued,
        payload: [SPID, ProvinceID, OrderID, ActionType, VNetUserID, ServiceID, ServiceItemID, ProductID, StartTime, EndTime, Channel],
        enc: [],
        response: [],
    }
    // 6.9 roaming consumption: the ProvinceForSP operation's fields (4.1) preceded by SrcDeviceNo and
    // ProvinceID. The contract test checks each against the incoming declaration.
    SERVICE_AUTH = ServiceAuth {
        section: "6.9", dest: Centre, delivery: Sync,
        payload: [SPID, ServiceID, ServiceItemID, VNetUserID],
        enc: [],
        response: [FeeType, EndTime],
    }
    ORDER = Order {
        section: "6.9", dest: Centre, delivery: Sync,
        payload: [SPID, ServiceID, ServiceItemID, ProductID, VNetUserID, ContractID, IfExtend, TransactionID],
        enc: [],
        response: [OrderID, StartTime, EndTime],
    }
    CANCEL_ORDER = CancelOrder {
        section: "6.9", dest: Centre, delivery: Sync,
        payload: [SPID, ServiceID, ServiceItemID, ProductID, VNetUserID, StopType, TransactionID],
        enc: [],
        response: [OrderID, EndTime],
    }
    RE_ORDER = ReOrder {
        section: "6.9", dest: Centre, delivery: Sync,
        payload: [SPID, ServiceID, ServiceItemID, ProductID, VNetUserID, TransactionID],
        enc: [],
        response: [OrderID, StartTime, EndTime],
    }
    CHARGE = Charge {
        section: "6.9", dest: Centre, delivery: Sync,
        payload: [SPID, ServiceID, ServiceItemID, VNetUserID, Fee, BatchCount, TransactionID],
        enc: [],
        response: [TransactionID, ChargeTime],
    }
}

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

/// Declares the record layouts: for each a const `Stream` and a typed record (fields named as on
/// the wire, in RecordsDigest order).
macro_rules! records {
    ($($(#[doc = $doc:literal])* $konst:ident = $ty:ident $name:literal [$($f:ident),* $(,)?])*) => {
        $(
            $(#[doc = $doc])*
            #[allow(non_snake_case)]
            #[derive(Debug, Clone, Default, PartialEq)]
            pub struct $ty { $(pub $f: String),* }

            impl $ty {
                pub const FIELDS: &'static [&'static str] = &[$(stringify!($f)),*];

                /// The fields in declared order.
                pub fn values(self) -> Vec<(&'static str, String)> {
                    vec![$((stringify!($f), self.$f)),*]
                }
            }

            pub const $konst: Stream = Stream { name: $name, fields: $ty::FIELDS };
        )*

        /// The BatchSync streams, in the order the relay serves them.
        pub static STREAMS: &[&Stream] = &[$(&$konst),*];
    };
}

records! {
    /// A subscription event (6.5 ORDER).
    ORDER_RECORD = OrderRecord "ORDER" [
        RecordSeq, OrderID, ActionType, VNetUserID, SPID, ServiceID, ServiceItemID, ServiceItemName, ProductID, ContractID, StartTime,
        EndTime, Channel, EventTime,
    ]
    /// A charge (6.5 CHARGE).
    CHARGE_RECORD = ChargeRecord "CHARGE" [
        RecordSeq, TransactionID, VNetUserID, UserProvinceID, SPID, ServiceID, ServiceItemID, ServiceItemName, FeeType, Fee, BatchCount,
        ChargeTime, LedgerDate, RoamType,
    ]
    /// A day's settlement line (6.5 SETTLE).
    SETTLE_RECORD = SettleRecord "SETTLE" [
        RecordSeq, LedgerDate, SPID, SPProvinceID, ServiceID, ServiceItemID, ServiceItemName, RoamType, TotalCount, TotalFee,
    ]
}

/// The stream `name`.
pub fn stream(name: &str) -> Option<&'static Stream> {
    STREAMS.iter().copied().find(|s| s.name == name)
}

/// The `(name, value)` list of `fields` in declared order, each value from `get`: for code that
/// forwards fields by their declared names (roaming consumption passes the request's fields on).
/// A declared field `get` does not know (`None`) is a bug: debug builds panic, release builds
/// send it empty. Producers build the typed `Payload` or record instead.
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
    fn typed_payloads_follow_the_declared_order() {
        let p = RoamServiceRevoke::Payload { Reason: "r".into(), SPID: "1".into(), ServiceItemID: "3".into(), ServiceID: "2".into() };
        assert_eq!(p.values(), [("SPID", "1".to_string()), ("ServiceID", "2".into()), ("ServiceItemID", "3".into()), ("Reason", "r".into())]);
        assert_eq!(ROAM_SERVICE_REVOKE.payload(), RoamServiceRevoke::Payload::FIELDS);
        assert_eq!(BATCH_SYNC.payload(), ["Stream", "SequenceID", "TotalCount", "IsFinal", "RecordsDigest"]);
        assert!(ORDER_NOTIFY.head().is_empty() && ORDER_NOTIFY.payload()[0] == "SPID");
        assert_eq!(CHARGE_RECORD.fields, ChargeRecord::FIELDS);
        let r = ClockSync::Response::read(&|n| if n == "ServerTime" { "2026-01-01 00:00:00".into() } else { String::new() });
        assert_eq!(r.ServerTime, "2026-01-01 00:00:00");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "no value for declared field")]
    fn missing_values_fail_in_debug() {
        fill(CLOCK_SYNC.payload(), |_| None);
    }
}
