//! The command line every app gets from `app.main()`: `worker`, `agents`, `tables`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};

use crate::app::App;
use crate::error::Result;

/// Exit code for a bad command line or bad settings.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;

fn command(app: &App) -> Command {
    let custom: Vec<Command> = app
        .inner
        .defs
        .lock()
        .commands
        .iter()
        .map(|c| c.command.clone())
        .collect();
    Command::new(app.id().to_string())
        .subcommands(custom)
        .about(format!("Faustus app {}", app.id()))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(
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
                ),
        )
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

/// Parse `args` (the first is the program name) and run the command.
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
        Some(("worker", m)) => {
            let level = m
                .get_one::<String>("loglevel")
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_else(|| "warn".into());
            init_logging(&level);
            if let Some(dir) = m.get_one::<PathBuf>("datadir") {
                let dir = dir.clone();
                if let Err(e) = app.configure(|s| s.datadir = dir) {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
            match block_on(app.run()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
        Some(("agents", _)) => {
            let rows: Vec<Vec<String>> = app
                .agents()
                .into_iter()
                .map(|a| vec![a.name, a.topic, a.help])
                .collect();
            print!(
                "{}",
                listing("Agents", &["name", "topic", "help"], &rows, json)
            );
            ExitCode::SUCCESS
        }
        Some(("tables", _)) => {
            let rows: Vec<Vec<String>> = app
                .tables()
                .into_iter()
                .map(|t| vec![t.name, t.changelog, t.help])
                .collect();
            print!(
                "{}",
                listing("Tables", &["name", "changelog", "help"], &rows, json)
            );
            ExitCode::SUCCESS
        }
        Some(("topics", _)) => {
            let rows: Vec<Vec<String>> = app.topics().into_iter().map(|t| vec![t]).collect();
            print!("{}", listing("Topics", &["name"], &rows, json));
            ExitCode::SUCCESS
        }
        Some((name, m)) => {
            let run = app
                .inner
                .defs
                .lock()
                .commands
                .iter()
                .find(|c| c.command.get_name() == name)
                .map(|c| c.run.clone());
            let Some(run) = run else {
                return ExitCode::from(EXIT_USAGE);
            };
            init_logging("warn");
            match block_on(run(app.clone(), m.clone())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
        None => ExitCode::from(EXIT_USAGE),
    }
}

fn block_on<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::Io {
            context: "starting the tokio runtime".into(),
            source: e,
        })?;
    rt.block_on(f)
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

/// A box-drawn table like Faust's `agents` output, or JSON rows.
pub fn listing(title: &str, headers: &[&str], rows: &[Vec<String>], json: bool) -> String {
    if json {
        let objs: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::Value::Object(
                    headers
                        .iter()
                        .zip(r)
                        .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.clone())))
                        .collect(),
                )
            })
            .collect();
        return format!("{}\n", serde_json::Value::Array(objs));
    }
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(c));
            }
        }
    }
    if let Some(w) = widths.first_mut() {
        *w = (*w).max(width(title));
    }
    let line = |l: &str, m: &str, r: &str, first: Option<&str>| {
        let mut s = String::from(l);
        for (i, w) in widths.iter().enumerate() {
            if i > 0 {
                s.push_str(m);
            }
            let fill = match (i, first) {
                (0, Some(t)) => format!("{t}{}", "─".repeat(w + 2 - width(t))),
                _ => "─".repeat(w + 2),
            };
            s.push_str(&fill);
        }
        s.push_str(r);
        s.push('\n');
        s
    };
    let row = |cells: &[String]| {
        let mut s = String::from("│");
        for (i, w) in widths.iter().enumerate() {
            let c = cells.get(i).map(String::as_str).unwrap_or("");
            s.push_str(&format!(" {c}{} │", " ".repeat(w - width(c))));
        }
        s.push('\n');
        s
    };
    let mut out = line("┌", "┬", "┐", Some(title));
    out.push_str(&row(&headers
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()));
    out.push_str(&line("├", "┼", "┤", None));
    for r in rows {
        out.push_str(&row(r));
    }
    out.push_str(&line("└", "┴", "┘", None));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_looks_like_faust() {
        let out = listing(
            "Agents",
            &["name", "topic", "help"],
            &[vec![
                "@myagent".into(),
                "stream-example-myagent".into(),
                "Example agent.".into(),
            ]],
            false,
        );
        let expected = "\
┌Agents────┬────────────────────────┬────────────────┐
│ name     │ topic                  │ help           │
├──────────┼────────────────────────┼────────────────┤
│ @myagent │ stream-example-myagent │ Example agent. │
└──────────┴────────────────────────┴────────────────┘
";
        assert_eq!(out, expected);
    }

    #[test]
    fn json_listing() {
        let out = listing("T", &["name"], &[vec!["a".into()]], true);
        assert_eq!(out.trim(), r#"[{"name":"a"}]"#);
    }
}
