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

/// `main` for an app defined by a function, with sample data fed only when
/// nothing else can feed it.
///
/// Builds the app from `builder`, runs `define` on it (which defines topics,
/// agents, tables … and returns whatever handles it wants to keep: any type
/// that can lend the [`App`] through `AsRef<App>`), then, only when the
/// broker is the in-process `memory://` one ([`on_memory_broker`]), runs
/// `feed_samples` on those handles (e.g. a timer sending sample records), and
/// finally runs `app.main()`. If building or defining fails, it prints the
/// error on stderr and exits with the usage code (2), as [`main_with`] does.
///
/// Keeping `define` and `feed_samples` as plain functions lets tests call
/// them on an app of their own; pass `|_| {}` when there is nothing to feed.
///
/// ```no_run
/// use faustus::{App, Result, Topic};
/// use std::process::ExitCode;
///
/// pub struct Greetings {
///     app: App,
///     greetings: Topic<String, String>,
/// }
///
/// impl AsRef<App> for Greetings {
///     fn as_ref(&self) -> &App {
///         &self.app
///     }
/// }
///
/// pub fn build(app: App) -> Result<Greetings> {
///     let greetings = app.topic::<String, String>("greetings").build()?;
///     Ok(Greetings { app, greetings })
/// }
///
/// pub fn feed_samples(greetings: &Greetings) {
///     let topic = greetings.greetings.clone();
///     greetings
///         .app
///         .timer("feed", std::time::Duration::from_secs(1), move |_app| {
///             let topic = topic.clone();
///             async move {
///                 topic.send("hello".to_string(), "world".to_string()).await?;
///                 Ok(())
///             }
///         });
/// }
///
/// fn main() -> ExitCode {
///     faustus::main_defined(
///         faustus::app("greetings").broker("memory://"),
///         build,
///         feed_samples,
///     )
/// }
/// ```
pub fn main_defined<D: AsRef<App>>(
    builder: AppBuilder,
    define: impl FnOnce(App) -> Result<D>,
    feed_samples: impl FnOnce(&D),
) -> std::process::ExitCode {
    main_with(builder.build().and_then(define).map(|defined| {
        if on_memory_broker(defined.as_ref()) {
            feed_samples(&defined);
        }
        defined.as_ref().clone()
    }))
}

/// Whether the app's broker is an in-process `memory://` one (the examples
/// feed themselves sample data only then: nothing else can).
pub fn on_memory_broker(app: &App) -> bool {
    app.settings().broker.starts_with("memory://")
}

/// Start building an app, with this build's drivers registered and (feature
/// `web`) the built-in site (`faustus_web::site`) as the app's site:
/// `faustus::app("word-counts").broker("memory://").build()?`.
pub fn app(id: impl Into<String>) -> AppBuilder {
    install_default_drivers();
    let builder = App::builder(id);
    // The built-in pages (`/`, `/stats`, `/metrics`, `/health`, `/ready`,
    // the dashboard …) after the app's own, on whichever web driver.
    #[cfg(feature = "web")]
    let builder = builder.site(faustus_web::site);
    builder
}
