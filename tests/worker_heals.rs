//! A worker never lingers broken: a failed conductor is restarted (a new
//! consumer rejoins, tables are recovered, processing resumes), and one that
//! keeps failing stops the whole worker with its error — the handle's signal
//! fires, so `App::run` and the `worker` command return instead of waiting.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use faustus::transport::{
    Consumer, ConsumerConfig, ConsumerEvent, PartitionReader, Producer, ProducerConfig,
    ReaderConfig, TopicSpec, Transport,
};
use faustus::{Error, Result, TopicPartition};
use faustus_transport_memory::MemoryTransport;
use support::*;

/// A memory broker whose group consumers fail their polls with a fatal
/// (non-retryable) error while `failures` is above zero (each failed poll
/// takes one; `usize::MAX` fails forever).
#[derive(Debug, Clone)]
struct Flaky {
    name: String,
    failures: Arc<AtomicUsize>,
    consumers: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct FlakyConsumer {
    inner: Box<dyn Consumer>,
    failures: Arc<AtomicUsize>,
}

#[async_trait]
impl Transport for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        MemoryTransport::named(&self.name).create_topic(spec).await
    }
    async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        MemoryTransport::named(&self.name)
            .partition_count(topic)
            .await
    }
    async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>> {
        MemoryTransport::named(&self.name).producer(config).await
    }
    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>> {
        self.consumers.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FlakyConsumer {
            inner: MemoryTransport::named(&self.name).consumer(config).await?,
            failures: self.failures.clone(),
        }))
    }
    async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>> {
        MemoryTransport::named(&self.name).reader(config).await
    }
}

#[async_trait]
impl Consumer for FlakyConsumer {
    async fn subscribe(&mut self, topics: &[String]) -> Result<()> {
        self.inner.subscribe(topics).await
    }
    async fn poll(&mut self, timeout: Duration) -> Result<ConsumerEvent> {
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                usize::MAX => Some(n),
                n => Some(n - 1),
            })
            .is_ok();
        if fail {
            return Err(Error::State(
                "list offsets of counts-changelog[0]: UnknownPartition".into(),
            ));
        }
        self.inner.poll(timeout).await
    }
    async fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.inner.pause(partitions).await
    }
    async fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.inner.resume(partitions).await
    }
    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        self.inner.commit(offsets).await
    }
    async fn committed(&mut self, partitions: &[TopicPartition]) -> Result<Vec<Option<i64>>> {
        self.inner.committed(partitions).await
    }
    fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.assignment()
    }
    async fn close(&mut self) -> Result<()> {
        self.inner.close().await
    }
}

fn flaky_app(flaky: Flaky, id: &str) -> faustus::App {
    let registry = faustus::Registry::new();
    faustus::register_default_drivers(&registry);
    registry.register_transport(
        "flaky",
        Arc::new(move |_url| Ok(Arc::new(flaky.clone()) as Arc<dyn Transport>)),
    );
    app_with(&registry, id, "flaky://", "memory://")
        .web_enabled(false)
        .topic_partitions(2u32)
        .build()
        .unwrap()
}

