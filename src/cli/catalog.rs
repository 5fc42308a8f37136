//! `vnetd catalog import FILE.toml | catalog list`.

use super::{open_store, print_table, CliResult, Failed};
use crate::config::Config;
use crate::domain::catalog;
use crate::runtime::logging::audit;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum CatalogCmd {
    /// Import SPs, services, items and packages (upsert by id, all-or-nothing)
    Import {
        /// The catalogue file (TOML)
        file: PathBuf,
    },
    /// List the catalogue
    List,
}

pub fn run(cfg: &Config, cmd: CatalogCmd) -> CliResult {
    match cmd {
        CatalogCmd::Import { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| Failed(format!("cannot read {}: {e}", file.display())))?;
            let parsed = catalog::parse(&text).map_err(|e| Failed(format!("{}: {e}\nnothing imported", file.display())))?;
            let store = open_store(cfg)?;
            let now = cfg.clock().unix();
            let r = store.write_with(move |c| {
                let r = catalog::import(c, &parsed, now)?;
                let keep = r.is_ok();
                Ok((r, keep))
            })?;
            match r {
                Ok(n) => {
                    audit("catalog_import", &[("file", &file.display().to_string())]);
                    println!("imported {} SPs, {} services, {} items, {} packages", n.sps, n.services, n.items, n.products);
                    Ok(())
                }
                Err(errs) => Err(Failed(format!("{}:\n{}\nnothing imported", file.display(), errs.join("\n")))),
            }
        }
        CatalogCmd::List => {
            let store = open_store(cfg)?;
            let rows = store.read(catalog::list)?;
            print_table(&["kind", "id", "owner", "name", "fee_type", "price", "status", "roam_out"], &rows);
            Ok(())
        }
    }
}
