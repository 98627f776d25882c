//! Faust's "Streams" guide, sections *Combining streams* and *Operations*:
//! `group_by()`, `items()` after other operations, `take()`, `enumerate()`,
//! `through()`, `echo()`, plus `filter` and `noack()`.
//!
//! - `process` repartitions orders by account (`orders.group_by(Order.account_id)`
//!   is `stream.group_by(field!(Order, account_id))`): the orders of one
//!   account then arrive on one partition of
//!   `process-orders-account_id-repartition`, keyed by the account, and the
//!   agent keeps a total per account. With a closure the key needs a name:
//!   `GroupBy::new("account", |o: &Order| Ok(o.account_id.clone()))`.
//! - `forward` reads `source-topic`, drops empty orders (`filter`), and goes
//!   `through('foo')` then `group_by(...)` then `items()` — the guide's
//!   `stream.through('foo').group_by(M.id).items()`.
//! - `batch` takes up to 100 orders at a time, or what came within 10 s
//!   (`stream.take(100, within=10)`).
//! - `copy` echoes every order to `source-copy-1` and `source-copy-2`
//!   (`stream.echo(echo_topic1, echo_topic2)`) and counts them from 1
//!   (`stream.enumerate(1)`).
//! - `both` iterates `s1 & s2`: the orders of `topic1` and `topic2` in one loop.
//!
//! ```text
//! cargo run --example stream_operations -- worker -l info
//! ```
//!
//! On `memory://` (the default) a timer feeds sample orders (see [`feed_samples`]).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::field;
use faustus::prelude::*;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The guide's `Order` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The account that ordered.
    pub account_id: String,
    /// The product.
    pub product_id: String,
    /// How many.
    pub amount: u32,
    /// Unit price.
    pub price: f64,
}

/// What the agents saw (for the guide's prints and the tests).
#[derive(Debug, Default)]
pub struct Seen {
    /// `process`: total amount per account.
    pub totals: Mutex<BTreeMap<String, u32>>,
    /// `process`: the repartition partition each account arrived on.
    pub account_partition: Mutex<BTreeMap<String, Vec<u32>>>,
    /// `forward`: `(key, order)` pairs after through + group_by.
    pub forwarded: Mutex<Vec<(Option<String>, Order)>>,
    /// `batch`: `(batch number, batch size)`.
    pub batches: Mutex<Vec<(u64, usize)>>,
    /// `copy`: `(count, order)`.
    pub copied: Mutex<Vec<(u64, Order)>>,
    /// `both`: orders of topic1 and topic2.
    pub combined: Mutex<Vec<Order>>,
}

/// The example app and what it defines.
#[derive(Debug)]
pub struct StreamOperations {
    /// The app.
    pub app: App,
    /// The guide's `orders_topic`.
    pub orders: Topic<String, Order>,
    /// `source-topic` (read by `forward`).
    pub source: Topic<String, Order>,
    /// `bulk-orders` (read by `batch`).
    pub bulk: Topic<String, Order>,
    /// `sourcetopic` (read by `copy`).
    pub echo_source: Topic<String, Order>,
    /// `topic1` and `topic2` (combined by `both`).
    pub topic1: Topic<String, Order>,
    /// See `topic1`.
    pub topic2: Topic<String, Order>,
    /// What the agents saw.
    pub seen: Arc<Seen>,
}