fn flaky(prefix: &str) -> Flaky {
    Flaky {
        name: unique(prefix),
        failures: Arc::new(AtomicUsize::new(0)),
        consumers: Arc::new(AtomicUsize::new(0)),
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_conductor_is_restarted_and_processing_resumes_exactly() {
    let f = flaky("heal");
    let app = flaky_app(f.clone(), "heal");
    let (events, counts) = counting(&app);
    let worker = start(&app).await;
    for i in 0..20u64 {
        events.send(format!("k{}", i % 4), 1).await.unwrap();
    }
    eventually("the first 20 events counted", || {
        futures::executor::block_on(async {
            let mut total = 0;
            for k in 0..4 {
                total += counts.get(&format!("k{k}")).await.unwrap().unwrap_or(0);
            }
            total == 20
        })
    })
    .await;
    assert!(app.is_ready());

    // One fatal poll error: the conductor fails, is reported, restarts.
    f.failures.store(1, Ordering::SeqCst);
    eventually("the failure to show in the worker's health", || {
        !app.is_ready()
    })
    .await;
    let reasons = app.not_ready_reasons().join("; ");
    assert!(
        reasons.contains("conductor") && reasons.contains("UnknownPartition"),
        "/ready names the conductor and its error: {reasons}"
    );
    eventually("a new consumer and ready again", || {
        f.consumers.load(Ordering::SeqCst) == 2 && app.is_ready()
    })
    .await;

    // The restarted conductor serves the partitions: more events, counted
    // once each on top of the recovered counts.
    for i in 0..20u64 {
        events.send(format!("k{}", i % 4), 1).await.unwrap();
    }
    eventually("all 40 events counted", || {
        futures::executor::block_on(async {
            let mut total = 0;
            for k in 0..4 {
                total += counts.get(&format!("k{k}")).await.unwrap().unwrap_or(0);
            }
            total == 40
        })
    })
    .await;
    for k in 0..4 {
        assert_eq!(counts.get(&format!("k{k}")).await.unwrap(), Some(10));
    }
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_conductor_that_keeps_failing_stops_the_worker_with_its_error() {
    let f = flaky("give-up");
    let app = flaky_app(f.clone(), "give-up");
    let (events, _counts) = counting(&app);
    let worker = start(&app).await;
    events.send("k".into(), 1).await.unwrap();
    f.failures.store(usize::MAX, Ordering::SeqCst);
    // Whoever waits on the worker's signal (App::run, the worker command)
    // wakes up: the worker does not linger.
    let signal = worker.signal();
    tokio::time::timeout(Duration::from_secs(300), signal.wait())
        .await
        .expect("the worker stops by itself after its restarts");
    let err = worker
        .wait()
        .await
        .expect_err("the worker reports the failure");
    assert!(
        err.to_string().contains("UnknownPartition"),
        "the error says what failed: {err}"
    );
    // A few restarts were tried before giving up.
    assert!(f.consumers.load(Ordering::SeqCst) > 2);
}

/// A store that fails its writes (a full disk): the flush is retried at each
/// commit interval, no offset is committed meanwhile, `/ready` says why;
/// once writes succeed again nothing is lost and commits resume.
#[tokio::test(start_paused = true)]
async fn a_store_failing_its_writes_holds_the_commits_and_loses_nothing() {
    use faustus_testkit::faults::FaultyStore;
    let name = unique("store-full");
    let faulty = FaultyStore::new(faustus_store_memory::MemoryStore::new());
    let registry = faustus::Registry::new();
    faustus::register_default_drivers(&registry);
    faulty.register(&registry, "faulty");
    let app = app_with(
        &registry,
        "store-full",
        &format!("memory://{name}"),
        "faulty://",
    )
    .web_enabled(false)
    .topic_partitions(1u32)
    .build()
    .unwrap();
    let (events, counts) = counting(&app);
    let worker = start(&app).await;
    let tp = TopicPartition::new("events", 0);
    events.send("k".into(), 1).await.unwrap();
    eventually("the first event committed", || {
        broker(&name).committed("store-full", &tp) == Some(1)
    })
    .await;

    faulty.fail_writes(true);
    for _ in 0..5 {
        events.send("k".into(), 1).await.unwrap();
    }
    eventually("a failed flush", || faulty.failed_writes() > 1).await;
    eventually("the store problem on /ready", || !app.is_ready()).await;
    let reasons = app.not_ready_reasons().join("; ");
    assert!(
        reasons.contains("store"),
        "/ready names the store: {reasons}"
    );
    // Several intervals later: still nothing committed past the first event.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(broker(&name).committed("store-full", &tp), Some(1));

    let written = faulty.writes();
    faulty.fail_writes(false);
    eventually("commits resume", || {
        broker(&name).committed("store-full", &tp) == Some(6)
    })
    .await;
    eventually("ready again", || app.is_ready()).await;
    assert_eq!(counts.get(&"k".to_string()).await.unwrap(), Some(6));
    // The held-back changes were written once the store accepted writes.
    assert!(faulty.writes() > written);
    worker.stop().await.unwrap();
}
