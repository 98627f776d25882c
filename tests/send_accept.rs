//! `send(..).await` returns once the producer accepted the record; the
//! commit waits for delivery, and a failed delivery holds the commit of the
//! event that sent it.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use faustus::prelude::*;
use faustus::transport::{
    Consumer, ConsumerConfig, Delivery, PartitionReader, Producer, ProducerConfig, ReaderConfig,
    Record, TopicSpec, Transport,
};
use faustus::{Error, Result, TopicPartition};
use support::*;
use tokio::sync::{watch, Semaphore};

/// A memory transport whose producer behaves like a real one: a record is
/// accepted into a queue of `capacity` records (`send` waits while it is
/// full), and delivered — appended to the broker, or failed when its value
/// is `fail_value` on topic `fail_topic` — only while `open` is true.
#[derive(Debug, Clone)]
struct Gated {
    name: String,
    capacity: usize,
    open: watch::Receiver<bool>,
    fail_topic: &'static str,
    fail_value: &'static [u8],
}

#[derive(Debug)]
struct GatedProducer {
    queue: Arc<Semaphore>,
    capacity: usize,
    /// To the delivery task, in send order.
    deliver: tokio::sync::mpsc::UnboundedSender<Accepted>,
    fail_topic: &'static str,
    fail_value: &'static [u8],
}

/// An accepted record: its place in the queue, whether it fails, and where
/// its outcome goes.
type Accepted = (
    Record,
    tokio::sync::OwnedSemaphorePermit,
    bool,
    tokio::sync::oneshot::Sender<Result<faustus::RecordMetadata>>,
);

/// Delivers accepted records in order, while the gate is open, whether or
/// not anyone awaits their deliveries (as librdkafka's thread does).
async fn deliver(
    inner: Arc<dyn Producer>,
    mut open: watch::Receiver<bool>,
    mut accepted: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
) {
    while let Some((record, permit, fail, tx)) = accepted.recv().await {
        let _ = open.wait_for(|o| *o).await;
        let result = if fail {
            Err(Error::retryable("gated", "broker refused the record"))
        } else {
            match inner.send(record).await {
                Ok(d) => d.await,
                Err(e) => Err(e),
            }
        };
        drop(permit);
        let _ = tx.send(result);
    }
}

impl Gated {
    /// A memory broker `name` behind a producer queue of `capacity`, which
    /// delivers while `open` is true.
    fn new(name: String, capacity: usize, open: watch::Receiver<bool>) -> Self {
        Gated {
            name,
            capacity,
            open,
            fail_topic: "",
            fail_value: b"",
        }
    }

    /// The broker refuses the record of `topic` whose value is `value`
    /// (none when `value` is empty).
    fn failing(mut self, topic: &'static str, value: &'static [u8]) -> Self {
        if !value.is_empty() {
            self.fail_topic = topic;
            self.fail_value = value;
        }
        self
    }
}

#[async_trait]
impl Transport for Gated {
    fn name(&self) -> &str {
        "gated"
    }
    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        faustus_transport_memory::MemoryTransport::named(&self.name)
            .create_topic(spec)
            .await
    }
    async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        faustus_transport_memory::MemoryTransport::named(&self.name)
            .partition_count(topic)
            .await
    }
    async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>> {
        let inner = faustus_transport_memory::MemoryTransport::named(&self.name)
            .producer(config)
            .await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(deliver(inner, self.open.clone(), rx));
        Ok(Arc::new(GatedProducer {
            queue: Arc::new(Semaphore::new(self.capacity)),
            capacity: self.capacity,
            deliver: tx,
            fail_topic: self.fail_topic,
            fail_value: self.fail_value,
        }))
    }
    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>> {
        faustus_transport_memory::MemoryTransport::named(&self.name)
            .consumer(config)
            .await
    }
    async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>> {
        faustus_transport_memory::MemoryTransport::named(&self.name)
            .reader(config)
            .await
    }
}

#[async_trait]
impl Producer for GatedProducer {
    async fn send(&self, record: Record) -> Result<Delivery> {
        // Accepted once there is room in the queue.
        let permit = self
            .queue
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::State("queue closed".into()))?;
        let fail =
            &*record.topic == self.fail_topic && record.value.as_deref() == Some(self.fail_value);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.deliver
            .send((record, permit, fail, tx))
            .map_err(|_| Error::State("producer closed".into()))?;
        Ok(Delivery::pending(async move {
            rx.await
                .unwrap_or_else(|_| Err(Error::State("delivery task ended".into())))
        }))
    }
    async fn flush(&self) -> Result<()> {
        // Every record accepted before now is delivered once the whole queue
        // is free again.
        let all = u32::try_from(self.capacity).unwrap();
        let permits = self
            .queue
            .acquire_many(all)
            .await
            .map_err(|_| Error::State("queue closed".into()))?;
        drop(permits);
        Ok(())
    }
}

