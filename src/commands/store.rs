//! `trustpath store …`: setting up a fleet's PostgreSQL store.

use anyhow::{Context, Result};

use crate::StoreCommand;

pub fn run(command: StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Migrate { store } => {
            let (before, after) =
                trustpath::store::postgres::migrate(&store).context("trustpath store migrate")?;
            if before == after {
                super::progress::note!("schema is at version {after}; nothing to do");
            } else {
                super::progress::note!("schema migrated from version {before} to {after}");
            }
            Ok(())
        }
        StoreCommand::Copy { from, to } => {
            let source = trustpath::store::open_for_scan(&from).with_context(|| {
                format!(
                    "opening {} (is a server still running on it?)",
                    from.display()
                )
            })?;
            let target =
                trustpath::store::open_fleet_log(&to).context("opening the destination store")?;
            let bar = super::progress::Bar::new("copying");
            let copied = trustpath::log::copy::copy_with(&source, &target, &bar)
                .context("copying the log")?;
            drop(bar);
            super::progress::note!(
                "copied {copied} entries and their checkpoints from {}",
                from.display()
            );
            Ok(())
        }
    }
}
