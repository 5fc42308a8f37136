//! Request fields shared by several test modules, in the spec's (Authenticator) order without
//! TimeStamp and Authenticator, and the BatchSync record fields of spec 6.5.

pub const USER_OPEN: &[&str] = &[
    "SrcDeviceNo", "AccountType", "Account", "Password", "CityCode", "UserType", "CreditLimit", "Balance", "Alias",
    "BindingAccessNo", "TransactionID",
];
pub const USER_MODIFY: &[&str] =
    &["SrcDeviceNo", "VNetUserID", "CityCode", "UserType", "CreditLimit", "Balance", "Alias", "BindingAccessNo", "TransactionID"];
pub const STATUS_CHANGE: &[&str] = &["SrcDeviceNo", "VNetUserID", "Status", "Reason", "TransactionID"];
pub const PASSWORD_RESET: &[&str] = &["SrcDeviceNo", "VNetUserID", "NewPassword", "TransactionID"];
pub const USER_AUTH: &[&str] = &["SPID", "ServiceID", "AccountType", "Account", "Password", "UserIP"];
pub const PHONE_AUTH: &[&str] = &["SPID", "ServiceID", "PhoneNum", "Password"];
pub const GET_USERINFO_SP: &[&str] = &["SPID", "VNetUserID"];
pub const GET_USERINFO_VNET: &[&str] = &["SrcDeviceNo", "VNetUserID"];
pub const KEY_UPDATE: &[&str] = &["SrcDeviceNo", "KeyRefreshType", "UpdateKeyValue", "DESInitialValue", "EffectTimeStamp"];

/// ORDER and CHARGE stream records (spec 6.5), in order.
pub const ORDER_RECORD: &[&str] = &[
    "RecordSeq", "OrderID", "ActionType", "VNetUserID", "SPID", "ServiceID", "ServiceItemID", "ServiceItemName", "ProductID",
    "ContractID", "StartTime", "EndTime", "Channel", "EventTime",
];
pub const CHARGE_RECORD: &[&str] = &[
    "RecordSeq", "TransactionID", "VNetUserID", "UserProvinceID", "SPID", "ServiceID", "ServiceItemID", "ServiceItemName", "FeeType",
    "Fee", "BatchCount", "ChargeTime", "LedgerDate", "RoamType",
];