fn gated_app(gated: Gated, id: &str) -> faustus::App {
    let registry = faustus::Registry::new();
    faustus::register_default_drivers(&registry);
    registry.register_transport(
        "gated",
        Arc::new(move |_url| Ok(Arc::new(gated.clone()) as Arc<dyn Transport>)),
    );
    app_with(&registry, id, "gated://", "memory://")
        .web_enabled(false)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn send_returns_once_accepted_and_the_delivery_gives_the_metadata() {
    let name = unique("send-accepted");
    let (open, gate) = watch::channel(false);
    let app = gated_app(Gated::new(name.clone(), 100, gate), "send-accepted");
    let words = app
        .topic::<String, u64>("words")
        .partitions(1)
        .build()
        .unwrap();
    // The broker has acknowledged nothing, yet every send returned.
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let d = tokio::time::timeout(Duration::from_secs(1), words.send(format!("w{i}"), i))
            .await
            .expect("send returns before the broker acknowledges")
            .unwrap();
        deliveries.push(d);
    }
    assert!(broker(&name).messages("words", 0).is_empty());
    let mut first = deliveries.remove(0);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut first)
            .await
            .is_err(),
        "the delivery waits for the broker"
    );
    // Delivered: awaiting the delivery gives where the record landed.
    open.send(true).unwrap();
    let md = first.await.unwrap();
    assert_eq!((&*md.topic, md.partition, md.offset), ("words", 0, 0));
    // Dropped deliveries are delivered all the same.
    drop(deliveries);
    eventually("every record delivered", || {
        broker(&name).messages("words", 0).len() == 10
    })
    .await;
    let md = words.send("last".into(), 10).await.unwrap().await.unwrap();
    assert_eq!(md.offset, 10);
}

