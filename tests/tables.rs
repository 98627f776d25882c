//! Tables: changelog per write, recovery by another worker, writes outside events.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use faustus::prelude::*;
use faustus::{Error, TopicPartition};
use support::*;

/// The counting app used by these tests: `events` → `count` agent → `counts` table.
fn counting_app(
    broker_name: &str,
    per_write: bool,
) -> (App, Topic<String, u64>, Table<String, u64>) {
    let app = app_on(broker_name, "counting")
        .topic_partitions(4u32)
        .build()
        .unwrap();
    let events = app.topic::<String, u64>("events").build().unwrap();
    let mut counts = app.table::<String, u64>("counts").with_default();
    if per_write {
        counts = counts.changelog_per_write();
    }
    let counts = counts.build().unwrap();
    count_agent(&app, &events, &counts);
    (app, events, counts)
}

fn keys() -> Vec<String> {
    (0..40).map(|i| format!("user-{i}")).collect()
}

/// The changelog's records folded per key, and how many there are.
fn fold_changelog(broker_name: &str, changelog: &str) -> (BTreeMap<String, u64>, usize) {
    let b = broker(broker_name);
    let mut records = 0;
    let mut folded = BTreeMap::new();
    for p in 0..4 {
        for m in b.messages(changelog, p) {
            records += 1;
            let k: String = serde_json::from_slice(m.key.as_deref().unwrap()).unwrap();
            let v: u64 = serde_json::from_slice(m.value.as_deref().unwrap()).unwrap();
            folded.insert(k, v);
        }
    }
    (folded, records)
}

#[tokio::test(start_paused = true)]
async fn per_write_changelog_gets_a_record_per_write_and_a_second_worker_recovers_it() {
    changelog_and_recovery(true).await;
}

#[tokio::test(start_paused = true)]
async fn coalesced_changelog_gets_each_changed_key_per_commit_and_a_second_worker_recovers_it() {
    changelog_and_recovery(false).await;
}

