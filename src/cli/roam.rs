//! `vnetd roam list | roam revoke --sp SPID --service ID --item ID [--reason TEXT]`.

use super::{open_store, print_table, CliResult, Failed};
use crate::config::Config;
use crate::domain::roaming;
use crate::runtime::logging::audit;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum RoamCmd {
    /// Roaming state of items: roam-out of local items, roam-in of other provinces' and the centre's
    List,
    /// End the roaming of a local SP's item for other provinces' users and tell the centre
    /// (RoamServiceRevoke)
    Revoke {
        /// The SP's SPID (8 digits)
        #[arg(long)]
        sp: String,
        /// The ServiceID
        #[arg(long)]
        service: String,
        /// The ServiceItemID
        #[arg(long)]
        item: String,
        /// Why (sent to the centre and audited; at most 256 characters)
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub fn run(cfg: &Config, cmd: RoamCmd) -> CliResult {
    let store = open_store(cfg)?;
    let own = cfg.node.province_id.clone();
    match cmd {
        RoamCmd::List => {
            let rows = store.read(|c| roaming::list(c, &own))?;
            print_table(&["direction", "spid", "sp_province", "service_id", "service_item_id", "name", "state", "set_by"], &rows);
            Ok(())
        }
        RoamCmd::Revoke { sp, service, item, reason } => {
            if reason.chars().count() > 256 {
                return Err(Failed("--reason is at most 256 characters".into()));
            }
            let now = cfg.clock().unix();
            let r = {
                let (sp, service, item, reason) = (sp.clone(), service.clone(), item.clone(), reason.clone());
                store.write(move |c| roaming::revoke_out(c, &sp, &service, &item, &reason, now))?
            };
            r.map_err(Failed)?;
            audit("roam_revoke", &[("sp", &sp), ("service", &service), ("item", &item), ("reason", &reason)]);
            println!("roaming of item {item} revoked; RoamServiceRevoke queued for the centre");
            Ok(())
        }
    }
}
