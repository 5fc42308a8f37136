//! Result codes (spec 3 and result-codes.tsv) and the parameter code of each field.

use std::collections::HashMap;
use std::sync::OnceLock;

pub const OK: i32 = 0;
pub const NO_MATCH: i32 = -1;
pub const CALLER_UNKNOWN: i32 = -20001;
pub const NOT_AUTHORIZED: i32 = -20003;
pub const SERVICE_UNKNOWN: i32 = -20004;
pub const SERVICE_ABNORMAL: i32 = -20005;
pub const AUTH_FAILED: i32 = -20501;
pub const USER_ABNORMAL: i32 = -20502;
pub const ACCOUNT_UNKNOWN: i32 = -20504;
pub const NO_IP_AUTH_FOR_TYPE: i32 = -20505;
pub const NOT_ONLINE: i32 = -20507;
pub const PASSWORD_TOO_SIMPLE: i32 = -20510;
pub const ACCOUNT_EXISTS: i32 = -20516;
pub const USER_CANCELLED_PAY: i32 = -20512;
pub const SERVICE_ITEM_ABNORMAL: i32 = -20006;
pub const OFFLINE_EXPIRED: i32 = -20007;
pub const OFFLINE_NOT_QUALIFIED: i32 = -20008;
pub const OFFLINE_ONCE_PER_PERIOD: i32 = -20009;
pub const NEVER_ORDERED: i32 = -20514;
pub const REGION_NOT_ALLOWED: i32 = -21001;
pub const OVER_LIMIT: i32 = -21003;
pub const NO_SUCH_CHARGE: i32 = -21004;
pub const NOT_ORDERED: i32 = -21006;
pub const DUPLICATE_ORDER: i32 = -21010;
pub const DUPLICATE_CANCEL: i32 = -21011;
pub const STATUS_NO_ORDER: i32 = -21012;
pub const BALANCE_SHORT: i32 = -21014;
pub const CANCELLED_NO_RENEW: i32 = -21015;
pub const PRODUCT_LACKS_SERVICE: i32 = -21016;
pub const PRODUCT_UNKNOWN: i32 = -21017;
pub const BAD_FEE_TYPE: i32 = -21501;
pub const BAD_FEE: i32 = -21518;
pub const BAD_BILL_MONTH: i32 = -21554;
pub const RECON_BALANCED: i32 = -22001;
pub const RECON_UNBALANCED: i32 = -22002;
pub const RECON_TOO_EARLY: i32 = -22003;
pub const RECON_EXPIRED: i32 = -22004;
pub const BAD_PARAMETER: i32 = -21500;
pub const BAD_TRANSACTION_ID: i32 = -21513;
pub const BAD_TIMESTAMP: i32 = -21514;
pub const BAD_AUTHENTICATOR: i32 = -21548;
pub const BAD_STATUS: i32 = -21553;
pub const DECRYPT_EMPTY: i32 = -21555;
pub const DECRYPT_FAILED: i32 = -21557;
pub const SYSTEM_ERROR: i32 = -22500;
pub const DISK_ERROR: i32 = -22501;

/// The code table as shipped with the spec (kept identical to ../shared/spec/result-codes.tsv;
/// a test checks it).
pub const TABLE: &str = include_str!("result-codes.tsv");

fn table() -> &'static HashMap<i32, (&'static str, &'static str)> {
    static T: OnceLock<HashMap<i32, (&'static str, &'static str)>> = OnceLock::new();
    T.get_or_init(|| {
        TABLE
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut it = l.splitn(3, '\t');
                let code = it.next()?.parse().ok()?;
                Some((code, (it.next()?, it.next().unwrap_or(""))))
            })
            .collect()
    })
}

/// Is this a code of the table?
pub fn known(code: i32) -> bool {
    table().contains_key(&code)
}

/// The standard ErrDescription of a code: its meaning from the table (empty for 0).
pub fn describe(code: i32) -> &'static str {
    if code == OK {
        return "";
    }
    table().get(&code).map(|(_, m)| *m).unwrap_or("error")
}

/// The parameter code of a field (spec 2.1: `-215xx`, or -21500 where the field has none).
pub fn param_code(field: &str) -> i32 {
    match field {
        "FeeType" => -21501,
        "StopType" => -21503,
        "ProvinceID" | "SrcProvinceID" | "SPProvinceID" | "ProvinceCode" => -21504,
        "ServiceID" => -21505,
        "ServiceItemID" => -21506,
        "PaymentStatus" => -21507,
        "LedgerDate" => -21509,
        "Password" | "NewPassword" => -21510,
        "SPID" | "SrcDeviceNo" => -21511,
        "UserID" | "VNetUserID" => -21512,
        "TransactionID" => -21513,
        "TimeStamp" => -21514,
        "StartTime" => -21515,
        "EndTime" => -21516,
        "Fee" => -21518,
        "SequenceID" => -21519,
        "UserIP" | "NASIP" | "IPAddress" => -21520,
        "IsFinal" => -21521,
        "IfExtend" => -21522,
        "Reason" | "Description" => -21523,
        "PaymentType" => -21525,
        "RoamType" => -21527,
        "ServiceItemName" | "ItemName" => -21530,
        "BatchCount" => -21533,
        "TotalCount" => -21536,
        "OrderID" => -21537,
        "TotalFee" => -21538,
        "ProductID" => -21539,
        "Price" => -21543,
        "CityCode" => -21546,
        "ActionType" | "KeyRefreshType" => -21547,
        "Authenticator" => -21548,
        "AccountType" => -21551,
        "Account" | "PhoneNum" => -21552,
        "Status" => -21553,
        "BillMonth" => -21554,
        _ => BAD_PARAMETER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_spec_copy() {
        // The shared spec sits beside the repository (README); its absence is a failure, not a pass.
        let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/spec/result-codes.tsv");
        let s = std::fs::read_to_string(spec).unwrap_or_else(|e| panic!("cannot read {spec} ({e}): check out shared/ beside the repository"));
        assert_eq!(s, TABLE, "src/spec/result-codes.tsv differs from the spec's");
    }

    #[test]
    fn every_param_code_is_in_the_table() {
        for f in ["FeeType", "SPID", "VNetUserID", "Account", "PhoneNum", "Status", "BillMonth", "Alias", "UserType"] {
            assert!(known(param_code(f)), "{f}");
        }
        assert_eq!(describe(-20504), "用户帐号不存在");
        assert_eq!(describe(0), "");
    }
}
