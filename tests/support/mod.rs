//! Shared helpers for the behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use faustus::{App, AppBuilder};
use faustus_transport_memory::MemoryBroker;

/// A unique name for a named memory broker.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An app on its own named memory broker (so the test can inspect it), with
/// the environment ignored and a fast commit interval.
pub fn app_on(broker: &str, id: &str) -> AppBuilder {
    faustus::app(id)
        .env(Default::default())
        .broker(format!("memory://{broker}"))
        .store("memory://")
        .broker_commit_interval(Duration::from_millis(100))
}

/// The named broker.
pub fn broker(name: &str) -> MemoryBroker {
    MemoryBroker::named(name)
}

/// Wait (on tokio's clock, virtual under paused time) until `cond` holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Start a worker and wait until it is ready.
pub async fn start(app: &App) -> faustus::WorkerHandle {
    let w = app.start().await.expect("worker starts");
    w.ready().await.expect("worker ready");
    w
}
