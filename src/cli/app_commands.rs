//! The app's own commands: `app.command(clap::Command, run)`, kept with the
//! app in an [`App::extension`] slot private to this module.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::{App, Result};

type RunFn = Arc<dyn Fn(App, clap::ArgMatches) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// A command added with [`AppCommand::command`].
struct CommandDef {
    command: clap::Command,
    run: RunFn,
}

/// The app's commands, in the order they were added.
#[derive(Default)]
struct Commands(Mutex<Vec<CommandDef>>);

/// `app.command(..)`: the app's own commands on its command line, like
/// Faust's `@app.command` (in [`crate::prelude`]).
pub trait AppCommand {
    /// Add a command to the app's command line (`app.main()`): `command`
    /// describes its name, help, arguments and options ([`clap`]), `run` gets
    /// the app and the parsed arguments. It runs in its own process, without
    /// a worker: it can send to topics and agents.
    ///
    /// ```
    /// use faustus::prelude::*;
    /// use faustus::clap::{Arg, Command};
    /// # fn demo(app: App) {
    /// app.command(
    ///     Command::new("hello")
    ///         .about("Say hello")
    ///         .arg(Arg::new("name").default_value("world")),
    ///     |_app, args| async move {
    ///         let name = args.get_one::<String>("name").cloned().unwrap_or_default();
    ///         println!("hello {name}");
    ///         Ok(())
    ///     },
    /// );
    /// # }
    /// ```
    fn command<F, Fut>(&self, command: clap::Command, run: F)
    where
        F: Fn(App, clap::ArgMatches) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static;
}

impl AppCommand for App {
    fn command<F, Fut>(&self, command: clap::Command, run: F)
    where
        F: Fn(App, clap::ArgMatches) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.extension::<Commands>().0.lock().push(CommandDef {
            command,
            run: Arc::new(move |app, m| Box::pin(run(app, m))),
        });
    }
}

/// The clap definitions of the app's commands.
pub(super) fn definitions(app: &App) -> Vec<clap::Command> {
    app.extension::<Commands>()
        .0
        .lock()
        .iter()
        .map(|c| c.command.clone())
        .collect()
}

/// Run the app's command `name` (logging at `warn`, `RUST_LOG` wins).
pub(super) fn run(app: &App, name: &str, m: &clap::ArgMatches) -> ExitCode {
    let run = app
        .extension::<Commands>()
        .0
        .lock()
        .iter()
        .find(|c| c.command.get_name() == name)
        .map(|c| c.run.clone());
    let Some(run) = run else {
        return ExitCode::from(super::EXIT_USAGE);
    };
    super::worker::init_logging("warn");
    let app = app.clone();
    super::finish(super::block_on(async move {
        let ran = run(app.clone(), m.clone()).await;
        // What the command sent is delivered before the process exits
        // (`send(..).await` returns once a record is accepted).
        let flushed = app.flush().await;
        ran.and(flushed)
    }))
}
