//! The configuration loader (spec 9: TOML, defaults, unknown keys refused by name, checks) and
//! the catalogue file of `vnetd catalog import` (TOML), on the text the loaders read.
//!
//! Input: the file's bytes (the loaders read a UTF-8 `String`; other bytes are refused before
//! parsing, as `read_to_string` does).
//!
//! Asserts: nothing panics; a refusal says why (a non-empty message); a configuration that passes
//! `validate` can start the daemon: its addresses parse, its log level and its clock work (node
//! time and its `ts` text, with `node.time_offset_s` applied).

use afl::fuzz;
use vnetd::fuzzing::{parse_catalog, Config};

fn main() {
    fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        match Config::parse(text) {
            Ok(cfg) => match cfg.validate() {
                Ok(()) => {
                    let _ = (cfg.listen_addr(), cfg.admin_addr(), cfg.level());
                    let clock = cfg.clock();
                    let now = clock.unix();
                    let ts = clock.now_ts();
                    assert_eq!(ts.len(), 19, "node time {now} shows as {ts:?}");
                    assert!(clock.parse_ts(&ts).is_some_and(|t| (t - now).abs() <= 2), "{ts} is not {now}");
                }
                Err(e) => assert!(!e.is_empty()),
            },
            Err(e) => assert!(!e.is_empty()),
        }
        match parse_catalog(text) {
            Ok(c) => {
                let _ = (c.sp.len(), c.service.len(), c.item.len(), c.product.len());
            }
            Err(e) => assert!(!e.is_empty()),
        }
    });
}
