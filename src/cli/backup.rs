//! `vnetd backup FILE`: an online, consistent copy (SQLite backup API) while the daemon runs.

use super::{open_store, CliResult, Failed};
use crate::config::Config;
use crate::runtime::logging::audit;
use std::path::Path;

pub fn run(cfg: &Config, file: &Path) -> CliResult {
    if file.exists() {
        return Err(Failed(format!("{} already exists; choose a new file name", file.display())));
    }
    let store = open_store(cfg)?;
    let tmp = file.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    store.backup_to(&tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failed(format!("backup failed: {e}"))
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, file)?;
    audit("backup", &[("file", &file.display().to_string())]);
    println!("backup written to {}", file.display());
    Ok(())
}
