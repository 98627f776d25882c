//! Faust's "Streams" guide, sections *Acknowledgment*, *`items()`*,
//! *`events()`* and *`enumerate()`*, on one `payments` topic read by three
//! agents:
//!
//! - `audit` iterates `stream.events()`, reads the raw message (topic,
//!   partition, offset, key and value bytes) next to the decoded key and
//!   value, and acknowledges by hand with `event.ack()` before a slow
//!   follow-up (Faust: `await event.ack()`).
//! - `bookkeeper` acknowledges when the event goes out of scope — Faust's
//!   `async with event:` block is a Rust block owning the event.
//! - `ledger` numbers `(key, value)` pairs with `stream.items().enumerate()`
//!   (`async for i, (key, value) in ...`); the count starts at zero. Faust's
//!   `enumerate(start)` on the stream itself is `stream.enumerate(start)`.
//!
//! Once acknowledged, an event counts as done: the offset can be committed
//! even while the agent is still busy with the follow-up.
//!
//! ```text
//! cargo run --example events_and_acks -- worker -l info
//! ```
//!
//! On `memory://` (the default) a timer feeds sample payments (see
//! [`feed_samples`]).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// How long the follow-up after an acknowledgement takes.
pub const FOLLOW_UP: Duration = Duration::from_secs(5);

/// A payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// Paying account.
    pub account: String,
    /// Amount in cents.
    pub cents: u64,
}

/// What the `audit` agent saw of one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Audited {
    /// `event.message.topic`.
    pub topic: String,
    /// `event.message.partition`.
    pub partition: u32,
    /// `event.message.offset`.
    pub offset: i64,
    /// `event.message.key`: the key as bytes.
    pub key_bytes: Option<Vec<u8>>,
    /// `event.message.value`: the value as bytes.
    pub value_bytes: Option<Vec<u8>>,
    /// `event.key`: the decoded key.
    pub key: Option<String>,
    /// `event.value`: the decoded value.
    pub value: Payment,
}

/// What the agents did.
#[derive(Debug, Default)]
pub struct Report {
    /// Events the `audit` agent acknowledged, in order.
    pub audited: Mutex<Vec<Audited>>,
    /// Follow-ups finished by `audit` (each after its event was acked).
    pub audit_follow_ups: AtomicU64,
    /// Payments the `bookkeeper` booked.
    pub booked: Mutex<Vec<Payment>>,
    /// Follow-ups finished by `bookkeeper`.
    pub bookkeeper_follow_ups: AtomicU64,
    /// Ledger lines: number, key, payment.
    pub ledger: Mutex<Vec<(usize, Option<String>, Payment)>>,
}

/// The example app and what it defines.
#[derive(Debug)]
pub struct EventsAndAcks {
    /// The app (`app.main()` runs it).
    pub app: App,
    /// The `payments` topic.
    pub payments: Topic<String, Payment>,
    /// What was processed.
    pub report: Arc<Report>,
}

/// Stands in for slow work that need not be redone if the worker crashes
/// (notifying someone, archiving), done after the event is acknowledged.
async fn follow_up(done: &AtomicU64) {
    tokio::time::sleep(FOLLOW_UP).await;
    done.fetch_add(1, Ordering::SeqCst);
}

/// Define the `payments` topic and the three agents on `app`.
pub fn build(app: App) -> faustus::Result<EventsAndAcks> {
    let payments = app.topic::<String, Payment>("payments").build()?;
    let report = Arc::new(Report::default());

    app.agent::<String, Payment>("audit")
        .on(&payments)
        .help("Record each payment's message coordinates; ack, then follow up.")
        .build({
            let report = report.clone();
            move |stream| {
                let report = report.clone();
                async move {
                    let mut events = stream.events();
                    while let Some(event) = events.next().await {
                        // Channel events have no message; a topic's always do.
                        if let Some(message) = event.message() {
                            let audited = Audited {
                                topic: message.topic.to_string(),
                                partition: message.partition,
                                offset: message.offset,
                                key_bytes: message.key.as_ref().map(|b| b.to_vec()),
                                value_bytes: message.value.as_ref().map(|b| b.to_vec()),
                                key: event.key.clone(),
                                value: event.value.clone(),
                            };
                            println!(
                                "audit {}[{}]@{}: key bytes {:?}, value bytes {:?}",
                                audited.topic,
                                audited.partition,
                                audited.offset,
                                message.key.as_deref().map(String::from_utf8_lossy),
                                message.value.as_deref().map(String::from_utf8_lossy),
                            );
                            report.audited.lock().push(audited);
                        }
                        event.ack();
                        follow_up(&report.audit_follow_ups).await;
                    }
                    Ok(())
                }
            }
        })?;

    app.agent::<String, Payment>("bookkeeper")
        .on(&payments)
        .help("Book each payment; the event is acked when its block ends.")
        .build({
            let report = report.clone();
            move |stream| {
                let report = report.clone();
                async move {
                    let mut events = stream.events();
                    while let Some(event) = events.next().await {
                        {
                            // Faust: `async with event:` — acked when the block returns.
                            let event = event;
                            println!("booked {:?}", event.value);
                            report.booked.lock().push(event.value.clone());
                        }
                        follow_up(&report.bookkeeper_follow_ups).await;
                    }
                    Ok(())
                }
            }
        })?;

    app.agent::<String, Payment>("ledger")
        .on(&payments)
        .help("Number every (key, payment) pair, counting from 0.")
        .build({
            let report = report.clone();
            move |stream| {
                let report = report.clone();
                async move {
                    let mut lines = stream.items().enumerate();
                    while let Some((i, (key, payment))) = lines.next().await {
                        println!("ledger #{i}: {key:?} {payment:?}");
                        report.ledger.lock().push((i, key, payment));
                    }
                    Ok(())
                }
            }
        })?;

    Ok(EventsAndAcks {
        app,
        payments,
        report,
    })
}

// ---------------------------------------------------------------------------
// Sample data: on `memory://` nothing else feeds the topic.

/// Every two seconds, send a payment.
pub fn feed_samples(example: &EventsAndAcks) {
    let payments = example.payments.clone();
    let next = Arc::new(AtomicU64::new(0));
    example
        .app
        .timer("feed_samples", Duration::from_secs(2), move |_app| {
            let payments = payments.clone();
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let account = format!("account-{}", i % 4);
                let payment = Payment {
                    account: account.clone(),
                    cents: 100 * (i + 1),
                };
                payments.send(account, payment).await?;
                Ok(())
            }
        });
}

impl AsRef<App> for EventsAndAcks {
    fn as_ref(&self) -> &App {
        &self.app
    }
}

fn main() -> ExitCode {
    faustus::main_defined(
        faustus::app("events-example")
            .broker("memory://")
            .store("memory://"),
        build,
        feed_samples,
    )
}
