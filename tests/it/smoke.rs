use crate::harness::*;

#[test]
fn open_then_authenticate() {
    let d = Daemon::with_peers(false);
    let pw = enc(BSS_KEY, "s3cret-Pass");
    let r = d.call("ProvinceForBSS", "UserOpen", BSS_KEY, &[
        ("SrcDeviceNo", BSS_ID), ("AccountType", "01"), ("Account", "fz12345678"), ("Password", &pw),
        ("CityCode", "0591"), ("UserType", "1"), ("CreditLimit", ""), ("Balance", ""), ("Alias", ""),
        ("BindingAccessNo", ""), ("TransactionID", "TX-1"),
    ]);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    let id = r.get("VNetUserID").to_string();
    assert_eq!(id, "350000000001");
    let pw = enc(SP_KEY, "s3cret-Pass");
    let r = d.call("ProvinceForSP", "UserAuth", SP_KEY, &[
        ("SPID", SP_ID), ("ServiceID", ""), ("AccountType", "01"), ("Account", "fz12345678"), ("Password", &pw), ("UserIP", ""),
    ]);
    assert_eq!(r.result(), 0, "{:?}", r.fields);
    assert_eq!(r.get("VNetUserID"), id);
    assert_eq!(r.order, ["Result", "ErrDescription", "VNetUserID", "ProvinceID", "CityCode", "UserType", "Status"]);
}