async fn changelog_and_recovery(per_write: bool) {
    let name = unique("tables");
    let (app1, events, counts1) = counting_app(&name, per_write);
    let w1 = start(&app1).await;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut last = BTreeMap::new();
    for round in 1..=3u64 {
        for k in keys() {
            let md = events.send(k.clone(), round).await.unwrap();
            *expected.entry(k).or_default() += round;
            last.insert(md.partition, md.offset);
        }
    }
    for (p, o) in &last {
        app1.processed(&TopicPartition::new("events", *p), *o).await;
    }
    let changelog = counts1.changelog_topic().to_string();
    assert_eq!(changelog, "counting-counts-changelog");
    if per_write {
        // One changelog record per write (120 writes), at once.
        let (folded, records) = fold_changelog(&name, &changelog);
        assert_eq!(records, 120);
        assert_eq!(
            folded, expected,
            "the table equals the fold of its changelog"
        );
    } else {
        // Each changed key once per commit: by the next commit the fold
        // equals the table, with at most one record per write.
        eventually("the changelog to catch up", || {
            fold_changelog(&name, &changelog).0 == expected
        })
        .await;
        let (_, records) = fold_changelog(&name, &changelog);
        assert!((40..=120).contains(&records), "{records} records");
    }
    let b = broker(&name);
    for k in keys() {
        assert_eq!(counts1.get(&k).await.unwrap(), expected.get(&k).copied());
    }

    // A second worker of the same app joins: it takes over half the
    // partitions and recovers their values from the changelog.
    let (app2, _events2, counts2) = counting_app(&name, per_write);
    let w2 = start(&app2).await;
    eventually("the group to settle with two members", || {
        !b.is_rebalancing("counting")
            && !app1.assignment().is_empty()
            && !app2.assignment().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mine: Vec<u32> = counts2.active_partitions();
    assert!(
        !mine.is_empty() && mine.len() < 4,
        "worker 2 serves some partitions: {mine:?}"
    );
    let mut checked = 0;
    for k in keys() {
        let p = faustus::partitioner::partition_for_key(
            serde_json::to_string(&k).unwrap().as_bytes(),
            4,
        );
        if mine.contains(&p) {
            assert_eq!(
                counts2.get(&k).await.unwrap(),
                expected.get(&k).copied(),
                "{k} recovered"
            );
            checked += 1;
        }
    }
    assert!(checked > 0);

    // Worker 1 leaves; worker 2 takes everything over and keeps counting.
    w1.stop().await.unwrap();
    eventually("worker 2 holds all partitions", || {
        counts2.active_partitions().len() == 4
    })
    .await;
    let md = events.send("user-0".into(), 100).await.unwrap();
    app2.processed(&TopicPartition::new("events", md.partition), md.offset)
        .await;
    assert_eq!(
        counts2.get(&"user-0".to_string()).await.unwrap(),
        Some(6 + 100)
    );
    for k in keys() {
        if k != "user-0" {
            assert_eq!(counts2.get(&k).await.unwrap(), expected.get(&k).copied());
        }
    }
    assert_eq!(counts2.len().await.unwrap(), 40);
    w2.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn writing_outside_an_event_is_an_error_that_says_so() {
    let name = unique("outside");
    let (app, _events, counts) = counting_app(&name, false);
    let w = start(&app).await;
    let e = counts.set("x".into(), 1).await.unwrap_err();
    assert!(matches!(e, Error::NoCurrentEvent { .. }), "{e}");
    assert!(e.to_string().contains("outside of a stream event"), "{e}");
    w.stop().await.unwrap();
}

mod flaky {
    //! A memory transport whose producer refuses changelog writes while told to.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use faustus::transport::{
        Consumer, ConsumerConfig, Delivery, Producer, ProducerConfig, Record, TopicSpec, Transport,
    };
    use faustus::{Error, Result};

    #[derive(Debug)]
    pub(super) struct Flaky {
        pub(super) inner: Arc<dyn Transport>,
        pub(super) fail: Arc<AtomicBool>,
    }

    #[derive(Debug)]
    struct FlakyProducer {
        inner: Arc<dyn Producer>,
        fail: Arc<AtomicBool>,
    }

    #[async_trait]
    impl Transport for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
            self.inner.create_topic(spec).await
        }
        async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
            self.inner.partition_count(topic).await
        }
        async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>> {
            Ok(Arc::new(FlakyProducer {
                inner: self.inner.producer(config).await?,
                fail: self.fail.clone(),
            }))
        }
        async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>> {
            self.inner.consumer(config).await
        }
    }

    #[async_trait]
    impl Producer for FlakyProducer {
        async fn send(&self, record: Record) -> Result<Delivery> {
            if self.fail.load(Ordering::SeqCst) && record.topic.ends_with("-changelog") {
                return Ok(Delivery::ready(Err(Error::retryable(
                    "flaky",
                    "broker refused the write",
                ))));
            }
            self.inner.send(record).await
        }
        async fn flush(&self) -> Result<()> {
            self.inner.flush().await
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_changelog_write_holds_the_commit_and_is_sent_again() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let name = unique("flaky");
    let fail = Arc::new(AtomicBool::new(true));
    let registry = faustus::Registry::new();
    faustus::register_default_drivers(&registry);
    {
        let (name, fail) = (name.clone(), fail.clone());
        registry.register_transport(
            "flaky",
            Arc::new(move |_url| {
                Ok(Arc::new(flaky::Flaky {
                    inner: Arc::new(faustus_transport_memory::MemoryTransport::named(&name)),
                    fail: fail.clone(),
                }))
            }),
        );
    }
    let app = app_with(&registry, "counting", "flaky://", "memory://")
        .topic_partitions(4u32)
        .build()
        .unwrap();
    let (events, counts) = counting(&app);
    let w = start(&app).await;
    let mut expected = BTreeMap::new();
    let mut last = BTreeMap::new();
    for k in keys() {
        let md = events.send(k.clone(), 2).await.unwrap();
        expected.insert(k, 2u64);
        last.insert(md.partition, md.offset);
    }
    for (p, o) in &last {
        app.processed(&TopicPartition::new("events", *p), *o).await;
    }
    // Commits fail while the changelog refuses writes: no source offset moves.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let b = broker(&name);
    for p in 0..4 {
        assert_eq!(
            b.committed("counting", &TopicPartition::new("events", p)),
            None
        );
    }
    // The broker is back: the changed keys go out and the offsets follow.
    fail.store(false, Ordering::SeqCst);
    let changelog = counts.changelog_topic().to_string();
    eventually("the changelog to hold every key", || {
        fold_changelog(&name, &changelog).0 == expected
    })
    .await;
    eventually("the source offsets to be committed", || {
        last.iter().all(|(p, o)| {
            b.committed("counting", &TopicPartition::new("events", *p)) == Some(o + 1)
        })
    })
    .await;
    w.stop().await.unwrap();
}
