//! Faust's "Streams — Infinite Data Structures" guide, section *Basics*:
//! a `Withdrawal` record on the `withdrawals` topic, processed by an agent
//! (`@app.agent(withdrawals_topic)`) and by a task iterating the topic's
//! stream (`@app.task async def mytask(): async for w in
//! withdrawals_topic.stream(): print(w.amount)`), plus a topic without a value
//! type whose values are the raw message bytes (`app.topic('messages')`):
//! in Rust a topic with the `raw` value serializer, decoded into `Vec<u8>`
//! (the raw codec also decodes into `bytes::Bytes` and `String`).
//!
//! As in Faust, a stream created at run time (here by the task) sees the
//! messages that arrive after the worker picked up its subscription.
//!
//! ```text
//! cargo run --example stream_basics -- worker -l info
//! ```
//!
//! On `memory://` (the default) a timer feeds sample withdrawals and messages
//! (see [`feed_samples`]); point it at Kafka with
//! `FAUSTUS_BROKER=kafka://localhost:9092`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// A withdrawal from an account (Faust: `class Withdrawal(faust.Record)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawal {
    /// The account withdrawn from.
    pub account: String,
    /// How much was withdrawn.
    pub amount: f64,
}

/// What the agents and the task have seen so far (they print it as they go).
#[derive(Debug, Default)]
pub struct Seen {
    /// Total withdrawn per account (the `process_withdrawals` agent).
    pub totals: Mutex<BTreeMap<String, f64>>,
    /// Every amount the `mytask` task printed, in order.
    pub task_amounts: Mutex<Vec<f64>>,
    /// Every raw value the `print_messages` agent printed, in order.
    pub raw_messages: Mutex<Vec<Vec<u8>>>,
}

/// The example app and what it defines.
#[derive(Debug)]
pub struct StreamBasics {
    /// The app (`app.main()` runs it).
    pub app: App,
    /// `app.topic('withdrawals', value_type=Withdrawal)`.
    pub withdrawals: Topic<String, Withdrawal>,
    /// `app.topic('messages')`: no value type, so values are raw bytes.
    pub messages: Topic<(), Vec<u8>>,
    /// What was processed.
    pub seen: Arc<Seen>,
}

/// Define the guide's topics, agents and task on `app`.
pub fn build(app: App) -> faustus::Result<StreamBasics> {
    let withdrawals = app.topic::<String, Withdrawal>("withdrawals").build()?;
    // The raw codec hands values over as they are on the wire.
    let messages = app
        .topic::<(), Vec<u8>>("messages")
        .value_serializer("raw")
        .build()?;
    let seen = Arc::new(Seen::default());

    // The usual way: an agent iterating its stream.
    app.agent::<String, Withdrawal>("process_withdrawals")
        .on(&withdrawals)
        .help("Keep a running total of withdrawals per account.")
        .build({
            let seen = seen.clone();
            move |mut withdrawals| {
                let seen = seen.clone();
                async move {
                    while let Some(w) = withdrawals.next().await {
                        let total = {
                            let mut totals = seen.totals.lock();
                            let total = totals.entry(w.account.clone()).or_insert(0.0);
                            *total += w.amount;
                            *total
                        };
                        println!("{} withdrew {} (total {total})", w.account, w.amount);
                    }
                    Ok(())
                }
            }
        })?;

    // `@app.task async def mytask(): async for w in withdrawals_topic.stream()`:
    // the task starts once the worker is running and creates its own stream,
    // which sees the messages that arrive from then on.
    app.task("mytask", {
        let withdrawals = withdrawals.clone();
        let seen = seen.clone();
        move |_app| {
            let withdrawals = withdrawals.clone();
            let seen = seen.clone();
            async move {
                let mut stream = withdrawals.stream();
                while let Some(w) = stream.next().await {
                    println!("{}", w.amount);
                    seen.task_amounts.lock().push(w.amount);
                }
                Ok(())
            }
        }
    });

    // `async for value in app.topic('messages').stream(): print(repr(value))`
    app.agent::<(), Vec<u8>>("print_messages")
        .on(&messages)
        .help("Print raw message values.")
        .build({
            let seen = seen.clone();
            move |mut values| {
                let seen = seen.clone();
                async move {
                    while let Some(value) = values.next().await {
                        println!("{:?}", String::from_utf8_lossy(&value));
                        seen.raw_messages.lock().push(value);
                    }
                    Ok(())
                }
            }
        })?;

    Ok(StreamBasics {
        app,
        withdrawals,
        messages,
        seen,
    })
}

// ---------------------------------------------------------------------------
// Sample data: on `memory://` nothing else feeds the topics.

/// Every second, send one withdrawal and one raw message.
pub fn feed_samples(example: &StreamBasics) {
    const ACCOUNTS: &[&str] = &["alice", "bob", "carol"];
    let withdrawals = example.withdrawals.clone();
    let messages = example.messages.clone();
    let next = Arc::new(AtomicU64::new(0));
    example
        .app
        .timer("feed_samples", Duration::from_secs(1), move |_app| {
            let (withdrawals, messages) = (withdrawals.clone(), messages.clone());
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let account = ACCOUNTS[(i as usize) % ACCOUNTS.len()].to_string();
                let amount = (i % 7 + 1) as f64 * 10.0;
                withdrawals
                    .send(account.clone(), Withdrawal { account, amount })
                    .await?;
                messages
                    .send_value(format!("sample message {i}").into_bytes())
                    .await?;
                Ok(())
            }
        });
}

impl AsRef<App> for StreamBasics {
    fn as_ref(&self) -> &App {
        &self.app
    }
}

fn main() -> ExitCode {
    faustus::main_defined(
        faustus::app("example-app")
            .broker("memory://")
            .store("memory://"),
        build,
        feed_samples,
    )
}
