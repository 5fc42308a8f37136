//! The declaration of every served operation: one row each (ENGINEERING.md "declare each
//! operation once"). Field order is the spec's, which is also the Authenticator order.

use super::{opt, req, Field, ListSpec, Op, Service, Ty};
use crate::services::{passport as pp, province_for_vnet as vnet};

const ACCOUNT_TYPES: Ty = Ty::OneOf(&["01", "02", "03", "04", "09"]);
const USER_TYPES: Ty = Ty::OneOf(&["1", "2"]);

const SPID: Field = req("SPID", Ty::N(8));
const SRC: Field = req("SrcDeviceNo", Ty::N(16));
const TS: Field = req("TimeStamp", Ty::Ts);
const AUTH: Field = req("Authenticator", Ty::S(64));
const TXID: Field = req("TransactionID", Ty::TxId);
const VNETUSERID: Field = req("VNetUserID", Ty::N(12));

const USER_PROFILE: &[&str] =
    &["VNetUserID", "AccountType", "Account", "Alias", "ProvinceID", "CityCode", "UserType", "Status", "NumFlag", "ContractID"];
const AUTH_RESULT: &[&str] = &["VNetUserID", "ProvinceID", "CityCode", "UserType", "Status"];
const NO_LISTS: &[ListSpec] = &[];

macro_rules! op {
    ($svc:ident, $name:literal, [$($f:expr),* $(,)?], $resp:expr, auth: $auth:expr, idem: $idem:expr, $handler:expr, check: $check:expr, $doc:literal) => {
        Op { check: Some($check), ..op!($svc, $name, [$($f),*], $resp, auth: $auth, idem: $idem, $handler, $doc) }
    };
    ($svc:ident, $name:literal, [$($f:expr),* $(,)?], $resp:expr, auth: $auth:expr, idem: $idem:expr, $handler:expr, $doc:literal) => {
        Op {
            service: Service::$svc,
            name: $name,
            request: &[$($f),*],
            response: $resp,
            lists: NO_LISTS,
            authenticated: $auth,
            idempotent: $idem,
            handler: $handler,
            check: None,
            doc: $doc,
        }
    };
}

