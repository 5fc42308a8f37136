//! The contract's declarations that every layer may read (spec sections 2.3, 3, 4, 6): the result
//! codes, the services and their paths, the field types and their syntax, the incoming messages
//! (`incoming`), the outgoing operations and the BatchSync record layouts (`outbound`). Nothing here knows about
//! HTTP, the database or the handlers.

pub mod codes;
pub mod incoming;
pub mod outbound;

/// The SOAP services the node serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    ProvinceForSP,
    ProvinceForBSS,
    ProvinceForVNet,
    ProvinceForAAA,
    ProvinceFor168,
}

impl Service {
    pub const ALL: [Service; 5] =
        [Service::ProvinceForSP, Service::ProvinceForBSS, Service::ProvinceForVNet, Service::ProvinceForAAA, Service::ProvinceFor168];

    pub fn name(self) -> &'static str {
        match self {
            Service::ProvinceForSP => "ProvinceForSP",
            Service::ProvinceForBSS => "ProvinceForBSS",
            Service::ProvinceForVNet => "ProvinceForVNet",
            Service::ProvinceForAAA => "ProvinceForAAA",
            Service::ProvinceFor168 => "ProvinceFor168",
        }
    }
    pub fn from_name(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|x| x.name() == s)
    }
    /// The peer kind allowed to call this service.
    pub fn caller_kind(self) -> &'static str {
        match self {
            Service::ProvinceForSP => "sp",
            Service::ProvinceForBSS => "bss",
            Service::ProvinceForVNet => "centre",
            Service::ProvinceForAAA => "aaa",
            Service::ProvinceFor168 => "p168",
        }
    }
    pub fn namespace(self) -> String {
        format!("http://vnet.cn/province/v3/{}", self.name())
    }
    pub fn path(self) -> String {
        format!("/{0}/services/{0}", self.name())
    }
}

/// Field syntax (spec 2.3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ty {
    /// Exactly k ASCII digits.
    N(usize),
    /// 1 to k ASCII digits (CityCode).
    Digits(usize),
    /// At most k characters.
    S(usize),
    /// Signed 32-bit decimal.
    Int,
    /// A decimal integer in lo…hi (BatchCount 1…1000: a range check of stage 2, spec 11).
    Range(i64, i64),
    /// Amount in fen, 0 … 100000000.
    Fen,
    /// `yyyy-MM-dd HH:mm:ss`.
    Ts,
    Date8,
    Month6,
    Flag,
    /// Base64 of 3DES ciphertext under the caller's key.
    Enc,
    /// `s(32)` of `[A-Za-z0-9_-]`.
    TxId,
    /// One of the listed values.
    OneOf(&'static [&'static str]),
    /// A mobile number: 11 digits starting with 1.
    Phone,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A 48-hex-digit key.
    Hex(usize),
}

/// One request field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

pub const fn req(name: &'static str, ty: Ty) -> Field {
    Field { name, ty, required: true }
}
pub const fn opt(name: &'static str, ty: Ty) -> Field {
    Field { name, ty, required: false }
}

/// A value in a response: text, or a list of items (each an ordered list of fields).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    List(Vec<Vec<(String, String)>>),
}

/// A list element in a response: container name, item name, item fields.
#[derive(Debug, Clone, Copy)]
pub struct ListSpec {
    pub name: &'static str,
    pub item: &'static str,
    pub fields: &'static [&'static str],
}

/// Does a non-empty value have the field's syntax?
pub fn valid(f: &Field, v: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match f.ty {
        Ty::N(k) => v.len() == k && digits(v),
        Ty::Digits(k) => v.len() <= k && digits(v),
        Ty::S(k) => v.chars().count() <= k,
        Ty::Int => v.parse::<i32>().is_ok() && !v.starts_with('+'),
        Ty::Range(lo, hi) => !v.starts_with('+') && v.parse::<i64>().is_ok_and(|n| (lo..=hi).contains(&n)),
        Ty::Fen => digits(v) && v.len() <= 9 && v.parse::<i64>().is_ok_and(|n| n <= 100_000_000),
        Ty::Ts => v.len() == 19 && time::PrimitiveDateTime::parse(v, time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).is_ok(),
        Ty::Date8 => v.len() == 8 && digits(v) && time::Date::parse(v, time::macros::format_description!("[year][month][day]")).is_ok(),
        Ty::Month6 => v.len() == 6 && digits(v) && (1..=12).contains(&v[4..].parse::<u8>().unwrap_or(0)),
        Ty::Flag => v == "0" || v == "1",
        Ty::Enc => v.len() <= 4096,
        Ty::TxId => v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        Ty::OneOf(set) => set.contains(&v),
        Ty::Phone => is_mobile(v),
        Ty::Ip => v.parse::<std::net::IpAddr>().is_ok(),
        Ty::Hex(k) => v.len() == k && v.bytes().all(|b| b.is_ascii_hexdigit()),
    }
}

/// A mobile number: 11 digits starting with 1 (AccountType 09, PhoneNum).
pub fn is_mobile(s: &str) -> bool {
    s.len() == 11 && s.starts_with('1') && s.bytes().all(|b| b.is_ascii_digit())
}
