//! Faust's "Tasks" guide, sections *Basics* and *Timers*: an app consuming
//! `LogRecord`s from the `logs` topic in a task (`@app.task async def
//! process_logs(app): async for log in app.stream(log_topic)`), counting them
//! and printing the errors, and a timer printing the count every 30 seconds
//! (`@app.timer(interval=30.0) def dump_stats(app)`).
//!
//! The stream is created when the app is defined and handed to the task, so
//! the worker subscribes to `logs` before it starts: no message is missed
//! and no rebalance is needed when the task starts.
//!
//! ```text
//! cargo run --example logs_tasks -- worker -l info
//! ```
//!
//! On `memory://` (the default) a timer feeds sample log records (see
//! [`feed_samples`]).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// How often `dump_stats` prints.
pub const DUMP_INTERVAL: Duration = Duration::from_secs(30);

/// One log line (Faust: `class LogRecord(faust.Record)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// `DEBUG`, `INFO`, `WARNING`, `ERROR` …
    pub severity: String,
    /// The message.
    pub message: String,
}

/// The guide's `Stats`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Log records processed.
    pub logs_received: AtomicU64,
    /// `ERROR` records printed.
    pub errors: AtomicU64,
    /// What each `dump_stats` run printed (`logs_received` at the time).
    pub dumps: Mutex<Vec<u64>>,
}

/// The example app and what it defines.
#[derive(Debug)]
pub struct Logs {
    /// The app (`app.main()` runs it).
    pub app: App,
    /// `app.topic('logs', value_type=LogRecord)`.
    pub log_topic: Topic<String, LogRecord>,
    /// The counters.
    pub stats: Arc<Stats>,
}

/// Define the `logs` topic, the `process_logs` task and the `dump_stats` timer.
pub fn build(app: App) -> faustus::Result<Logs> {
    let log_topic = app.topic::<String, LogRecord>("logs").build()?;
    let stats = Arc::new(Stats::default());

    // `app.stream(log_topic)`; the task takes it when it starts (tasks run once).
    let stream = Mutex::new(Some(log_topic.stream()));
    app.task("process_logs", {
        let stats = stats.clone();
        move |_app| {
            let stream = stream.lock().take();
            let stats = stats.clone();
            async move {
                let Some(mut logs) = stream else {
                    return Err(faustus::Error::State(
                        "process_logs already consumed its stream".into(),
                    ));
                };
                while let Some(log) = logs.next().await {
                    stats.logs_received.fetch_add(1, Ordering::SeqCst);
                    if log.severity == "ERROR" {
                        stats.errors.fetch_add(1, Ordering::SeqCst);
                        println!("ERROR: {}", log.message);
                    }
                }
                Ok(())
            }
        }
    });

    app.timer("dump_stats", DUMP_INTERVAL, {
        let stats = stats.clone();
        move |_app| {
            let received = stats.logs_received.load(Ordering::SeqCst);
            println!("Logs processed: {received}");
            stats.dumps.lock().push(received);
            async { Ok(()) }
        }
    });

    Ok(Logs {
        app,
        log_topic,
        stats,
    })
}

// ---------------------------------------------------------------------------
// Sample data: on `memory://` nothing else feeds the topic.

/// Every second, send a log record; one in five is an `ERROR`.
pub fn feed_samples(example: &Logs) {
    const SEVERITIES: &[&str] = &["INFO", "ERROR", "DEBUG", "WARNING", "INFO"];
    let log_topic = example.log_topic.clone();
    let next = Arc::new(AtomicU64::new(0));
    example
        .app
        .timer("feed_samples", Duration::from_secs(1), move |_app| {
            let log_topic = log_topic.clone();
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let severity = SEVERITIES[(i as usize) % SEVERITIES.len()].to_string();
                let record = LogRecord {
                    message: format!("sample {severity} line {i}"),
                    severity,
                };
                log_topic.send("sample-host".into(), record).await?;
                Ok(())
            }
        });
}

impl AsRef<App> for Logs {
    fn as_ref(&self) -> &App {
        &self.app
    }
}

fn main() -> ExitCode {
    faustus::main_defined(
        faustus::app("logs").broker("memory://").store("memory://"),
        build,
        feed_samples,
    )
}
