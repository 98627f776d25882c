//! The lifecycle primitives every layer may use: the worker's shutdown
//! signal, the process's stop signals (Ctrl-C, SIGTERM), and the text of a
//! caught panic.

use std::sync::Arc;

use tokio::sync::watch;

/// Fires once when the worker stops. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// A signal and the function that fires it.
    pub fn new() -> (ShutdownSignal, impl Fn() + Send + Sync + Clone + 'static) {
        let (tx, rx) = watch::channel(false);
        let tx = Arc::new(tx);
        (ShutdownSignal { rx }, move || {
            tx.send_replace(true);
        })
    }

    /// Whether it fired.
    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Wait until it fires.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM: what [`App::run`] and
/// the `worker` command stop on.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The message of a caught panic (its `&str` or `String` payload).
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}
