use crate::harness::*;

const EXAMPLE: &str = include_str!("../data/catalog-example.toml");

#[test]
fn catalog_import_and_list_through_the_cli() {
    let d = Daemon::start();
    let file = d.dir.path().join("cat.toml");
    std::fs::write(&file, EXAMPLE).unwrap();
    let out = d.ok(&["catalog", "import", file.to_str().unwrap()]);
    assert_eq!(out.trim(), "imported 1 SPs, 1 services, 2 items, 1 packages");
    let list = d.ok(&["catalog", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "kind\tid\towner\tname\tfee_type\tprice\tstatus\troam_out");
    assert_eq!(lines.len(), 6, "{list}");
    assert!(lines.contains(&"item\t3500000100000102\t3500000100000001\t音乐包月\t2\t1000\tactive\t0(import)"), "{list}");

    // A bad file: every bad entry with its position, exit 1, nothing written.
    let bad = EXAMPLE.replace("price = 1000", "price = -5").replace("spid = \"35000001\"\nname", "spid = \"3500001\"\nname");
    std::fs::write(&file, bad).unwrap();
    let out = d.cli(&["catalog", "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[[item]] #2 (3500000100000102): price"), "{err}");
    assert!(err.contains("[[sp]] #1 (3500001): spid must be 8 digits"), "{err}");
    assert!(err.contains("nothing imported"), "{err}");
    assert_eq!(d.ok(&["catalog", "list"]), list, "all-or-nothing");

    let out = d.cli(&["catalog", "import", "/nonexistent.toml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn user_auth_applies_the_use_rules_to_a_service_id() {
    let d = Daemon::with_peers(false);
    let national_key = "1111111111111111222222222222222233333333333333334";
    let national_key = &national_key[..48];
    d.ok(&["peer", "add", "--id", "35000003", "--kind", "sp", "--key", national_key]);
    let extra = "\n[[sp]]\nspid = \"35000002\"\nname = \"other\"\nscope = \"province\"\n\
        [[service]]\nservice_id = \"3500000200000001\"\nspid = \"35000002\"\nname = \"other svc\"\nstatus = \"active\"\n\
        [[service]]\nservice_id = \"3500000100000002\"\nspid = \"35000001\"\nname = \"paused\"\nstatus = \"suspended\"\n\
        [[sp]]\nspid = \"35000003\"\nname = \"national\"\nscope = \"national\"\n\
        [[service]]\nservice_id = \"0000000300000001\"\nspid = \"35000003\"\nname = \"centre svc\"\nstatus = \"active\"\n";
    let file = d.dir.path().join("cat.toml");
    std::fs::write(&file, format!("{EXAMPLE}{extra}")).unwrap();
    d.ok(&["catalog", "import", file.to_str().unwrap()]);
    let out = d.cli_stdin(&["user", "add", "--account-type", "01", "--account", "fz001", "--city-code", "0591", "--password-stdin"], "s3cret-Pass\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let auth = |spid: &str, key: &str, service: &str| {
        let pw = enc(key, "s3cret-Pass");
        d.call("ProvinceForSP", "UserAuth", key, &[
            ("SPID", spid), ("ServiceID", service), ("AccountType", "01"), ("Account", "fz001"), ("Password", &pw), ("UserIP", ""),
        ])
        .result()
    };
    assert_eq!(auth(SP_ID, SP_KEY, "3500000100000001"), 0, "own active service");
    assert_eq!(auth(SP_ID, SP_KEY, ""), 0, "no service");
    assert_eq!(auth(SP_ID, SP_KEY, "3500000100000009"), -20004, "unknown service");
    assert_eq!(auth(SP_ID, SP_KEY, "3500000200000001"), -20004, "another SP's service");
    assert_eq!(auth(SP_ID, SP_KEY, "3500000100000002"), -20005, "suspended service");
    assert_eq!(auth("35000003", national_key, "0000000300000001"), -21001, "national service without approval");
}
