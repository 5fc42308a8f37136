//! The contract's declarations that every layer may read (spec sections 2.3, 3, 4): the result
//! codes, the services and their paths, the field types and their syntax. Nothing here knows about
//! HTTP, the database or the handlers.

pub mod codes;

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

/// A list element in a response: container name, item name, item fields.
#[derive(Debug, Clone, Copy)]
pub struct ListSpec {
    pub name: &'static str,
    pub item: &'static str,
    pub fields: &'static [&'static str],
}

