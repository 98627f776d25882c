//! `reset --yes` and `clean-versions`: this worker's local data.

use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::EXIT_USAGE;
use crate::store::TableSpec;
use crate::{App, Error, Result};

/// The `reset` command's arguments.
pub(super) fn reset_command() -> Command {
    Command::new("reset")
        .about("Delete this worker's local table state (it is rebuilt from the changelogs)")
        .arg(
            Arg::new("yes")
                .long("yes")
                .action(ArgAction::SetTrue)
                .help("Confirm: really delete"),
        )
}

/// The `clean-versions` command.
pub(super) fn clean_versions_command() -> Command {
    Command::new("clean-versions")
        .about("Delete the data directories of older versions of this app")
}

/// `reset`: refuses without `--yes`.
pub(super) fn reset(app: &App, m: &ArgMatches) -> ExitCode {
    if !m.get_flag("yes") {
        eprintln!(
            "error: reset deletes the local table state of app {:?} under {}; run again with --yes to confirm",
            app.id(),
            app.settings().table_path().display()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    super::finish(super::block_on(reset_tables(app)))
}

/// Empty every table's local store (rebuilt from the changelogs by the next
/// worker).
async fn reset_tables(app: &App) -> Result<()> {
    let tables = app.tables();
    if tables.is_empty() {
        println!("app {} has no tables", app.id());
        return Ok(());
    }
    let store = app.store().await?;
    for t in &tables {
        let ts = store
            .open(&TableSpec::new(t.name.clone(), t.partitions))
            .await?;
        ts.reset().await?;
        println!("reset table {} ({})", t.name, store.name());
    }
    Ok(())
}

/// `clean-versions`: delete `<app id of version v>-data` for every older
/// version v, next to this version's data directory.
pub(super) fn clean_versions(app: &App) -> Result<()> {
    let s = app.settings();
    let parent = s
        .datadir
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let mut removed = 0;
    for v in 1..s.version {
        let mut old = (*s).clone();
        old.version = v;
        let dir = parent.join(format!("{}-data", old.app_id()));
        if dir == s.datadir || !dir.exists() {
            continue;
        }
        std::fs::remove_dir_all(&dir).map_err(|e| Error::Io {
            context: format!("removing {}", dir.display()),
            source: e,
        })?;
        println!("removed {}", dir.display());
        removed += 1;
    }
    if removed == 0 {
        println!("no data directories of versions before {} found", s.version);
    }
    Ok(())
}
