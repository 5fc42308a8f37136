//! Every incoming message, declared once (spec 4): its request fields with their syntax, its
//! response fields and lists, and the services that serve it. `messages!` turns each declaration
//! into a module named after it holding the typed `Request` and `Response` structs (fields named
//! exactly as on the wire, so a misspelt field does not compile) and the field lists that the
//! pipeline, the Authenticator, the WSDL, the response writer, the bench and the contract test
//! read. `INCOMING` lists one row per (service, message) with its full request in Authenticator
//! order. Handlers are bound to messages in `crate::api::table`.

use super::{opt, req, Field, ListSpec, Service, Ty, Value};

/// One message: what a request carries and what its response returns.
#[derive(Debug)]
pub struct Message {
    /// The declaration's name (unique; the module of its types).
    pub key: &'static str,
    /// The operation name on the wire (several declarations may share one, e.g. OrderQuery).
    pub name: &'static str,
    /// The fields after the caller id and before TimeStamp, in order. On ProvinceForSP a leading
    /// SPID is the caller id itself.
    pub body: &'static [Field],
    /// Response fields after Result and ErrDescription, in order.
    pub response: &'static [&'static str],
    pub lists: &'static [ListSpec],
    /// Carries a caller id, TimeStamp and Authenticator (all but GetTime).
    pub authenticated: bool,
    /// Idempotent by TransactionID (spec 2.7).
    pub idempotent: bool,
}

/// One served operation: a message on a service.
#[derive(Debug)]
pub struct Incoming {
    pub service: Service,
    pub message: &'static Message,
    /// Every request field in Authenticator order: caller id, body, TimeStamp, Authenticator.
    pub request: &'static [Field],
    pub doc: &'static str,
}