/// Define the topics and agents on `app`.
pub fn build(app: App) -> faustus::Result<StreamOperations> {
    let seen = Arc::new(Seen::default());
    let orders = app.topic::<String, Order>("orders").build()?;
    let source = app.topic::<String, Order>("source-topic").build()?;
    let bulk = app.topic::<String, Order>("bulk-orders").build()?;
    let echo_source = app.topic::<String, Order>("sourcetopic").build()?;
    let echo_topic1 = app.topic::<String, Order>("source-copy-1").build()?;
    let echo_topic2 = app.topic::<String, Order>("source-copy-2").build()?;
    let topic1 = app.topic::<String, Order>("topic1").build()?;
    let topic2 = app.topic::<String, Order>("topic2").build()?;

    // async for order in orders.group_by(Order.account_id): ...
    app.agent::<String, Order>("process").on(&orders).build({
        let seen = seen.clone();
        move |orders| {
            let seen = seen.clone();
            async move {
                let mut by_account = orders.group_by(field!(Order, account_id))?;
                while let Some(order) = by_account.next().await {
                    let p = faustus::event::current_partition().unwrap_or_default();
                    *seen
                        .totals
                        .lock()
                        .entry(order.account_id.clone())
                        .or_default() += order.amount;
                    seen.account_partition
                        .lock()
                        .entry(order.account_id.clone())
                        .or_default()
                        .push(p);
                }
                Ok(())
            }
        }
    })?;

    // async for key, value in stream.through('foo').group_by(M.id).items(): ...
    app.agent::<String, Order>("forward").on(&source).build({
        let seen = seen.clone();
        move |stream| {
            let seen = seen.clone();
            async move {
                let mut items = stream
                    .filter(|o| o.amount > 0)
                    .through("foo")?
                    .group_by(field!(Order, product_id))?
                    .items();
                while let Some((key, order)) = items.next().await {
                    println!("forwarded {key:?}: {order:?}");
                    seen.forwarded.lock().push((key, order));
                }
                Ok(())
            }
        }
    })?;

    // async for values in stream.take(100, within=10): ...
    app.agent::<String, Order>("batch").on(&bulk).build({
        let seen = seen.clone();
        move |stream| {
            let seen = seen.clone();
            async move {
                let mut batches = stream.take(100, Duration::from_secs(10));
                let mut i = 0;
                while let Some(values) = batches.next().await {
                    i += 1;
                    println!("batch {i}: RECEIVED {}", values.len());
                    seen.batches.lock().push((i, values.len()));
                }
                Ok(())
            }
        }
    })?;

    // async for event in stream.echo(echo_topic1, echo_topic2): ...
    app.agent::<String, Order>("copy").on(&echo_source).build({
        let seen = seen.clone();
        move |stream| {
            let echoes = [echo_topic1.clone(), echo_topic2.clone()];
            let seen = seen.clone();
            async move {
                let mut copies = stream.echo(&echoes).enumerate(1);
                while let Some((n, order)) = copies.next().await {
                    println!("copy {n}: {order:?}");
                    seen.copied.lock().push((n, order));
                }
                Ok(())
            }
        }
    })?;

    // async for value in (s1 & s2): ...
    app.agent::<String, Order>("both").on(&topic1).build({
        let (seen, topic2) = (seen.clone(), topic2.clone());
        move |s1| {
            let (seen, s2) = (seen.clone(), topic2.stream());
            async move {
                let mut both = s1 & s2;
                while let Some(order) = both.next().await {
                    seen.combined.lock().push(order);
                }
                Ok(())
            }
        }
    })?;

    Ok(StreamOperations {
        app,
        orders,
        source,
        bulk,
        echo_source,
        topic1,
        topic2,
        seen,
    })
}

// ---------------------------------------------------------------------------
// Sample data: on `memory://` nothing else feeds the topics.

/// Every second, send an order to every source topic.
pub fn feed_samples(example: &StreamOperations) {
    let topics = [
        example.orders.clone(),
        example.source.clone(),
        example.bulk.clone(),
        example.echo_source.clone(),
        example.topic1.clone(),
        example.topic2.clone(),
    ];
    let next = Arc::new(AtomicU64::new(0));
    example
        .app
        .timer("feed_samples", Duration::from_secs(1), move |_app| {
            let topics = topics.clone();
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let order = Order {
                    account_id: format!("account-{}", i % 3),
                    product_id: format!("product-{}", i % 5),
                    amount: (i % 4) as u32,
                    price: 9.99,
                };
                for t in &topics {
                    t.send(format!("order-{i}"), order.clone()).await?;
                }
                Ok(())
            }
        });
}

impl AsRef<App> for StreamOperations {
    fn as_ref(&self) -> &App {
        &self.app
    }
}

fn main() -> ExitCode {
    faustus::main_defined(
        faustus::app("stream-operations-example")
            .broker("memory://")
            .store("memory://"),
        build,
        feed_samples,
    )
}
