//! The declaration of every served operation: one row each (ENGINEERING.md "declare each
//! operation once"). Field order is the spec's, which is also the Authenticator order.

use crate::services::Op;
use crate::spec::{opt, req, Field, ListSpec, Service, Ty};
use crate::services::{access as acc, billing as bl, passport as pp, province_for_vnet as vnet, sso};

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

const SPID_FIELD: Field = req("SPID", Ty::N(8));
const SERVICE: Field = req("ServiceID", Ty::N(16));
const ITEM_OPT: Field = opt("ServiceItemID", Ty::N(16));
const ITEM: Field = req("ServiceItemID", Ty::N(16));
const PRODUCT_OPT: Field = opt("ProductID", Ty::N(16));
const CONTRACT: Field = opt("ContractID", Ty::S(32));
const IF_EXTEND: Field = req("IfExtend", Ty::Flag);
const STOP_TYPE: Field = opt("StopType", Ty::OneOf(&["1", "2"]));
const FEE: Field = req("Fee", Ty::Fen);
const BATCH_COUNT: Field = opt("BatchCount", Ty::Range(1, 1000));
const LEDGER_DATE: Field = req("LedgerDate", Ty::Date8);

const SERVICE_AUTH_RESP: &[&str] = &["FeeType", "EndTime"];
const ORDER_RESP: &[&str] = &["OrderID", "StartTime", "EndTime"];
const CANCEL_RESP: &[&str] = &["OrderID", "EndTime"];
const CHARGE_RESP: &[&str] = &["TransactionID", "ChargeTime"];
const CHARGE_QUERY_RESP: &[&str] = &["VNetUserID", "ServiceID", "ServiceItemID", "Fee", "ChargeTime"];
const ORDERS: &[ListSpec] = &[ListSpec {
    name: "Orders",
    item: "Order",
    fields: &["OrderID", "ServiceID", "ServiceItemID", "ProductID", "Status", "StartTime", "EndTime", "IfExtend"],
}];
const BILL_ITEMS: &[ListSpec] = &[ListSpec {
    name: "Items",
    item: "Item",
    fields: &["SPID", "ServiceID", "ServiceItemID", "ServiceItemName", "FeeType", "Count", "Fee"],
}];
const RECON_RECORDS: &[ListSpec] = &[ListSpec {
    name: "Records",
    item: "Record",
    fields: &["TransactionID", "VNetUserID", "ServiceID", "ServiceItemID", "FeeType", "Fee", "ChargeTime"],
}];

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
    op!(ProvinceForSP, "IPAuth", [SPID, opt("ServiceID", Ty::N(16)), req("UserIP", Ty::Ip), TS, AUTH],
        &["AccountType", "Account", "VNetUserID", "ProvinceID", "CityCode", "UserType"], auth: true, idem: false, acc::ip_auth,
        "Broadband user authentication by IP address (宽带用户认证), from the sessions the AAA reports."),
    op!(ProvinceForSP, "GetUserinfo", [SPID, VNETUSERID, TS, AUTH], USER_PROFILE, auth: true, idem: false, pp::get_userinfo,
        "User profile."),
    op!(ProvinceForSP, "MPhoneRegistry",
        [SPID, req("PhoneNum", Ty::Phone), opt("Password", Ty::Enc), opt("CityCode", Ty::Digits(6)), TS, AUTH],
        &["UserID"], auth: true, idem: false, pp::mphone_registry,
        "Register a mobile number as a VNet user."),
    op!(ProvinceForSP, "GetTime", [opt("SPID", Ty::S(usize::MAX))], &["ServerTime"], auth: false, idem: false, pp::get_time,
        "Node time (时钟同步); no Authenticator."),
    op!(ProvinceForSP, "TicketValidate", [SPID, req("Ticket", Ty::S(64)), TS, AUTH],
        &["VNetUserID", "AccountType", "Account", "ProvinceID", "CityCode", "UserType", "NumFlag", "Alias", "Status"],
        auth: true, idem: false, sso::ticket_validate,
        "Exchange a single-use SSO ticket for the user (单点认证)."),
    op!(ProvinceForSP, "UserLogout", [SPID, VNETUSERID, TS, AUTH], &[], auth: true, idem: false, sso::user_logout,
        "End every SSO session of the user here (用户退出)."),
    op!(ProvinceForSP, "PaymentQuery", [SPID, req("OrderID", Ty::S(32)), TS, AUTH],
        &["PaymentStatus", "TransactionID", "Fee", "PayTime"], auth: true, idem: false, sso::payment_query,
        "State of a browser payment by the SP's OrderID (新版支付)."),
    op!(ProvinceForSP, "ServiceAuth", [SPID, SERVICE, ITEM_OPT, VNETUSERID, TS, AUTH],
        SERVICE_AUTH_RESP, auth: true, idem: false, bl::service_auth,
        "May this user use this service now (用户使用鉴权)."),
    op!(ProvinceForSP, "Order", [SPID, SERVICE, ITEM_OPT, PRODUCT_OPT, VNETUSERID, CONTRACT, IF_EXTEND, TXID, TS, AUTH],
        ORDER_RESP, auth: true, idem: true, bl::order,
        "Subscribe to a monthly item or a package (订购 / 套餐订购)."),
    op!(ProvinceForSP, "CancelOrder", [SPID, SERVICE, ITEM_OPT, PRODUCT_OPT, VNETUSERID, STOP_TYPE, TXID, TS, AUTH],
        CANCEL_RESP, auth: true, idem: true, bl::cancel_order,
        "Unsubscribe (取消订购 / 套餐退订)."),
    op!(ProvinceForSP, "ReOrder", [SPID, SERVICE, ITEM_OPT, PRODUCT_OPT, VNETUSERID, TXID, TS, AUTH],
        ORDER_RESP, auth: true, idem: true, bl::reorder,
        "Renew a lapsed subscription (续订)."),
    op!(ProvinceForSP, "Charge", [SPID, SERVICE, ITEM, VNETUSERID, FEE, BATCH_COUNT, TXID, TS, AUTH],
        CHARGE_RESP, auth: true, idem: true, bl::charge,
        "Pay per use (按次收费)."),
    op!(ProvinceForSP, "OfflineCharge",
        [SPID, SERVICE, ITEM, VNETUSERID, FEE, req("PaymentType", Ty::OneOf(&["1", "2"])), req("BillMonth", Ty::Month6), TXID, TS, AUTH],
        &[], auth: true, idem: true, bl::offline_charge, check: bl::check_offline_charge,
        "Offline payment (离线支付)."),
    op!(ProvinceForSP, "ChargeQuery", [SPID, TXID, TS, AUTH],
        CHARGE_QUERY_RESP, auth: true, idem: false, bl::charge_query,
        "Look up one of this SP's charges by TransactionID."),
    Op { lists: ORDERS, ..op!(ProvinceForSP, "OrderQuery", [SPID, VNETUSERID, opt("ServiceID", Ty::N(16)), TS, AUTH],
        &["Orders"], auth: true, idem: false, bl::order_query,
        "A user's subscriptions to this SP's services (服务订购查询).") },
    op!(ProvinceForSP, "Reconcile", [SPID, LEDGER_DATE, req("TotalCount", Ty::Digits(10)), req("TotalFee", Ty::Digits(12)), TS, AUTH],
        &["LocalCount", "LocalFee"], auth: true, idem: false, bl::reconcile,
        "Daily reconciliation (对帐); -22001 is its success."),
    Op { lists: RECON_RECORDS, ..op!(ProvinceForSP, "ReconDetail", [SPID, LEDGER_DATE, req("SequenceID", Ty::Digits(9)), TS, AUTH],
        &["SequenceID", "IsFinal", "TotalCount", "Records"], auth: true, idem: false, bl::recon_detail, check: bl::check_recon_detail,
        "The detail behind Reconcile, paged.") },
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
    op!(ProvinceForBSS, "Order", [SRC, SPID_FIELD, SERVICE, ITEM_OPT, PRODUCT_OPT, VNETUSERID, CONTRACT, IF_EXTEND, TXID, TS, AUTH],
        ORDER_RESP, auth: true, idem: true, bl::order,
        "Subscribe a user at the business hall (营业厅开通); the SP is told by OrderNotify."),
    op!(ProvinceForBSS, "CancelOrder", [SRC, SPID_FIELD, SERVICE, ITEM_OPT, PRODUCT_OPT, VNETUSERID, STOP_TYPE, TXID, TS, AUTH],
        CANCEL_RESP, auth: true, idem: true, bl::cancel_order,
        "Unsubscribe a user at the business hall; the SP is told by OrderNotify."),
    Op { lists: ORDERS, ..op!(ProvinceForBSS, "OrderQuery",
        [SRC, VNETUSERID, opt("SPID", Ty::N(8)), opt("ServiceID", Ty::N(16)), TS, AUTH],
        &["Orders"], auth: true, idem: false, bl::order_query,
        "All of a user's orders, optionally of one SP or service.") },
    Op { lists: BILL_ITEMS, ..op!(ProvinceForBSS, "BillQuery", [SRC, VNETUSERID, req("BillMonth", Ty::Month6), TS, AUTH],
        &["TotalFee", "Items"], auth: true, idem: false, bl::bill_query,
        "A user's charges of a month, by item (帐务).") },
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
    op!(ProvinceForVNet, "RoamAuthV2",
        [SRC, req("SrcProvinceID", Ty::N(2)), SPID_FIELD, opt("ServiceID", Ty::N(16)), req("AccountType", ACCOUNT_TYPES),
         req("Account", Ty::S(64)), req("Password", Ty::Enc), opt("UserIP", Ty::Ip), req("RoamType", Ty::OneOf(&["1", "2"])), TXID, TS, AUTH],
        AUTH_RESULT, auth: true, idem: false, vnet::roam_auth_v2,
        "The centre asks this home province to authenticate its user for a roaming use (漫游认证)."),
    op!(ProvinceForVNet, "RoamServiceNotify",
        [SRC, req("ActionType", Ty::OneOf(&["1", "2", "3"])), SPID_FIELD, req("SPProvinceID", Ty::N(2)), SERVICE, ITEM,
         req("ServiceItemName", Ty::S(64)), req("FeeType", Ty::OneOf(&["1", "2", "3"])), req("Price", Ty::Fen), TS, AUTH],
        &["Status"], auth: true, idem: false, vnet::roam_service_notify,
        "Roaming service approval (1), revocation (2) and verification (3) (漫游服务流程)."),
    op!(ProvinceForVNet, "ServiceAuth", [SRC, SPID_FIELD, SERVICE, ITEM_OPT, VNETUSERID, TS, AUTH],
        SERVICE_AUTH_RESP, auth: true, idem: false, bl::service_auth,
        "The centre, for an SP: may this user use this service now."),
    op!(ProvinceForVNet, "Order", [SRC, SPID_FIELD, SERVICE, ITEM_OPT, PRODUCT_OPT, VNETUSERID, CONTRACT, IF_EXTEND, TXID, TS, AUTH],
        ORDER_RESP, auth: true, idem: true, bl::order,
        "The centre, for an SP: subscribe (channel CENTRE)."),
    op!(ProvinceForVNet, "CancelOrder", [SRC, SPID_FIELD, SERVICE, ITEM_OPT, PRODUCT_OPT, VNETUSERID, STOP_TYPE, TXID, TS, AUTH],
        CANCEL_RESP, auth: true, idem: true, bl::cancel_order,
        "The centre, for an SP: unsubscribe."),
    op!(ProvinceForVNet, "ReOrder", [SRC, SPID_FIELD, SERVICE, ITEM_OPT, PRODUCT_OPT, VNETUSERID, TXID, TS, AUTH],
        ORDER_RESP, auth: true, idem: true, bl::reorder,
        "The centre, for an SP: renew a lapsed subscription."),
    op!(ProvinceForVNet, "Charge", [SRC, SPID_FIELD, SERVICE, ITEM, VNETUSERID, FEE, BATCH_COUNT, TXID, TS, AUTH],
        CHARGE_RESP, auth: true, idem: true, bl::charge,
        "The centre, for an SP: pay per use."),
    op!(ProvinceForVNet, "ChargeQuery", [SRC, SPID_FIELD, TXID, TS, AUTH],
        CHARGE_QUERY_RESP, auth: true, idem: false, bl::charge_query,
        "The centre, for an SP: look up a charge by TransactionID."),
    op!(ProvinceForVNet, "MPhoneRegistry",
        [SRC, req("PhoneNum", Ty::Phone), opt("Password", Ty::Enc), opt("CityCode", Ty::Digits(6)), TS, AUTH],
        &["UserID"], auth: true, idem: false, pp::mphone_registry,
        "The centre registers a mobile number as a VNet user."),
    // ---- ProvinceForAAA (caller: kind aaa) ----
    op!(ProvinceForAAA, "OnlineNotify",
        [SRC, req("ActionType", Ty::OneOf(&["1", "2", "3"])), req("Account", Ty::S(64)), req("UserIP", Ty::Ip), opt("NASIP", Ty::Ip),
         opt("NASPort", Ty::S(64)), req("SessionID", Ty::S(64)), req("EventTime", Ty::Ts), TS, AUTH],
        &[], auth: true, idem: false, acc::online_notify,
        "A broadband session started (1), stopped (2) or is still alive (3)."),
    // ---- ProvinceFor168 (caller: kind p168) ----
    op!(ProvinceFor168, "CrossAuth",
        [SRC, req("AccountType", ACCOUNT_TYPES), req("Account", Ty::S(64)), req("Password", Ty::Enc), TS, AUTH],
        &["VNetUserID", "CityCode", "BindingAccessNo", "Status"], auth: true, idem: false, acc::cross_auth,
        "The 168 platform authenticates a local VNet user (交叉认证)."),
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
            // ChargeQuery and RoamAuthV2 name a TransactionID without being idempotent (spec 11).
            if op.idempotent || !["ChargeQuery", "RoamAuthV2"].contains(&op.name) {
                assert_eq!(op.idempotent, names.contains(&"TransactionID"), "{}", op.name);
            }
            let unique: std::collections::HashSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "{}: duplicate field", op.name);
        }
    }
}