/// A typed request, read from the validated field values.
pub trait Request: Sized {
    /// `get(name)` answers the value of a field (the plaintext of an `enc` field), None when absent.
    fn read(get: &dyn Fn(&'static str) -> Option<String>) -> Self;
}

/// A typed response, written as the response's fields in declared order.
pub trait Reply {
    fn into_values(self) -> Vec<(&'static str, Value)>;
    /// The text fields from a peer's answer (lists stay empty): relaying the centre's answer.
    fn read_text(get: &dyn Fn(&'static str) -> String) -> Self;
}

/// The caller id field of an authenticated request of `service`.
pub const fn caller_field(service: Service) -> Field {
    match service {
        Service::ProvinceForSP => req("SPID", Ty::N(8)),
        _ => req("SrcDeviceNo", Ty::N(16)),
    }
}
const TIMESTAMP: Field = req("TimeStamp", Ty::Ts);
const AUTHENTICATOR: Field = req("Authenticator", Ty::S(64));

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Is the body's first field the caller id itself (SPID on ProvinceForSP)?
const fn caller_leads(service: Service, body: &[Field]) -> bool {
    !body.is_empty() && same(body[0].name, caller_field(service).name)
}

/// The number of fields of the full request (see `request_fields`).
pub const fn request_len(service: Service, authenticated: bool, body: &[Field]) -> usize {
    if !authenticated {
        return body.len();
    }
    body.len() + 2 + if caller_leads(service, body) { 0 } else { 1 }
}

/// The full request in Authenticator order: the caller id (unless the body starts with it),
/// the body, TimeStamp, Authenticator; just the body for an unauthenticated message.
pub const fn request_fields<const N: usize>(service: Service, authenticated: bool, body: &[Field]) -> [Field; N] {
    let mut out = [TIMESTAMP; N];
    let mut n = 0;
    if authenticated && !caller_leads(service, body) {
        out[0] = caller_field(service);
        n = 1;
    }
    let mut i = 0;
    while i < body.len() {
        out[n] = body[i];
        n += 1;
        i += 1;
    }
    if authenticated {
        out[n] = TIMESTAMP;
        out[n + 1] = AUTHENTICATOR;
    }
    out
}

macro_rules! field_ty {
    (req) => { String };
    (opt) => { Option<String> };
}
macro_rules! field_value {
    (req, $v:expr) => { $v.unwrap_or_default() };
    (opt, $v:expr) => { $v.filter(|s: &String| !s.is_empty()) };
}
macro_rules! field_text {
    (req, $v:expr) => { $v.clone() };
    (opt, $v:expr) => { $v.clone().unwrap_or_default() };
}
macro_rules! reply_ty {
    () => { String };
    ($item:ident) => { Vec<$item> };
}
macro_rules! reply_value {
    ($v:expr,) => { Value::Text($v) };
    ($v:expr, $item:ident [$($lf:ident)*]) => {
        Value::List($v.into_iter().map(|i: $item| vec![$((stringify!($lf).to_string(), i.$lf)),*]).collect())
    };
}
macro_rules! reply_read {
    ($get:expr, $r:ident) => { $get(stringify!($r)) };
    ($get:expr, $r:ident $item:ident) => { Vec::new() };
}

/// Declares the messages (see the module documentation).
macro_rules! messages {
    ($(
        $(#[doc = $mdoc:literal])*
        $m:ident $(= $wire:literal)? {
            served: [$($svc:ident: $doc:literal),+ $(,)?],
            auth: $auth:literal, idem: $idem:literal,
            request: [$($f:ident: $kind:ident($ty:expr)),* $(,)?],
            response: $resp:tt $(,)?
        }
    )*) => {
        $(
            $(#[doc = $mdoc])*
            #[allow(non_snake_case)]
            pub mod $m {
                use super::*;

                pub static MESSAGE: Message = Message {
                    key: stringify!($m),
                    name: messages!(@name $m $($wire)?),
                    body: Request::FIELDS,
                    response: Response::FIELDS,
                    lists: Response::LISTS,
                    authenticated: $auth,
                    idempotent: $idem,
                };

                /// The request's fields after the caller id (the plaintext of `enc` fields).
                #[derive(Debug, Clone, Default, PartialEq)]
                pub struct Request { $(pub $f: field_ty!($kind)),* }

                impl Request {
                    pub const FIELDS: &'static [Field] = &[$($kind(stringify!($f), $ty)),*];

                    /// The fields in declared order, absent optional ones as "" (a client's view:
                    /// `enc` fields must already hold their ciphertext).
                    pub fn values(&self) -> Vec<(&'static str, String)> {
                        vec![$((stringify!($f), field_text!($kind, &self.$f))),*]
                    }
                }

                impl super::Request for Request {
                    #[allow(unused_variables)]
                    fn read(get: &dyn Fn(&'static str) -> Option<String>) -> Self {
                        Request { $($f: field_value!($kind, get(stringify!($f)))),* }
                    }
                }

                messages!(@response $resp);
            }
        )*

        /// Every served operation: one row per (service, message), in declaration order.
        pub static INCOMING: &[Incoming] = &[
            $($(
                Incoming {
                    service: Service::$svc,
                    message: &$m::MESSAGE,
                    request: {
                        const N: usize = request_len(Service::$svc, $auth, $m::Request::FIELDS);
                        static FIELDS: [Field; N] = request_fields::<N>(Service::$svc, $auth, $m::Request::FIELDS);
                        &FIELDS
                    },
                    doc: $doc,
                },
            )+)*
        ];
    };
    (@name $m:ident) => { stringify!($m) };
    (@name $m:ident $wire:literal) => { $wire };
    // The response of another message, the same fields.
    (@response (as $other:ident)) => {
        pub use super::$other::Response;
    };
    (@response [$($r:ident $(: [$item:ident { $($lf:ident),* $(,)? }])?),* $(,)?]) => {
        /// The response's fields after Result and ErrDescription.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Response { $(pub $r: reply_ty!($($item)?)),* }

        $($(
            /// One item of a response list.
            #[derive(Debug, Clone, Default, PartialEq)]
            pub struct $item { $(pub $lf: String),* }
        )?)*

        impl Response {
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($r)),*];
            pub const LISTS: &'static [ListSpec] = &[$($(
                ListSpec { name: stringify!($r), item: stringify!($item), fields: &[$(stringify!($lf)),*] },
            )?)*];
        }

        impl super::Reply for Response {
            fn into_values(self) -> Vec<(&'static str, Value)> {
                vec![$((stringify!($r), reply_value!(self.$r, $($item [$($lf)*])?))),*]
            }
            #[allow(unused_variables)]
            fn read_text(get: &dyn Fn(&'static str) -> String) -> Self {
                Response { $($r: reply_read!(get, $r $($item)?)),* }
            }
        }
    };
}

const ACCOUNT_TYPES: Ty = Ty::OneOf(&["01", "02", "03", "04", "09"]);
const USER_TYPES: Ty = Ty::OneOf(&["1", "2"]);
const ID8: Ty = Ty::N(8);
const ID12: Ty = Ty::N(12);
const ID16: Ty = Ty::N(16);

messages! {
    // ---- authentication and the user's profile ----
    UserAuth {
        served: [ProvinceForSP: "Authenticate an account (非漫游认证)."],
        auth: true, idem: false,
        request: [ServiceID: opt(ID16), AccountType: req(ACCOUNT_TYPES), Account: req(Ty::S(64)), Password: req(Ty::Enc),
                  UserIP: opt(Ty::Ip)],
        response: [VNetUserID, ProvinceID, CityCode, UserType, Status],
    }
    PhoneNumAuth {
        served: [ProvinceForSP: "Mobile number authentication (AccountType 09)."],
        auth: true, idem: false,
        request: [ServiceID: opt(ID16), PhoneNum: req(Ty::Phone), Password: req(Ty::Enc)],
        response: [VNetUserID, ProvinceID, CityCode, UserType, Status, NumFlag],
    }
    IPAuth {
        served: [ProvinceForSP: "Broadband user authentication by IP address (宽带用户认证), from the sessions the AAA reports."],
        auth: true, idem: false,
        request: [ServiceID: opt(ID16), UserIP: req(Ty::Ip)],
        response: [AccountType, Account, VNetUserID, ProvinceID, CityCode, UserType],
    }
    GetUserinfo {
        served: [ProvinceForSP: "User profile.", ProvinceForVNet: "User profile."],
        auth: true, idem: false,
        request: [VNetUserID: req(ID12)],
        response: [VNetUserID, AccountType, Account, Alias, ProvinceID, CityCode, UserType, Status, NumFlag, ContractID],
    }
    MPhoneRegistry {
        served: [
            ProvinceForSP: "Register a mobile number as a VNet user.",
            ProvinceForBSS: "Register a mobile number as a VNet user.",
            ProvinceForVNet: "The centre registers a mobile number as a VNet user.",
        ],
        auth: true, idem: false,
        request: [PhoneNum: req(Ty::Phone), Password: opt(Ty::Enc), CityCode: opt(Ty::Digits(6))],
        response: [UserID],
    }
    GetTime {
        served: [ProvinceForSP: "Node time (时钟同步); no Authenticator."],
        auth: false, idem: false,
        request: [SPID: opt(Ty::S(usize::MAX))],
        response: [ServerTime],
    }
    // ---- single sign-on and browser payments (spec 5) ----
    TicketValidate {
        served: [ProvinceForSP: "Exchange a single-use SSO ticket for the user (单点认证)."],
        auth: true, idem: false,
        request: [Ticket: req(Ty::S(64))],
        response: [VNetUserID, AccountType, Account, ProvinceID, CityCode, UserType, NumFlag, Alias, Status],
    }
    UserLogout {
        served: [ProvinceForSP: "End every SSO session of the user here (用户退出)."],
        auth: true, idem: false,
        request: [VNetUserID: req(ID12)],
        response: [],
    }
    PaymentQuery {
        served: [ProvinceForSP: "State of a browser payment by the SP's OrderID (新版支付)."],
        auth: true, idem: false,
        request: [OrderID: req(Ty::S(32))],
        response: [PaymentStatus, TransactionID, Fee, PayTime],
    }
    // ---- ordering and charging ----
    ServiceAuth {
        served: [
            ProvinceForSP: "May this user use this service now (用户使用鉴权).",
            ProvinceForVNet: "The centre, for an SP: may this user use this service now.",
        ],
        auth: true, idem: false,
        request: [SPID: req(ID8), ServiceID: req(ID16), ServiceItemID: opt(ID16), VNetUserID: req(ID12)],
        response: [FeeType, EndTime],
    }
    Order {
        served: [
            ProvinceForSP: "Subscribe to a monthly item or a package (订购 / 套餐订购).",
            ProvinceForBSS: "Subscribe a user at the business hall (营业厅开通); the SP is told by OrderNotify.",
            ProvinceForVNet: "The centre, for an SP: subscribe (channel CENTRE).",
        ],
        auth: true, idem: true,
        request: [SPID: req(ID8), ServiceID: req(ID16), ServiceItemID: opt(ID16), ProductID: opt(ID16), VNetUserID: req(ID12),
                  ContractID: opt(Ty::S(32)), IfExtend: req(Ty::Flag), TransactionID: req(Ty::TxId)],
        response: [OrderID, StartTime, EndTime],
    }
    CancelOrder {
        served: [
            ProvinceForSP: "Unsubscribe (取消订购 / 套餐退订).",
            ProvinceForBSS: "Unsubscribe a user at the business hall; the SP is told by OrderNotify.",
            ProvinceForVNet: "The centre, for an SP: unsubscribe.",
        ],
        auth: true, idem: true,
        request: [SPID: req(ID8), ServiceID: req(ID16), ServiceItemID: opt(ID16), ProductID: opt(ID16), VNetUserID: req(ID12),
                  StopType: opt(Ty::OneOf(&["1", "2"])), TransactionID: req(Ty::TxId)],
        response: [OrderID, EndTime],
    }
    ReOrder {
        served: [
            ProvinceForSP: "Renew a lapsed subscription (续订).",
            ProvinceForVNet: "The centre, for an SP: renew a lapsed subscription.",
        ],
        auth: true, idem: true,
        request: [SPID: req(ID8), ServiceID: req(ID16), ServiceItemID: opt(ID16), ProductID: opt(ID16), VNetUserID: req(ID12),
                  TransactionID: req(Ty::TxId)],
        response: (as Order),
    }
    Charge {
        served: [ProvinceForSP: "Pay per use (按次收费).", ProvinceForVNet: "The centre, for an SP: pay per use."],
        auth: true, idem: true,
        request: [SPID: req(ID8), ServiceID: req(ID16), ServiceItemID: req(ID16), VNetUserID: req(ID12), Fee: req(Ty::Fen),
                  BatchCount: opt(Ty::Range(1, 1000)), TransactionID: req(Ty::TxId)],
        response: [TransactionID, ChargeTime],
    }
    OfflineCharge {
        served: [ProvinceForSP: "Offline payment (离线支付)."],
        auth: true, idem: true,
        request: [ServiceID: req(ID16), ServiceItemID: req(ID16), VNetUserID: req(ID12), Fee: req(Ty::Fen),
                  PaymentType: req(Ty::OneOf(&["1", "2"])), BillMonth: req(Ty::Month6), TransactionID: req(Ty::TxId)],
        response: [],
    }
    ChargeQuery {
        served: [
            ProvinceForSP: "Look up one of this SP's charges by TransactionID.",
            ProvinceForVNet: "The centre, for an SP: look up a charge by TransactionID.",
        ],
        auth: true, idem: false,
        request: [SPID: req(ID8), TransactionID: req(Ty::TxId)],
        response: [VNetUserID, ServiceID, ServiceItemID, Fee, ChargeTime],
    }
    OrderQuery {
        served: [ProvinceForSP: "A user's subscriptions to this SP's services (服务订购查询)."],
        auth: true, idem: false,
        request: [VNetUserID: req(ID12), ServiceID: opt(ID16)],
        response: [Orders: [Order { OrderID, ServiceID, ServiceItemID, ProductID, Status, StartTime, EndTime, IfExtend }]],
    }
    /// OrderQuery at the business hall: any SP's orders.
    UserOrderQuery = "OrderQuery" {
        served: [ProvinceForBSS: "All of a user's orders, optionally of one SP or service."],
        auth: true, idem: false,
        request: [VNetUserID: req(ID12), SPID: opt(ID8), ServiceID: opt(ID16)],
        response: (as OrderQuery),
    }
    BillQuery {
        served: [ProvinceForBSS: "A user's charges of a month, by item (帐务)."],
        auth: true, idem: false,
        request: [VNetUserID: req(ID12), BillMonth: req(Ty::Month6)],
        response: [TotalFee, Items: [Item { SPID, ServiceID, ServiceItemID, ServiceItemName, FeeType, Count, Fee }]],
    }
    Reconcile {
        served: [ProvinceForSP: "Daily reconciliation (对帐); -22001 is its success."],
        auth: true, idem: false,
        request: [LedgerDate: req(Ty::Date8), TotalCount: req(Ty::Digits(10)), TotalFee: req(Ty::Digits(12))],
        response: [LocalCount, LocalFee],
    }
    ReconDetail {
        served: [ProvinceForSP: "The detail behind Reconcile, paged."],
        auth: true, idem: false,
        request: [LedgerDate: req(Ty::Date8), SequenceID: req(Ty::Digits(9))],
        response: [SequenceID, IsFinal, TotalCount,
                   Records: [Record { TransactionID, VNetUserID, ServiceID, ServiceItemID, FeeType, Fee, ChargeTime }]],
    }
    // ---- the business hall's user management ----
    UserOpen {
        served: [ProvinceForBSS: "Create a user (开户)."],
        auth: true, idem: true,
        request: [AccountType: req(ACCOUNT_TYPES), Account: req(Ty::S(64)), Password: opt(Ty::Enc), CityCode: req(Ty::Digits(6)),
                  UserType: req(USER_TYPES), CreditLimit: opt(Ty::Fen), Balance: opt(Ty::Fen), Alias: opt(Ty::S(64)),
                  BindingAccessNo: opt(Ty::S(64)), TransactionID: req(Ty::TxId)],
        response: [VNetUserID],
    }
    UserModify {
        served: [ProvinceForBSS: "Change a user's CityCode, UserType, CreditLimit, Balance, Alias, BindingAccessNo."],
        auth: true, idem: true,
        request: [VNetUserID: req(ID12), CityCode: opt(Ty::Digits(6)), UserType: opt(USER_TYPES), CreditLimit: opt(Ty::Fen),
                  Balance: opt(Ty::Fen), Alias: opt(Ty::S(64)), BindingAccessNo: opt(Ty::S(64)), TransactionID: req(Ty::TxId)],
        response: [],
    }
    UserStatusChange {
        served: [ProvinceForBSS: "Suspend (01), freeze (02), resume (00), cancel (03, terminal)."],
        auth: true, idem: true,
        request: [VNetUserID: req(ID12), Status: req(Ty::OneOf(&["00", "01", "02", "03"])), Reason: opt(Ty::S(256)),
                  TransactionID: req(Ty::TxId)],
        response: [],
    }
    PasswordReset {
        served: [ProvinceForBSS: "Operator password reset at the business hall."],
        auth: true, idem: true,
        request: [VNetUserID: req(ID12), NewPassword: req(Ty::Enc), TransactionID: req(Ty::TxId)],
        response: [],
    }
    // ---- the centre ----
    UserInfoQueryV3 {
        served: [ProvinceForVNet: "Find a user by account."],
        auth: true, idem: false,
        request: [AccountType: req(ACCOUNT_TYPES), Account: req(Ty::S(64))],
        response: [VNetUserID, ProvinceID, CityCode, Status, UserType, ContractID, NumFlag],
    }
    PUserStatusNotify {
        served: [ProvinceForVNet: "The centre PassPort changed a user's status."],
        auth: true, idem: false,
        request: [VNetUserID: req(ID12), Status: req(Ty::OneOf(&["00", "02"])), StatusTime: req(Ty::Ts)],
        response: [],
    }
    KeyUpdate {
        served: [ProvinceForVNet: "The centre rotates its key with this node (密钥更新)."],
        auth: true, idem: false,
        request: [KeyRefreshType: req(Ty::OneOf(&["1", "2"])), UpdateKeyValue: req(Ty::Enc), DESInitialValue: opt(Ty::Hex(16)),
                  EffectTimeStamp: opt(Ty::Ts)],
        response: [],
    }
    RoamAuthV2 {
        served: [ProvinceForVNet: "The centre asks this home province to authenticate its user for a roaming use (漫游认证)."],
        auth: true, idem: false,
        request: [SrcProvinceID: req(Ty::N(2)), SPID: req(ID8), ServiceID: opt(ID16), AccountType: req(ACCOUNT_TYPES),
                  Account: req(Ty::S(64)), Password: req(Ty::Enc), UserIP: opt(Ty::Ip), RoamType: req(Ty::OneOf(&["1", "2"])),
                  TransactionID: req(Ty::TxId)],
        response: (as UserAuth),
    }
    RoamServiceNotify {
        served: [ProvinceForVNet: "Roaming service approval (1), revocation (2) and verification (3) (漫游服务流程)."],
        auth: true, idem: false,
        request: [ActionType: req(Ty::OneOf(&["1", "2", "3"])), SPID: req(ID8), SPProvinceID: req(Ty::N(2)), ServiceID: req(ID16),
                  ServiceItemID: req(ID16), ServiceItemName: req(Ty::S(64)), FeeType: req(Ty::OneOf(&["1", "2", "3"])),
                  Price: req(Ty::Fen)],
        response: [Status],
    }
    // ---- the access network ----
    OnlineNotify {
        served: [ProvinceForAAA: "A broadband session started (1), stopped (2) or is still alive (3)."],
        auth: true, idem: false,
        request: [ActionType: req(Ty::OneOf(&["1", "2", "3"])), Account: req(Ty::S(64)), UserIP: req(Ty::Ip), NASIP: opt(Ty::Ip),
                  NASPort: opt(Ty::S(64)), SessionID: req(Ty::S(64)), EventTime: req(Ty::Ts)],
        response: [],
    }
    CrossAuth {
        served: [ProvinceFor168: "The 168 platform authenticates a local VNet user (交叉认证)."],
        auth: true, idem: false,
        request: [AccountType: req(ACCOUNT_TYPES), Account: req(Ty::S(64)), Password: req(Ty::Enc)],
        response: [VNetUserID, CityCode, BindingAccessNo, Status],
    }
}

impl Charge::Request {
    /// Fee in fen (its syntax is checked before a handler runs; -1 if it does not parse).
    pub fn fee(&self) -> i64 {
        self.Fee.parse().unwrap_or(-1)
    }
    /// BatchCount, 1 when absent (its range 1…1000 is checked with the syntax, in field order).
    pub fn batch_count(&self) -> i64 {
        self.BatchCount.as_deref().and_then(|v| v.parse().ok()).unwrap_or(1)
    }
}

/// A client's request to `service`, before TimeStamp and Authenticator: the caller id (unless
/// the body starts with it) and the body's `values`, in Authenticator order.
pub fn client_fields(service: Service, caller: &str, body: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    let id = caller_field(service).name;
    let mut out = Vec::with_capacity(body.len() + 1);
    if body.first().is_none_or(|(name, _)| *name != id) {
        out.push((id, caller.to_string()));
    }
    out.extend(body);
    out
}

/// The declaration of `name` on `service`.
pub fn find(service: Service, name: &str) -> Option<&'static Incoming> {
    INCOMING.iter().find(|o| o.service == service && o.message.name == name)
}

/// Every operation of a service, in declaration order.
pub fn of(service: Service) -> impl Iterator<Item = &'static Incoming> {
    INCOMING.iter().filter(move |o| o.service == service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_consistent() {
        let mut seen = std::collections::HashSet::new();
        for op in INCOMING {
            let m = op.message;
            assert!(seen.insert((op.service, m.name)), "{} declared twice on {}", m.name, op.service.name());
            let names: Vec<&str> = op.request.iter().map(|f| f.name).collect();
            if m.authenticated {
                assert_eq!(names[0], caller_field(op.service).name, "{}: caller id first", m.name);
                assert_eq!(names[names.len() - 1], "Authenticator", "{}", m.name);
                assert_eq!(names[names.len() - 2], "TimeStamp", "{}", m.name);
            }
            // ChargeQuery and RoamAuthV2 name a TransactionID without being idempotent (spec 11).
            if m.idempotent || !["ChargeQuery", "RoamAuthV2"].contains(&m.name) {
                assert_eq!(m.idempotent, names.contains(&"TransactionID"), "{}", m.name);
            }
            let unique: std::collections::HashSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "{}: duplicate field", m.name);
        }
    }

    #[test]
    fn typed_requests_read_fields_by_their_wire_names() {
        let values = [("SPID", "12345678"), ("ServiceID", "1234567890123456"), ("VNetUserID", "110000000001"), ("Fee", "100")];
        let get = |n: &'static str| values.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
        let r = <Charge::Request as Request>::read(&get);
        assert_eq!((r.SPID.as_str(), r.Fee.as_str(), r.BatchCount), ("12345678", "100", None));
        assert_eq!(r.ServiceItemID, "", "a required field absent reads empty (the pipeline refused it before)");
        let resp = OrderQuery::Response { Orders: vec![OrderQuery::Order { OrderID: "O1".into(), ..Default::default() }] };
        let v = resp.into_values();
        assert_eq!(v[0].0, "Orders");
        let Value::List(items) = &v[0].1 else { panic!("a list") };
        assert_eq!(items[0][0], ("OrderID".to_string(), "O1".to_string()));
        assert_eq!(items[0].len(), 8);
    }

    #[test]
    fn a_client_request_follows_the_declared_order() {
        for d in INCOMING.iter().filter(|d| d.message.authenticated) {
            let body: Vec<(&'static str, String)> = d.message.body.iter().map(|f| (f.name, String::new())).collect();
            let names: Vec<&str> = client_fields(d.service, "x", body).into_iter().map(|(n, _)| n).collect();
            let declared: Vec<&str> = d.request.iter().map(|f| f.name).filter(|n| *n != "TimeStamp" && *n != "Authenticator").collect();
            assert_eq!(names, declared, "{} {}", d.service.name(), d.message.name);
        }
        let charge = Charge::Request { SPID: "12345678".into(), Fee: "5".into(), ..Default::default() };
        let v = client_fields(Service::ProvinceForSP, "12345678", charge.values());
        assert_eq!((v[0].0, v[0].1.as_str(), v[4].0, v[4].1.as_str(), v[5].1.as_str()), ("SPID", "12345678", "Fee", "5", ""));
    }

    #[test]
    fn the_caller_id_leads_every_authenticated_request() {
        let sp = find(Service::ProvinceForSP, "Order").unwrap();
        let bss = find(Service::ProvinceForBSS, "Order").unwrap();
        let names = |o: &Incoming| o.request.iter().map(|f| f.name).collect::<Vec<_>>();
        assert_eq!(names(sp)[..3], ["SPID", "ServiceID", "ServiceItemID"]);
        assert_eq!(names(bss)[..3], ["SrcDeviceNo", "SPID", "ServiceID"]);
        assert_eq!(names(find(Service::ProvinceForSP, "GetTime").unwrap()), ["SPID"]);
        assert_eq!(names(find(Service::ProvinceForBSS, "OrderQuery").unwrap())[..3], ["SrcDeviceNo", "VNetUserID", "SPID"]);
    }
}
