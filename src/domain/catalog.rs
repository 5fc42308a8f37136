//! The service catalogue (issue 3 item 1): SPs, services, service items and packages, imported
//! from TOML (`../shared/spec/catalog-example.toml`) with upsert semantics, all-or-nothing.

use super::Error;
use crate::store::catalog as db;
use crate::store::DbResult;
use crate::store::{Read, Write};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    #[serde(default)]
    pub sp: Vec<SpEntry>,
    #[serde(default)]
    pub service: Vec<ServiceEntry>,
    #[serde(default)]
    pub item: Vec<ItemEntry>,
    #[serde(default)]
    pub product: Vec<ProductEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpEntry {
    pub spid: String,
    pub name: String,
    pub scope: String,
    #[serde(default)]
    pub offline_payment: bool,
    #[serde(default)]
    pub roam_out: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub service_id: String,
    pub spid: String,
    pub name: String,
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemEntry {
    pub service_item_id: String,
    pub service_id: String,
    pub name: String,
    pub fee_type: String,
    pub price: i64,
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductEntry {
    pub product_id: String,
    pub spid: String,
    pub name: String,
    pub package_price: i64,
    pub items: Vec<String>,
    pub status: String,
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

fn name_ok(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= 256
}

fn fen_ok(n: i64) -> bool {
    (0..=100_000_000).contains(&n)
}

/// The checks every named entry shares: its name, and its status where it has one.
fn check_common(at: &str, name: &str, status: Option<&str>, errs: &mut Vec<String>) {
    if !name_ok(name) {
        errs.push(format!("{at}: name must be 1 to 256 characters"));
    }
    if let Some(st) = status.filter(|s| *s != "active" && *s != "suspended") {
        errs.push(format!("{at}: status must be \"active\" or \"suspended\", not {st:?}"));
    }
}

/// Parse a catalogue file; TOML errors carry their line and column.
pub fn parse(text: &str) -> Result<CatalogFile, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
}

/// Counts of what an import wrote.
#[derive(Debug, PartialEq, Default)]
pub struct Imported {
    pub sps: usize,
    pub services: usize,
    pub items: usize,
    pub products: usize,
}

/// Validate against the file itself and the database, then upsert everything in the caller's
/// transaction. Every bad entry is reported with its position (`[[item]] #2`); on any error
/// nothing is written.
pub fn import(conn: &Write, f: &CatalogFile, now: i64) -> DbResult<Result<Imported, Vec<String>>> {
    let mut errs = Vec::new();
    let dup = |kind: &str, ids: Vec<&str>, errs: &mut Vec<String>| {
        let mut seen = HashMap::new();
        for (i, id) in ids.into_iter().enumerate() {
            if let Some(first) = seen.insert(id.to_string(), i + 1) {
                errs.push(format!("[[{kind}]] #{} ({id}): repeats [[{kind}]] #{first}", i + 1));
            }
        }
    };
    dup("sp", f.sp.iter().map(|e| e.spid.as_str()).collect(), &mut errs);
    dup("service", f.service.iter().map(|e| e.service_id.as_str()).collect(), &mut errs);
    dup("item", f.item.iter().map(|e| e.service_item_id.as_str()).collect(), &mut errs);
    dup("product", f.product.iter().map(|e| e.product_id.as_str()).collect(), &mut errs);

    let file_sps: HashSet<&str> = f.sp.iter().map(|e| e.spid.as_str()).collect();
    let sp_known = |id: &str| -> DbResult<bool> { Ok(file_sps.contains(id) || db::sp_exists(conn, id)?) };
    // service_id -> spid, from the file or the database
    let mut service_sp: HashMap<String, String> = f.service.iter().map(|e| (e.service_id.clone(), e.spid.clone())).collect();
    // item id -> (spid, fee_type)
    let mut item_info: HashMap<String, (String, String)> = HashMap::new();

    for (i, e) in f.sp.iter().enumerate() {
        let at = format!("[[sp]] #{} ({})", i + 1, e.spid);
        if !digits(&e.spid, 8) {
            errs.push(format!("{at}: spid must be 8 digits"));
        }
        check_common(&at, &e.name, None, &mut errs);
        if e.scope != "province" && e.scope != "national" {
            errs.push(format!("{at}: scope must be \"province\" or \"national\", not {:?}", e.scope));
        }
    }
    for (i, e) in f.service.iter().enumerate() {
        let at = format!("[[service]] #{} ({})", i + 1, e.service_id);
        if !digits(&e.service_id, 16) {
            errs.push(format!("{at}: service_id must be 16 digits"));
        }
        if !sp_known(&e.spid)? {
            errs.push(format!("{at}: spid {} is neither in the file nor in the catalogue", e.spid));
        }
        check_common(&at, &e.name, Some(&e.status), &mut errs);
    }
    for (i, e) in f.item.iter().enumerate() {
        let at = format!("[[item]] #{} ({})", i + 1, e.service_item_id);
        if !digits(&e.service_item_id, 16) {
            errs.push(format!("{at}: service_item_id must be 16 digits"));
        }
        if !service_sp.contains_key(&e.service_id) {
            match db::spid_of_service(conn, &e.service_id)? {
                Some(spid) => {
                    service_sp.insert(e.service_id.clone(), spid);
                }
                None => errs.push(format!("{at}: service_id {} is neither in the file nor in the catalogue", e.service_id)),
            }
        }
        check_common(&at, &e.name, Some(&e.status), &mut errs);
        if !["1", "2", "3"].contains(&e.fee_type.as_str()) {
            errs.push(format!("{at}: fee_type must be \"1\" (per use), \"2\" (monthly) or \"3\" (free), not {:?}", e.fee_type));
        }
        if !fen_ok(e.price) {
            errs.push(format!("{at}: price must be 0 to 100000000 fen"));
        }
        if let Some(spid) = service_sp.get(&e.service_id) {
            item_info.insert(e.service_item_id.clone(), (spid.clone(), e.fee_type.clone()));
        }
    }
    for (i, e) in f.product.iter().enumerate() {
        let at = format!("[[product]] #{} ({})", i + 1, e.product_id);
        if !digits(&e.product_id, 16) {
            errs.push(format!("{at}: product_id must be 16 digits"));
        }
        if !sp_known(&e.spid)? {
            errs.push(format!("{at}: spid {} is neither in the file nor in the catalogue", e.spid));
        }
        check_common(&at, &e.name, Some(&e.status), &mut errs);
        if !fen_ok(e.package_price) {
            errs.push(format!("{at}: package_price must be 0 to 100000000 fen"));
        }
        if e.items.is_empty() {
            errs.push(format!("{at}: items must name at least one monthly item"));
        }
        for it in &e.items {
            let info = match item_info.get(it) {
                Some(i) => Some(i.clone()),
                None => db::item_sp_and_fee_type(conn, it)?,
            };
            match info {
                None => errs.push(format!("{at}: item {it} is neither in the file nor in the catalogue")),
                Some((spid, fee_type)) => {
                    if spid != e.spid {
                        errs.push(format!("{at}: item {it} belongs to SP {spid}, not {}", e.spid));
                    }
                    if fee_type != "2" {
                        errs.push(format!("{at}: item {it} is not a monthly item (fee_type 2)"));
                    }
                }
            }
        }
    }
    if !errs.is_empty() {
        return Ok(Err(errs));
    }
    for e in &f.sp {
        db::upsert_sp(conn, &e.spid, &e.name, &e.scope, e.offline_payment, e.roam_out, now)?;
    }
    for e in &f.service {
        db::upsert_service(conn, &e.service_id, &e.spid, &e.name, &e.status, now)?;
    }
    for e in &f.item {
        db::upsert_item(conn, &e.service_item_id, &e.service_id, &e.name, &e.fee_type, e.price, &e.status, now)?;
    }
    for e in &f.product {
        db::upsert_product(conn, &e.product_id, &e.spid, &e.name, e.package_price, &e.status, &e.items, now)?;
    }
    Ok(Ok(Imported { sps: f.sp.len(), services: f.service.len(), items: f.item.len(), products: f.product.len() }))
}

pub use crate::store::catalog::{list, service, ServiceInfo};

/// What a payment page shows of a PayRequest (spec 5.3): the SP's name and the item's name, when
/// the service is the SP's (else `UnknownService`) and the item is of that service (else
/// `ItemUnavailable`).
pub fn payment_names(conn: &Read, spid: &str, service_id: &str, item_id: &str) -> DbResult<Result<(String, String), Error>> {
    let Some(sp) = db::sp_name_of_service(conn, spid, service_id)? else { return Ok(Err(Error::UnknownService)) };
    let item = db::item_name_of_service(conn, service_id, item_id)?;
    Ok(item.map(|i| (sp, i)).ok_or(Error::ItemUnavailable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    const EXAMPLE: &str = include_str!("../../tests/data/catalog-example.toml");

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("v.db")).unwrap();
        (dir, s)
    }

    fn run(s: &Store, text: &str) -> Result<Imported, Vec<String>> {
        let f = parse(text).map_err(|e| vec![e])?;
        s.write_with(move |c| {
            let r = import(c, &f, 1)?;
            let keep = r.is_ok();
            Ok((r, keep))
        })
        .unwrap()
    }

    #[test]
    fn example_imports_and_lists() {
        let (_d, s) = store();
        assert_eq!(run(&s, EXAMPLE).unwrap(), Imported { sps: 1, services: 1, items: 2, products: 1 });
        let rows = s.read(list).unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0][..4], ["sp", "35000001", "", "福建星空音乐"]);
        assert_eq!(rows[4][7], "3500000100000102");
        // Upsert: importing again changes nothing but what changed.
        let changed = EXAMPLE.replace("price = 200", "price = 300");
        run(&s, &changed).unwrap();
        let price: i64 = s.read(|c| Ok(c.test_conn().query_row("SELECT price FROM item WHERE service_item_id='3500000100000101'", [], |r| r.get(0))?)).unwrap();
        assert_eq!(price, 300);
    }

    #[test]
    fn bad_entries_are_all_reported_and_nothing_is_written() {
        let (_d, s) = store();
        let bad = EXAMPLE
            .replace("fee_type = \"1\"", "fee_type = \"7\"")
            .replacen("status = \"active\"", "status = \"closed\"", 1)
            .replace("items = [\"3500000100000102\"]", "items = [\"3500000100000101\"]");
        let errs = run(&s, &bad).unwrap_err();
        assert!(errs.iter().any(|e| e.starts_with("[[item]] #1 (3500000100000101): fee_type")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("[[service]] #1") && e.contains("status")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("[[product]] #1") && e.contains("not a monthly item")), "{errs:?}");
        assert!(s.read(list).unwrap().is_empty(), "all-or-nothing");
        let e = run(&s, "[[sp]]\nspid = \"35000001\"\nname = \"x\"\nscope = \"province\"\nbogus = 1\n").unwrap_err();
        assert!(e[0].contains("bogus"), "{e:?}");
    }

    #[test]
    fn roam_out_state_set_elsewhere_survives_an_import() {
        let (_d, s) = store();
        run(&s, EXAMPLE).unwrap();
        s.write(|c| Ok(c.test_conn().execute("UPDATE item SET roam_out = 1, roam_out_source = 'notify' WHERE service_item_id = '3500000100000101'", [])?)).unwrap();
        run(&s, &EXAMPLE.replace("roam_out = false", "roam_out = false ")).unwrap();
        let get = |id: &str| s.read(|c| Ok(c.test_conn().query_row("SELECT roam_out FROM item WHERE service_item_id = ?1", [id], |r| r.get::<_, i64>(0))?)).unwrap();
        assert_eq!(get("3500000100000101"), 1, "set by RoamServiceNotify: kept");
        run(&s, &EXAMPLE.replace("roam_out = false", "roam_out = true")).unwrap();
        assert_eq!(get("3500000100000102"), 1, "seeded from the SP");
    }
}
