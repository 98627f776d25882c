//! The agent test context: Faust's `agent.test_context()` for Faustus.
//!
//! Run an app's agents in-process on `memory://` with no broker, feed them
//! values, wait until each is processed, read tables and topics, and get an
//! agent's error back as a test failure. Timers and timeouts follow tokio's
//! clock, so tests under `#[tokio::test(start_paused = true)]` run on virtual
//! time.
//!
//! ```
//! use faustus_core::{App, Registry};
//! use faustus_testkit::TestContext;
//! use futures::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> faustus_core::Result<()> {
//! let app = App::builder("doc-test").registry(Registry::new()).build()?;
//! let totals = app.table::<String, u64>("totals").with_default().build()?;
//! let add = app.agent::<String, u64>("add").build({
//!     let totals = totals.clone();
//!     move |stream| {
//!         let totals = totals.clone();
//!         async move {
//!             let mut items = stream.items();
//!             while let Some((key, n)) = items.next().await {
//!                 totals.update(&key.unwrap_or_default(), |t| *t += n).await?;
//!             }
//!             Ok(())
//!         }
//!     }
//! })?;
//!
//! let ctx = TestContext::start(&app).await?;
//! ctx.send(&add, "alice".to_string(), 2).await?;
//! ctx.send(&add, "alice".to_string(), 3).await?;
//! assert_eq!(totals.get(&"alice".to_string()).await?, Some(5));
//! ctx.stop().await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use faustus_core::transport::{PartitionReaderExt, ReaderConfig, TopicPartition};
use faustus_core::{Agent, App, Error, Result, Topic, WorkerHandle};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How long [`TestContext::settle`] and sends wait before reporting a hang.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A running app under test; see the [module docs](self).
#[derive(Debug)]
pub struct TestContext {
    app: App,
    worker: Option<WorkerHandle>,
    failures_seen: std::sync::atomic::AtomicUsize,
}

impl TestContext {
    /// Start a worker of `app` on its `memory://` broker and wait until it is ready.
    ///
    /// The memory transport and store are registered into the app's registry
    /// when missing.
    pub async fn start(app: &App) -> Result<Self> {
        let settings = app.settings();
        if !settings.broker.starts_with("memory://") {
            return Err(Error::config(
                "broker",
                format!(
                    "the test context runs apps on memory://, this app uses {:?}",
                    settings.broker
                ),
            ));
        }
        if !app.registry().has_transport("memory") {
            faustus_transport_memory::register(app.registry());
        }
        if !app.registry().has_store("memory") {
            faustus_store_memory::register(app.registry());
        }
        let worker = app.start().await?;
        worker.ready().await?;
        Ok(TestContext {
            app: app.clone(),
            worker: Some(worker),
            failures_seen: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The app.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Send a keyed value to an agent and wait until it is processed; an error
    /// or panic of the agent on it comes back as `Err`.
    pub async fn send<K, V>(&self, agent: &Agent<K, V>, key: K, value: V) -> Result<()>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        match agent.send(key, value).await? {
            Some(delivery) => {
                let md = delivery.await?;
                self.wait(&TopicPartition::new(md.topic, md.partition), md.offset)
                    .await?
            }
            None => self.settle().await?,
        }
        self.check_failures()
    }

    /// Send a value without a key to an agent and wait until it is processed.
    pub async fn send_value<K, V>(&self, agent: &Agent<K, V>, value: V) -> Result<()>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        match agent.send_value(value).await? {
            Some(delivery) => {
                let md = delivery.await?;
                self.wait(&TopicPartition::new(md.topic, md.partition), md.offset)
                    .await?
            }
            None => self.settle().await?,
        }
        self.check_failures()
    }

    /// Send to a topic and wait until every stream reading it processed the value.
    pub async fn put<K, V>(&self, topic: &Topic<K, V>, key: K, value: V) -> Result<()>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        let md = topic.send(key, value).await?.await?;
        self.wait(&TopicPartition::new(md.topic, md.partition), md.offset)
            .await?;
        self.check_failures()
    }

    async fn wait(&self, tp: &TopicPartition, offset: i64) -> Result<()> {
        tokio::time::timeout(SETTLE_TIMEOUT, self.app.processed(tp, offset))
            .await
            .map_err(|_| Error::Timeout {
                what: format!("{tp}@{offset} to be processed"),
                after: SETTLE_TIMEOUT,
            })
    }

    /// Wait until every message on every partition the worker holds is
    /// processed, including what processing produced (agent → agent chains).
    pub async fn settle(&self) -> Result<()> {
        let transport = self.app.transport().await?;
        let mut consumer = transport
            .reader(&ReaderConfig::new("faustus-testkit"))
            .await?;
        let mut last: Vec<(TopicPartition, i64)> = Vec::new();
        loop {
            let mut ends = Vec::new();
            for tp in self.app.assignment() {
                let end = consumer.high_watermark(&tp).await?;
                if end > 0 {
                    self.wait(&tp, end - 1).await?;
                }
                ends.push((tp, end));
            }
            if ends == last {
                break;
            }
            last = ends;
        }
        consumer.close().await.ok();
        self.check_failures()
    }

    /// Every record of `topic`, decoded, in partition then offset order.
    pub async fn read<K, V>(&self, topic: &Topic<K, V>) -> Result<Vec<(Option<K>, V)>>
    where
        K: Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        let transport = self.app.transport().await?;
        let mut consumer = transport
            .reader(&ReaderConfig::new("faustus-testkit-read"))
            .await?;
        let mut out = Vec::new();
        let key_codec = self.app.registry().codec(topic.key_serializer())?;
        let value_codec = self.app.registry().codec(topic.value_serializer())?;
        for p in 0..topic.partitions() {
            let tp = TopicPartition::new(topic.name(), p);
            let end = consumer.high_watermark(&tp).await?;
            if end == 0 {
                continue;
            }
            consumer.assign_at(&[(tp, 0)]).await?;
            let mut next = 0;
            while next < end {
                let msgs = consumer.poll(Duration::from_millis(100)).await?;
                for m in msgs {
                    next = m.offset + 1;
                    let key = match &m.key {
                        Some(k) => Some(key_codec.decode::<K>(k.clone()).map_err(|message| {
                            Error::Decode {
                                field: faustus_core::error::Field::Key,
                                at: m.coordinates(),
                                message,
                            }
                        })?),
                        None => None,
                    };
                    let value = value_codec
                        .decode::<V>(m.value.clone().unwrap_or_default())
                        .map_err(|message| Error::Decode {
                            field: faustus_core::error::Field::Value,
                            at: m.coordinates(),
                            message,
                        })?;
                    out.push((key, value));
                }
            }
        }
        consumer.close().await.ok();
        Ok(out)
    }

    /// Agent failures since the context started.
    pub fn failures(&self) -> Vec<faustus_core::monitor::AgentFailure> {
        self.app.monitor().failures()
    }

    fn check_failures(&self) -> Result<()> {
        let failures = self.app.monitor().failures();
        let seen = self
            .failures_seen
            .swap(failures.len(), std::sync::atomic::Ordering::AcqRel);
        match failures.get(seen) {
            Some(f) => Err(Error::Task {
                what: format!("agent {} on {}", f.agent, f.event),
                message: f.message.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Stop the worker (finish, flush, commit); `Err` if it failed or an agent
    /// failed without the test having seen it.
    pub async fn stop(mut self) -> Result<()> {
        let result = match self.worker.take() {
            Some(w) => w.stop().await,
            None => Ok(()),
        };
        result?;
        self.check_failures()
    }
}
