//! Faust's "Application" guide, section *`app.channel()` — Create a local
//! channel*: an in-memory channel of `MyModel` values, an agent iterating it,
//! and a timer that sends `MyModel(303)` to it every second.
//!
//! A channel is like a topic without a broker: values are passed as they are
//! (no serialization) and are gone when the process stops.
//!
//! ```text
//! cargo run --example channel -- worker -l info
//! ```
//!
//! The timer is the guide's own data source, so this example needs no sample
//! feeder; it runs the same on any broker.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The guide's `MyModel` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MyModel {
    /// A number.
    pub x: i64,
}

/// The example app and what it defines.
#[derive(Debug)]
pub struct ChannelExample {
    /// The app (`app.main()` runs it).
    pub app: App,
    /// `app.channel(value_type=MyModel)`.
    pub channel: Channel<MyModel>,
    /// Every value the `process` agent printed, in order.
    pub received: Arc<Mutex<Vec<MyModel>>>,
}

/// Define the channel, its agent and the `populate` timer on `app`.
pub fn build(app: App) -> faustus::Result<ChannelExample> {
    let channel = app.channel::<MyModel>();
    let received = Arc::new(Mutex::new(Vec::new()));

    // @app.agent(channel) async def process(stream): print(f'Received: {event!r}')
    app.agent::<(), MyModel>("process")
        .on_channel(&channel)
        .help("Print what arrives on the channel.")
        .build({
            let received = received.clone();
            move |mut stream| {
                let received = received.clone();
                async move {
                    while let Some(event) = stream.next().await {
                        println!("Received: {event:?}");
                        received.lock().push(event);
                    }
                    Ok(())
                }
            }
        })?;

    // @app.timer(1.0) async def populate(): await channel.send(MyModel(303))
    app.timer("populate", Duration::from_secs(1), {
        let channel = channel.clone();
        move |_app| {
            let channel = channel.clone();
            async move { channel.send(MyModel { x: 303 }).await }
        }
    });

    Ok(ChannelExample {
        app,
        channel,
        received,
    })
}

impl AsRef<App> for ChannelExample {
    fn as_ref(&self) -> &App {
        &self.app
    }
}

fn main() -> ExitCode {
    faustus::main_defined(
        faustus::app("channel")
            .broker("memory://")
            .store("memory://"),
        build,
        |_| {},
    )
}
