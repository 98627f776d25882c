//! Helpers for tests that run a whole worker on Kafka.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use faustus_core::{App, WorkerHandle};

/// `app`'s not-ready reasons once `done` holds for them (within `limit`).
pub(crate) async fn wait_for_reasons(
    app: &App,
    limit: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let reasons = app.not_ready_reasons();
        if done(&reasons) {
            return reasons;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not-ready reasons stayed {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Start `app`'s worker and wait (up to 2 minutes) until it joined the group.
pub(crate) async fn start_ready(app: &App) -> WorkerHandle {
    let worker = app.start().await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), worker.ready())
        .await
        .expect("the worker joins the group")
        .unwrap();
    worker
}