#[tokio::test(start_paused = true)]
async fn a_full_producer_queue_makes_send_wait_and_drops_nothing() {
    let name = unique("send-queue");
    let (open, gate) = watch::channel(false);
    let app = gated_app(Gated::new(name.clone(), 3, gate), "send-queue");
    let words = app
        .topic::<String, u64>("words")
        .partitions(1)
        .build()
        .unwrap();
    for i in 0..3 {
        words.send(format!("w{i}"), i).await.unwrap();
    }
    // The queue is full: the next send waits (backpressure) ...
    let fourth = tokio::spawn({
        let words = words.clone();
        async move { words.send("w3".into(), 3).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!fourth.is_finished(), "send waits while the queue is full");
    // ... until deliveries make room; then nothing is lost.
    open.send(true).unwrap();
    fourth.await.unwrap().unwrap();
    eventually("all four records delivered", || {
        broker(&name).messages("words", 0).len() == 4
    })
    .await;
    let values: Vec<_> = broker(&name)
        .messages("words", 0)
        .into_iter()
        .map(|m| m.value.unwrap())
        .collect();
    assert_eq!(values, vec!["0", "1", "2", "3"]);
}

/// An app on a gated memory broker whose agent `double` sends twice every
/// `numbers` value to `doubled` with the natural `send(..).await`; the
/// record of `fail_value` (if any) is refused by the broker.
fn doubling_app(
    name: &str,
    gate: watch::Receiver<bool>,
    fail_value: &'static [u8],
) -> (App, Topic<String, u64>) {
    let app = gated_app(
        Gated::new(name.to_string(), 1000, gate).failing("doubled", fail_value),
        "send-fails",
    );
    let numbers = app
        .topic::<String, u64>("numbers")
        .partitions(1)
        .build()
        .unwrap();
    let doubled = app
        .topic::<String, u64>("doubled")
        .partitions(1)
        .build()
        .unwrap();
    app.agent::<String, u64>("double")
        .on(&numbers)
        .build(move |s| {
            let doubled = doubled.clone();
            async move {
                let mut items = s.items();
                while let Some((k, n)) = items.next().await {
                    // The natural code: no wait for the broker.
                    doubled.send(k.unwrap_or_default(), n * 2).await?;
                }
                Ok(())
            }
        })
        .unwrap();
    (app, numbers)
}

#[tokio::test(start_paused = true)]
async fn a_failed_delivery_holds_the_commit_of_the_event_that_sent_it_and_is_reported() {
    let name = unique("send-fails");
    let (_open, gate) = watch::channel(true);
    let (app, numbers) = doubling_app(&name, gate, b"26");
    let worker = start(&app).await;
    let tp = TopicPartition::new("numbers", 0);
    let mut last = 0;
    for n in [1u64, 2, 13, 3, 4] {
        last = numbers
            .send("k".into(), n)
            .await
            .unwrap()
            .await
            .unwrap()
            .offset;
    }
    assert_eq!(last, 4);
    app.processed(&tp, last).await;
    // Events before the failed one are committed; the one whose record was
    // not delivered (offset 2) and everything after it are not.
    let b = broker(&name);
    eventually("the offsets before the failure to be committed", || {
        b.committed("send-fails", &tp) == Some(2)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.committed("send-fails", &tp), Some(2), "held at the event");
    // The other records went out, the failed one did not.
    let out: Vec<_> = b
        .messages("doubled", 0)
        .into_iter()
        .map(|m| m.value.unwrap())
        .collect();
    assert_eq!(out, vec!["2", "4", "6", "8"]);
    // Reported: counted, and among the failures with the event's coordinates.
    let failures = app.monitor().failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].event, "numbers[0]@2");
    assert!(
        failures[0].message.contains("doubled") && failures[0].message.contains("refused"),
        "{}",
        failures[0].message
    );
    let counted = app
        .monitor()
        .figures()
        .into_iter()
        .any(|(name, labels, _)| {
            name == "faustus_send_failures_total" && labels.contains("doubled")
        });
    assert!(counted, "faustus_send_failures_total{{topic=\"doubled\"}}");
    // Stopping commits what may be committed: still not past the event.
    worker.stop().await.unwrap();
    assert_eq!(b.committed("send-fails", &tp), Some(2));

    // A new worker processes the event again (and the ones after it).
    let (_open2, gate2) = watch::channel(true);
    let (app2, _) = doubling_app(&name, gate2, b"");
    let worker2 = start(&app2).await;
    eventually("the held events committed by the next worker", || {
        b.committed("send-fails", &tp) == Some(5)
    })
    .await;
    let out: Vec<_> = b
        .messages("doubled", 0)
        .into_iter()
        .map(|m| m.value.unwrap())
        .collect();
    assert_eq!(out, vec!["2", "4", "6", "8", "26", "6", "8"]);
    worker2.stop().await.unwrap();
}

/// An app command's sends are delivered before the command line returns:
/// `send(..).await` returns once a record is accepted, so the command line
/// flushes the app (`App::flush`) after the command. Without that the
/// process ended with records still queued (the runtime, and the producer's
/// queue with it, went away): the word-count demo's `produce` command sent
/// nothing to a real broker.
#[test]
fn a_commands_sends_are_delivered_before_the_command_line_returns() {
    let name = unique("cmd-flush");
    let (_open, gate) = watch::channel(true);
    let app = gated_app(Gated::new(name.clone(), 1000, gate), "cmd-flush");
    let out = app
        .topic::<String, u64>("out")
        .partitions(1)
        .build()
        .unwrap();
    app.command(
        faustus::clap::Command::new("produce"),
        move |_app, _args| {
            let out = out.clone();
            async move {
                for n in 0..200u64 {
                    out.send("k".into(), n).await?;
                }
                Ok(())
            }
        },
    );
    let code = faustus::cli::run(&app, ["test", "produce"].map(std::ffi::OsString::from));
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    assert_eq!(broker(&name).messages("out", 0).len(), 200);
}

/// `App::flush` waits for what was sent and reports a delivery nobody
/// awaited that failed.
#[tokio::test(start_paused = true)]
async fn flush_waits_for_the_deliveries_and_fails_on_an_unobserved_failure() {
    let name = unique("app-flush");
    let (open, gate) = watch::channel(false);
    let app = gated_app(
        Gated::new(name.clone(), 100, gate).failing("out", b"13"),
        "app-flush",
    );
    let out = app
        .topic::<String, u64>("out")
        .partitions(1)
        .build()
        .unwrap();
    for n in [1u64, 2] {
        out.send("k".into(), n).await.unwrap();
    }
    let flushing = tokio::spawn({
        let app = app.clone();
        async move { app.flush().await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!flushing.is_finished(), "the deliveries are held");
    open.send_replace(true);
    flushing.await.unwrap().unwrap();
    assert_eq!(broker(&name).messages("out", 0).len(), 2);
    out.send("k".into(), 13).await.unwrap();
    let err = app.flush().await.unwrap_err();
    assert!(err.to_string().contains("not delivered"), "{err}");
}