pub static OPS: &[Op] = &[
    // ---- ProvinceForSP (callers: kind sp) ----
    op!(ProvinceForSP, "UserAuth",
        [SPID, opt("ServiceID", Ty::N(16)), req("AccountType", ACCOUNT_TYPES), req("Account", Ty::S(64)),
         req("Password", Ty::Enc), opt("UserIP", Ty::Ip), TS, AUTH],
        AUTH_RESULT, auth: true, idem: false, pp::user_auth,
        "Authenticate an account (非漫游认证)."),
    op!(ProvinceForSP, "PhoneNumAuth",
        [SPID, opt("ServiceID", Ty::N(16)), req("PhoneNum", Ty::Phone), req("Password", Ty::Enc), TS, AUTH],
        &["VNetUserID", "ProvinceID", "CityCode", "UserType", "Status", "NumFlag"], auth: true, idem: false, pp::phone_num_auth,
        "Mobile number authentication (AccountType 09)."),
    op!(ProvinceForSP, "GetUserinfo", [SPID, VNETUSERID, TS, AUTH], USER_PROFILE, auth: true, idem: false, pp::get_userinfo,
        "User profile."),
    op!(ProvinceForSP, "MPhoneRegistry",
        [SPID, req("PhoneNum", Ty::Phone), opt("Password", Ty::Enc), opt("CityCode", Ty::Digits(6)), TS, AUTH],
        &["UserID"], auth: true, idem: false, pp::mphone_registry,
        "Register a mobile number as a VNet user."),
    op!(ProvinceForSP, "GetTime", [opt("SPID", Ty::S(usize::MAX))], &["ServerTime"], auth: false, idem: false, pp::get_time,
        "Node time (时钟同步); no Authenticator."),
    // ---- ProvinceForBSS (callers: kind bss) ----
    op!(ProvinceForBSS, "UserOpen",
        [SRC, req("AccountType", ACCOUNT_TYPES), req("Account", Ty::S(64)), opt("Password", Ty::Enc),
         req("CityCode", Ty::Digits(6)), req("UserType", USER_TYPES), opt("CreditLimit", Ty::Fen), opt("Balance", Ty::Fen),
         opt("Alias", Ty::S(64)), opt("BindingAccessNo", Ty::S(64)), TXID, TS, AUTH],
        &["VNetUserID"], auth: true, idem: true, pp::user_open, check: pp::check_user_open,
        "Create a user (开户)."),
    op!(ProvinceForBSS, "UserModify",
        [SRC, VNETUSERID, opt("CityCode", Ty::Digits(6)), opt("UserType", USER_TYPES), opt("CreditLimit", Ty::Fen),
         opt("Balance", Ty::Fen), opt("Alias", Ty::S(64)), opt("BindingAccessNo", Ty::S(64)), TXID, TS, AUTH],
        &[], auth: true, idem: true, pp::user_modify,
        "Change a user's CityCode, UserType, CreditLimit, Balance, Alias, BindingAccessNo."),
    op!(ProvinceForBSS, "UserStatusChange",
        [SRC, VNETUSERID, req("Status", Ty::OneOf(&["00", "01", "02", "03"])), opt("Reason", Ty::S(256)), TXID, TS, AUTH],
        &[], auth: true, idem: true, pp::user_status_change,
        "Suspend (01), freeze (02), resume (00), cancel (03, terminal)."),
    op!(ProvinceForBSS, "PasswordReset",
        [SRC, VNETUSERID, req("NewPassword", Ty::Enc), TXID, TS, AUTH],
        &[], auth: true, idem: true, pp::password_reset,
        "Operator password reset at the business hall."),
    op!(ProvinceForBSS, "MPhoneRegistry",
        [SRC, req("PhoneNum", Ty::Phone), opt("Password", Ty::Enc), opt("CityCode", Ty::Digits(6)), TS, AUTH],
        &["UserID"], auth: true, idem: false, pp::mphone_registry,
        "Register a mobile number as a VNet user."),
    // ---- ProvinceForVNet (caller: kind centre) ----
    op!(ProvinceForVNet, "UserInfoQueryV3",
        [SRC, req("AccountType", ACCOUNT_TYPES), req("Account", Ty::S(64)), TS, AUTH],
        &["VNetUserID", "ProvinceID", "CityCode", "Status", "UserType", "ContractID", "NumFlag"], auth: true, idem: false,
        pp::user_info_query, "Find a user by account."),
    op!(ProvinceForVNet, "GetUserinfo", [SRC, VNETUSERID, TS, AUTH], USER_PROFILE, auth: true, idem: false, pp::get_userinfo,
        "User profile."),
    op!(ProvinceForVNet, "PUserStatusNotify",
        [SRC, VNETUSERID, req("Status", Ty::OneOf(&["00", "02"])), req("StatusTime", Ty::Ts), TS, AUTH],
        &[], auth: true, idem: false, pp::p_user_status_notify,
        "The centre PassPort changed a user's status."),
    op!(ProvinceForVNet, "KeyUpdate",
        [SRC, req("KeyRefreshType", Ty::OneOf(&["1", "2"])), req("UpdateKeyValue", Ty::Enc), opt("DESInitialValue", Ty::Hex(16)),
         opt("EffectTimeStamp", Ty::Ts), TS, AUTH],
        &[], auth: true, idem: false, vnet::key_update,
        "The centre rotates its key with this node (密钥更新)."),
];

/// The operation `name` of `service`.
pub fn find(service: Service, name: &str) -> Option<&'static Op> {
    OPS.iter().find(|o| o.service == service && o.name == name)
}

/// Every operation of a service, in declaration order.
pub fn of(service: Service) -> impl Iterator<Item = &'static Op> {
    OPS.iter().filter(move |o| o.service == service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_consistent() {
        let mut seen = std::collections::HashSet::new();
        for op in OPS {
            assert!(seen.insert((op.service, op.name)), "{} declared twice", op.name);
            let names: Vec<&str> = op.request.iter().map(|f| f.name).collect();
            if op.authenticated {
                let id = if op.service == Service::ProvinceForSP { "SPID" } else { "SrcDeviceNo" };
                assert_eq!(names[0], id, "{}: caller id first", op.name);
                assert_eq!(names[names.len() - 1], "Authenticator", "{}", op.name);
                assert_eq!(names[names.len() - 2], "TimeStamp", "{}", op.name);
            }
            assert_eq!(op.idempotent, names.contains(&"TransactionID"), "{}", op.name);
            let unique: std::collections::HashSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "{}: duplicate field", op.name);
        }
    }
}
