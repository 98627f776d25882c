//! Faust's "Streams" guide, section *Message Lifecycle → Kafka Topics*: two
//! agents, `processA` and `processB`, subscribed to the same `orders` topic.
//! The conductor forwards every message to both, and an offset is committed
//! only once both have acknowledged it.
//!
//! ```text
//! cargo run --example two_agents -- worker -l info
//! ```
//!
//! On `memory://` (the default) a timer feeds sample orders (see
//! [`feed_samples`]).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use parking_lot::Mutex;

/// The example app and what it defines.
#[derive(Debug)]
pub struct TwoAgents {
    /// The app (`app.main()` runs it).
    pub app: App,
    /// `app.topic('orders')`.
    pub orders: Topic<String, String>,
    /// Every order `process_a` printed, in order.
    pub seen_by_a: Arc<Mutex<Vec<String>>>,
    /// Every order `process_b` printed, in order.
    pub seen_by_b: Arc<Mutex<Vec<String>>>,
}

/// An agent on `orders` that prints every value with `label` and records it.
fn printer(
    app: &App,
    name: &str,
    label: &'static str,
    orders: &Topic<String, String>,
) -> faustus::Result<Arc<Mutex<Vec<String>>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    app.agent::<String, String>(name)
        .on(orders)
        .help(format!("Print every order as {label}: <order>."))
        .build({
            let seen = seen.clone();
            move |mut stream| {
                let seen = seen.clone();
                async move {
                    while let Some(value) = stream.next().await {
                        println!("{label}: {value}");
                        seen.lock().push(value);
                    }
                    Ok(())
                }
            }
        })?;
    Ok(seen)
}

/// Define the `orders` topic and the two agents on `app`.
pub fn build(app: App) -> faustus::Result<TwoAgents> {
    let orders = app.topic::<String, String>("orders").build()?;
    // @app.agent(topic) async def processA(stream): print(f'A: {value}')
    let seen_by_a = printer(&app, "process_a", "A", &orders)?;
    // @app.agent(topic) async def processB(stream): print(f'B: {value}')
    let seen_by_b = printer(&app, "process_b", "B", &orders)?;
    Ok(TwoAgents {
        app,
        orders,
        seen_by_a,
        seen_by_b,
    })
}

// ---------------------------------------------------------------------------
// Sample data: on `memory://` nothing else feeds the topic.

/// Every second, send an order.
pub fn feed_samples(example: &TwoAgents) {
    let orders = example.orders.clone();
    let next = Arc::new(AtomicU64::new(0));
    example
        .app
        .timer("feed_samples", Duration::from_secs(1), move |_app| {
            let orders = orders.clone();
            let i = next.fetch_add(1, Ordering::Relaxed);
            async move {
                orders
                    .send(format!("customer-{}", i % 3), format!("order #{i}"))
                    .await?;
                Ok(())
            }
        });
}

impl AsRef<App> for TwoAgents {
    fn as_ref(&self) -> &App {
        &self.app
    }
}

fn main() -> ExitCode {
    faustus::main_defined(
        faustus::app("two-agents-example")
            .broker("memory://")
            .store("memory://"),
        build,
        feed_samples,
    )
}
