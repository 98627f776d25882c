//! The command line every app gets from `app.main()`: `worker`, `send`,
//! `agents`, `tables`, `topics`, `reset`, `clean-versions`, plus the app's
//! own commands.

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
                        .help(
                            "Web server port, 0 for any free one (setting web_port, default 6066)",
                        ),
                )
                .arg(
                    Arg::new("without-web")
                        .long("without-web")
                        .action(ArgAction::SetTrue)
                        .help("Do not start the web server"),
                ),
        )
        .subcommand(
            Command::new("send")
                .about("Send a message to a topic, or to an agent with @name")
                .arg(
                    Arg::new("entity")
                        .required(true)
                        .value_name("TOPIC|@AGENT")
                        .help("Topic name, or @agent for the agent's topic"),
                )
                .arg(Arg::new("value").value_name("VALUE").help(
                    "The value: JSON, else taken as a string (none: a message without value)",
                ))
                .arg(
                    Arg::new("key")
                        .short('k')
                        .long("key")
                        .help("The key: JSON, else taken as a string"),
                )
                .arg(
                    Arg::new("partition")
                        .long("partition")
                        .value_parser(clap::value_parser!(u32))
                        .help("Partition (default: by key)"),
                )
                .arg(
                    Arg::new("repeat")
                        .short('r')
                        .long("repeat")
                        .value_parser(clap::value_parser!(u64).range(1..))
                        .default_value("1")
                        .help("Send the message this many times"),
                ),
        )
        .subcommand(
            Command::new("reset")
                .about("Delete this worker's local table state (it is rebuilt from the changelogs)")
                .arg(
                    Arg::new("yes")
                        .long("yes")
                        .action(ArgAction::SetTrue)
                        .help("Confirm: really delete"),
                ),
        )
        .subcommand(
            Command::new("clean-versions")
                .about("Delete the data directories of older versions of this app"),
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
            match block_on(run_worker(app, level)) {
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
        Some(("send", m)) => finish(block_on(send(app, m))),
        Some(("reset", m)) => {
            if !m.get_flag("yes") {
                eprintln!(
                    "error: reset deletes the local table state of app {:?} under {}; run again with --yes to confirm",
                    app.id(),
                    app.settings().table_path().display()
                );
                return ExitCode::from(EXIT_USAGE);
            }
            finish(block_on(reset(app)))
        }
        Some(("clean-versions", _)) => finish(clean_versions(app)),
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

fn finish(r: Result<()>) -> ExitCode {
    match r {
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
        _ = crate::worker::shutdown_signal() => return worker.stop().await,
    }
    tokio::select! {
        _ = crate::worker::shutdown_signal() => {
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
        ("transport", s.broker.clone()),
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

/// Encode command-line text with `codec`: JSON formats take it as JSON when
/// it parses, else as a string; raw formats take the text as is.
fn encode_text(codec: &crate::codec::CodecChain, text: &str, what: &str) -> Result<bytes::Bytes> {
    let encoded = match codec.format() {
        crate::codec::Format::Json => {
            let v: serde_json::Value = serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
            codec.encode(&v)
        }
        crate::codec::Format::Raw => codec.encode(&text.to_string()),
    };
    encoded.map_err(|m| {
        crate::Error::config(
            what,
            format!("cannot encode {text:?} with codec {}: {m}", codec.name()),
        )
    })
}

/// `send TOPIC|@AGENT [VALUE] --key K --partition P --repeat N`.
async fn send(app: &App, m: &clap::ArgMatches) -> Result<()> {
    let entity = m.get_one::<String>("entity").cloned().unwrap_or_default();
    let topic = match entity.strip_prefix('@') {
        Some(agent) => app
            .agents()
            .into_iter()
            .find(|a| a.name.trim_start_matches('@') == agent)
            .map(|a| a.topic)
            .ok_or_else(|| crate::Error::NotFound {
                what: "agent",
                name: format!(
                    "@{agent} (agents: {})",
                    app.agents()
                        .into_iter()
                        .map(|a| a.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?,
        None => entity,
    };
    let def = app.inner.defs.lock().topics.get(&topic).cloned();
    let (key_codec, value_codec) = match &def {
        Some(d) => (d.key_codec.clone(), d.value_codec.clone()),
        None => (
            app.registry().codec(&app.settings().key_serializer)?,
            app.registry().codec(&app.settings().value_serializer)?,
        ),
    };
    if let Some(d) = &def {
        d.declare(&app.inner).await?;
    }
    let key = m
        .get_one::<String>("key")
        .map(|k| encode_text(&key_codec, k, "--key"))
        .transpose()?;
    let value = m
        .get_one::<String>("value")
        .map(|v| encode_text(&value_codec, v, "value"))
        .transpose()?;
    let partition = m.get_one::<u32>("partition").copied();
    let repeat = m.get_one::<u64>("repeat").copied().unwrap_or(1);
    let producer = app.producer().await?;
    for _ in 0..repeat {
        let mut record = crate::transport::Record::new(topic.clone(), key.clone(), value.clone());
        record.partition = partition;
        let meta = producer.send(record).await?.await?;
        println!(
            "{}",
            serde_json::json!({"topic": topic, "partition": meta.partition, "offset": meta.offset})
        );
    }
    producer.flush().await
}

/// `reset --yes`: empty every table's local store (rebuilt from the
/// changelogs by the next worker).
async fn reset(app: &App) -> Result<()> {
    let tables = app.inner.defs.lock().tables.clone();
    if tables.is_empty() {
        println!("app {} has no tables", app.id());
        return Ok(());
    }
    let store = app.inner.store().await?;
    for t in &tables {
        let ts = store
            .open(&crate::store::TableSpec::new(
                t.name().to_string(),
                t.partitions(),
            ))
            .await?;
        ts.reset().await?;
        println!("reset table {} ({})", t.name(), store.name());
    }
    Ok(())
}

/// `clean-versions`: delete `<app id of version v>-data` for every older
/// version v, next to this version's data directory.
fn clean_versions(app: &App) -> Result<()> {
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
        std::fs::remove_dir_all(&dir).map_err(|e| crate::Error::Io {
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
