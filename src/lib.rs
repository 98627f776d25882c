#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub use faustus_core::*;

pub mod cli;

pub use cli::AppCommand;

/// [clap](https://docs.rs/clap), which describes the arguments of the app's
/// own commands ([`AppCommand::command`]).
pub use clap;

/// Everything an app module usually needs.
pub mod prelude {
    pub use crate::{AppCommand, AppMain};
    pub use faustus_core::{
        Agent, App, Channel, Error, Event, Result, SendOptions, Stream, Table, Topic, WindowRange,
        WindowedTable,
    };
    pub use futures::StreamExt;
}

pub use futures;

/// An HTTP/1.1 client (for talking to workers' web servers).
#[cfg(feature = "web")]
pub use faustus_web::client::HttpClient;

/// Register the drivers this build's cargo features enable into
/// [`Registry::global`] (idempotent). `main` and `run_app` call it for you.
pub fn install_default_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| register_default_drivers(Registry::global()));
}

/// Register the drivers this build's cargo features enable into `registry`.
pub fn register_default_drivers(registry: &Registry) {
    #[cfg(feature = "memory")]
    {
        faustus_transport_memory::register(registry);
        faustus_store_memory::register(registry);
    }
    #[cfg(feature = "kafka")]
    faustus_transport_kafka::register(registry);
    #[cfg(feature = "redb")]
    faustus_store_redb::register(registry);
    #[cfg(feature = "web")]
    faustus_web::register(registry);
    let _ = registry;
}

/// `app.main()`: Faust's command line for this app (see [`cli`]).
pub trait AppMain {
    /// Register the built-in drivers, parse the command line (`worker -l info`,
    /// `agents`, `tables` …) and run it; returns the process exit code. With
    /// a registry of your own, call [`cli::run`] instead.
    fn main(&self) -> std::process::ExitCode;
}

impl AppMain for App {
    fn main(&self) -> std::process::ExitCode {
        install_default_drivers();
        cli::run(self, std::env::args_os())
    }
}

/// `main` for an app whose definition may have failed: runs `app.main()`, or
/// prints the error on stderr and exits with the usage code (2).
///
/// ```no_run
/// use std::process::ExitCode;
/// fn main() -> ExitCode {
///     faustus::main_with(faustus::app("my-app").build())
/// }
/// ```
pub fn main_with(app: Result<App>) -> std::process::ExitCode {
    match app {
        Ok(app) => app.main(),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(cli::EXIT_USAGE)
        }
    }
}

/// Whether the app's broker is an in-process `memory://` one (the examples
/// feed themselves sample data only then: nothing else can).
pub fn on_memory_broker(app: &App) -> bool {
    app.settings().broker.starts_with("memory://")
}

/// Start building an app, with this build's drivers registered:
/// `faustus::app("word-counts").broker("memory://").build()?`.
pub fn app(id: impl Into<String>) -> AppBuilder {
    install_default_drivers();
    App::builder(id)
}
