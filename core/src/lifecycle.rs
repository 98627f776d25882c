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

/// What keeps a running worker from being ready, by component (`broker`,
/// `store`, `conductor` …): `/ready` answers 503 naming each one with its
/// reason, and the worker logs each change once (not at every retry).
#[derive(Debug, Default)]
pub struct Health {
    problems: parking_lot::Mutex<std::collections::BTreeMap<String, String>>,
}

impl Health {
    /// Report `component` unhealthy for `reason`. Returns true when it was
    /// healthy until now (the caller logs the change then).
    pub fn set_problem(&self, component: &str, reason: impl Into<String>) -> bool {
        self.problems
            .lock()
            .insert(component.to_string(), reason.into())
            .is_none()
    }

    /// Report `component` healthy again. Returns true when it had a problem
    /// (the caller logs the recovery then).
    pub fn clear(&self, component: &str) -> bool {
        self.problems.lock().remove(component).is_some()
    }

    /// The current problems, `(component, reason)`, by component name.
    pub fn problems(&self) -> Vec<(String, String)> {
        self.problems
            .lock()
            .iter()
            .map(|(c, r)| (c.clone(), r.clone()))
            .collect()
    }

    /// Whether no component has a problem.
    pub fn is_healthy(&self) -> bool {
        self.problems.lock().is_empty()
    }
}

#[cfg(test)]
mod health_tests {
    use super::Health;

    #[test]
    fn reports_each_change_once() {
        let h = Health::default();
        assert!(h.is_healthy());
        assert!(h.set_problem("store", "disk full"));
        assert!(
            !h.set_problem("store", "disk still full"),
            "not a change of state"
        );
        assert!(h.set_problem("broker", "all brokers down"));
        assert_eq!(
            h.problems(),
            vec![
                ("broker".to_string(), "all brokers down".to_string()),
                ("store".to_string(), "disk still full".to_string())
            ]
        );
        assert!(h.clear("store"));
        assert!(!h.clear("store"));
        assert!(h.clear("broker"));
        assert!(h.is_healthy());
    }
}
