//! The command line every app gets from `app.main()`: `worker`, `send`,
//! `agents`, `tables`, `topics`, `reset`, `clean-versions`, plus the app's
//! own commands ([`AppCommand`]).
//!
//! [`run`] parses and dispatches; each command's arguments and body live in
//! one submodule: `worker` (banner, logging), `send`, `local_data` (`reset`,
//! `clean-versions`), `listing` (`agents`, `tables`, `topics`, box drawing),
//! `app_commands` (`app.command(..)`).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};

use crate::{App, Error, Result};

mod app_commands;
mod listing;
mod local_data;
mod send;
mod worker;

pub use app_commands::AppCommand;
pub use listing::listing;
pub use worker::{banner, init_logging};

/// Exit code for a bad command line or bad settings.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;

fn command(app: &App) -> Command {
    Command::new(app.id().to_string())
        .subcommands(app_commands::definitions(app))
        .about(format!("Faustus app {}", app.id()))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(worker::command())
        .subcommand(send::command())
        .subcommand(local_data::reset_command())
        .subcommand(local_data::clean_versions_command())
        .subcommand(Command::new("agents").about("List the app's agents: name, topic, help"))
        .subcommand(
            Command::new("tables").about("List the app's tables: name, changelog topic, help"),
        )
        .subcommand(Command::new("topics").about("List the topics the app declared"))
        .arg(
            Arg::new("json")
                .long("json")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Print listings as JSON"),
        )
}

/// Parse `args` (the first is the program name) and run the command; returns
/// the process exit code. Drivers must be registered first (`app.main()`
/// does that; call this directly to run the command line of an app whose
/// registry you filled yourself: `faustus::cli::run(&app, std::env::args_os())`).
pub fn run(app: &App, args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let matches = match command(app).try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let json = matches.get_flag("json");
    match matches.subcommand() {
        Some(("worker", m)) => worker::run(app, m),
        Some(("agents", _)) => listing::agents(app, json),
        Some(("tables", _)) => listing::tables(app, json),
        Some(("send", m)) => finish(block_on(send::send(app, m))),
        Some(("reset", m)) => local_data::reset(app, m),
        Some(("clean-versions", _)) => finish(local_data::clean_versions(app)),
        Some(("topics", _)) => listing::topics(app, json),
        Some((name, m)) => app_commands::run(app, name, m),
        None => ExitCode::from(EXIT_USAGE),
    }
}

/// Exit 0, or print the error on stderr (one line) and exit 1.
fn finish(r: Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Run `f` on a fresh multi-threaded tokio runtime.
fn block_on<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io {
            context: "starting the tokio runtime".into(),
            source: e,
        })?;
    let result = rt.block_on(f);
    // Everything that matters (flushes, commits, the store) finished inside
    // `block_on`; a blocking call still under way (a metadata request to an
    // unreachable broker) must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
