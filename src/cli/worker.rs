//! `worker`: run a worker until Ctrl-C/SIGTERM, with the log level, data
//! directory and web flags, and the startup banner.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::{listing, EXIT_FAILURE, EXIT_USAGE};
use crate::worker::shutdown_signal;
use crate::{App, Result};

/// The `worker` command's arguments.
pub(super) fn command() -> Command {
    Command::new("worker")
        .about("Start a worker: consume, process, commit; stop with Ctrl-C or SIGTERM")
        .arg(
            Arg::new("loglevel")
                .short('l')
                .long("loglevel")
                .value_parser([
                    "trace", "debug", "info", "warn", "warning", "error", "critical",
                ])
                .ignore_case(true)
                .default_value("warn")
                .help("Log level (RUST_LOG, when set, wins)"),
        )
        .arg(
            Arg::new("datadir")
                .long("datadir")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Data directory (tables live in <datadir>/<tabledir>)"),
        )
        .arg(
            Arg::new("web-host")
                .long("web-host")
                .value_name("HOST")
                .help("Web server bind address (setting web_host, default 127.0.0.1)"),
        )
        .arg(
            Arg::new("web-port")
                .long("web-port")
                .value_name("PORT")
                .value_parser(clap::value_parser!(u16))
                .help("Web server port, 0 for any free one (setting web_port, default 6066)"),
        )
        .arg(
            Arg::new("without-web")
                .long("without-web")
                .action(ArgAction::SetTrue)
                .help("Do not start the web server"),
        )
}

/// `worker`: set up logging, apply the flags to the settings, run.
pub(super) fn run(app: &App, m: &ArgMatches) -> ExitCode {
    let level = m
        .get_one::<String>("loglevel")
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| "warn".into());
    init_logging(&level);
    let datadir = m.get_one::<PathBuf>("datadir").cloned();
    let host = m.get_one::<String>("web-host").cloned();
    let port = m.get_one::<u16>("web-port").copied();
    let without_web = m.get_flag("without-web");
    let configured = app.configure(|s| {
        if let Some(dir) = datadir {
            s.datadir = dir;
        }
        if let Some(h) = host {
            s.web_host = h;
        }
        if let Some(p) = port {
            s.web_port = p;
        }
        if without_web {
            s.web_enabled = false;
        }
    });
    if let Err(e) = configured {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    match super::block_on(run_worker(app, level)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Run a worker until Ctrl-C/SIGTERM; print the banner once it is ready.
async fn run_worker(app: &App, level: String) -> Result<()> {
    let worker = app.start().await?;
    let signal = worker.signal();
    tokio::select! {
        r = worker.ready() => match r {
            Ok(()) => print!("{}", banner(app, &level)),
            Err(_) => return worker.wait().await,
        },
        _ = shutdown_signal() => return worker.stop().await,
    }
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutdown requested; finishing events in hand");
        }
        _ = signal.wait() => {}
    }
    worker.stop().await
}

/// The startup banner: app id, transport, store, web URL, agents and tables.
pub fn banner(app: &App, loglevel: &str) -> String {
    let s = app.settings();
    let web = if s.web_enabled {
        app.web_url()
            .unwrap_or_else(|| "off (no web driver registered)".into())
    } else {
        "off (--without-web)".into()
    };
    let rows: Vec<Vec<String>> = [
        ("id", app.id().to_string()),
        ("transport", faustus_core::url::redact(&s.broker)),
        ("store", s.store.clone()),
        ("web", web),
        ("log", format!("-stderr- ({loglevel})")),
        ("pid", std::process::id().to_string()),
        ("datadir", s.datadir.display().to_string()),
        ("tabledir", s.table_path().display().to_string()),
        (
            "leader",
            if app.is_leader() { "yes" } else { "no" }.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_string(), v])
    .collect();
    let mut out = listing(
        &format!("Faustus v{}", env!("CARGO_PKG_VERSION")),
        &["setting", "value"],
        &rows,
        false,
    );
    let agents: Vec<Vec<String>> = app
        .agents()
        .into_iter()
        .map(|a| vec![a.name, a.topic])
        .collect();
    if !agents.is_empty() {
        out.push_str(&listing("Agents", &["name", "topic"], &agents, false));
    }
    let tables: Vec<Vec<String>> = app
        .tables()
        .into_iter()
        .map(|t| vec![t.name, t.changelog])
        .collect();
    if !tables.is_empty() {
        out.push_str(&listing("Tables", &["name", "changelog"], &tables, false));
    }
    out.push_str("[^Worker] Ready\n");
    out
}

/// Install a `tracing` subscriber printing to stderr at `level` (RUST_LOG wins when set).
pub fn init_logging(level: &str) {
    let level = match level {
        "warning" => "warn",
        "critical" => "error",
        l => l,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
