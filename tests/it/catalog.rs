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
