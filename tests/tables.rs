//! Tables: changelog per write, recovery by another worker, writes outside
//! events (by the partitioner), the bounded cache.

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
    counting_app_cached(
        broker_name,
        per_write,
        faustus::table::DEFAULT_CACHE_CAPACITY,
    )
}

/// The counting app with a table that caches at most `cache` keys.
fn counting_app_cached(
    broker_name: &str,
    per_write: bool,
    cache: usize,
) -> (App, Topic<String, u64>, Table<String, u64>) {
    let app = app_on(broker_name, "counting")
        .topic_partitions(4u32)
        .build()
        .unwrap();
    let events = app.topic::<String, u64>("events").build().unwrap();
    let mut counts = app
        .table::<String, u64>("counts")
        .with_default()
        .cache_capacity(cache);
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

/// Send `n` to every key, count it in `expected`, and wait until processed.
async fn send_round(
    app: &App,
    events: &Topic<String, u64>,
    keys: &[String],
    n: u64,
    expected: &mut BTreeMap<String, u64>,
) {
    let mut last = BTreeMap::new();
    for k in keys {
        let md = events.send(k.clone(), n).await.unwrap().await.unwrap();
        *expected.entry(k.clone()).or_default() += n;
        last.insert(md.partition, md.offset);
    }
    for (p, o) in &last {
        app.processed(&TopicPartition::new("events", *p), *o).await;
    }
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
    for round in 1..=3u64 {
        send_round(&app1, &events, &keys(), round, &mut expected).await;
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
    for k in keys() {
        assert_eq!(counts1.get(&k).await.unwrap(), expected.get(&k).copied());
    }

    // A second worker of the same app joins: it takes over half the
    // partitions and recovers their values from the changelog.
    let (app2, _events2, counts2) = counting_app(&name, per_write);
    let w2 = start(&app2).await;
    settle_two(&name, &app1, &app2).await;
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
    let md = events
        .send("user-0".into(), 100)
        .await
        .unwrap()
        .await
        .unwrap();
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
async fn writing_outside_an_event_goes_to_the_keys_partition_when_served_here() {
    let name = unique("outside");
    let (app, _events, counts) = counting_app(&name, false);
    let w = start(&app).await;
    // The only worker serves every partition: the write lands in the key's
    // partition, its changelog record too.
    counts.set("x".into(), 7).await.unwrap();
    let p = counts.key_partition(&"x".to_string()).unwrap();
    assert_eq!(
        p,
        faustus::partitioner::partition_for_key(b"\"x\"", 4),
        "the partitioner of keyed records"
    );
    assert_eq!(counts.get(&"x".to_string()).await.unwrap(), Some(7));
    let changelog = counts.changelog_topic().to_string();
    eventually("the changelog record", || {
        broker(&name)
            .messages(&changelog, p)
            .iter()
            .any(|m| m.key.as_deref() == Some(b"\"x\"".as_slice()))
    })
    .await;
    w.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn updating_a_missing_key_without_a_default_fails_and_writes_nothing() {
    for per_write in [false, true] {
        let name = unique("nodefault");
        let app = app_on(&name, "nodefault")
            .topic_partitions(4u32)
            .build()
            .unwrap();
        let mut b = app.table::<String, u64>("totals");
        if per_write {
            b = b.changelog_per_write();
        }
        let totals = b.build().unwrap();
        // An agent over a 4-partition topic: the worker serves the table's partitions.
        let events = app.topic::<String, u64>("events").build().unwrap();
        count_agent(&app, &events, &totals);
        let w = start(&app).await;
        // Twice: the second miss takes the path of a key the store was checked for.
        for _ in 0..2 {
            let err = totals.update("nobody", |n| *n += 1).await.unwrap_err();
            assert!(
                matches!(err, Error::NotFound { .. }),
                "per_write={per_write}: {err}"
            );
        }
        totals.set("somebody".into(), 1).await.unwrap();
        assert_eq!(totals.update("somebody", |n| *n += 1).await.unwrap(), 2);
        w.stop().await.unwrap();
        let changelog = totals.changelog_topic().to_string();
        let keys: Vec<String> = (0..4)
            .flat_map(|p| broker(&name).messages(&changelog, p))
            .map(|m| serde_json::from_slice(m.key.as_deref().unwrap()).unwrap())
            .collect();
        assert!(
            keys.iter().all(|k| k == "somebody") && !keys.is_empty(),
            "per_write={per_write}: only the existing key is written: {keys:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn writing_outside_an_event_to_a_partition_served_elsewhere_names_it() {
    let name = unique("outside2");
    let (app1, _e1, counts1) = counting_app(&name, false);
    let w1 = start(&app1).await;
    let (app2, _e2, counts2) = counting_app(&name, false);
    let w2 = start(&app2).await;
    settle_two(&name, &app1, &app2).await;
    let mine = counts1.active_partitions();
    let key = keys()
        .into_iter()
        .find(|k| !mine.contains(&counts1.key_partition(k).unwrap()))
        .unwrap();
    let p = counts1.key_partition(&key).unwrap();
    let e = counts1.set(key.clone(), 1).await.unwrap_err();
    assert!(
        matches!(&e, Error::PartitionNotAssigned { table, partition } if table == "counts" && *partition == p),
        "{e}"
    );
    assert!(e.to_string().contains(&format!("partition {p}")), "{e}");
    // The worker that serves it takes the write.
    counts2.set(key.clone(), 1).await.unwrap();
    assert_eq!(counts2.get(&key).await.unwrap(), Some(1));
    w1.stop().await.unwrap();
    w2.stop().await.unwrap();
}

mod flaky {
    //! A memory transport whose producer refuses changelog writes while told to.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use faustus::transport::{
        Consumer, ConsumerConfig, Delivery, PartitionReader, Producer, ProducerConfig,
        ReaderConfig, Record, TopicSpec, Transport,
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
        async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>> {
            self.inner.reader(config).await
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
        let md = events.send(k.clone(), 2).await.unwrap().await.unwrap();
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

#[tokio::test(start_paused = true)]
async fn a_bounded_cache_evicts_clean_keys_and_reads_them_back_from_the_store() {
    for per_write in [false, true] {
        bounded_cache(per_write).await;
    }
}

async fn bounded_cache(per_write: bool) {
    let name = unique("bounded");
    let (app, events, counts) = counting_app_cached(&name, per_write, 16);
    let w = start(&app).await;
    let many: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for round in 1..=3u64 {
        send_round(&app, &events, &many, round, &mut expected).await;
        // A commit flushes the changed keys: they become evictable.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for k in &many {
        assert_eq!(
            counts.get(k).await.unwrap(),
            expected.get(k).copied(),
            "{k}"
        );
    }
    assert!(
        counts.cached_keys() <= 16,
        "{} keys cached",
        counts.cached_keys()
    );
    let items: BTreeMap<String, u64> = counts.items().await.unwrap().into_iter().collect();
    assert_eq!(items, expected);
    w.stop().await.unwrap();
}

/// A table flush that waits on its store write holds the commit of the
/// offsets it covers, but events keep flowing meanwhile; once the write
/// ends, the offsets follow.
#[tokio::test(start_paused = true)]
async fn a_slow_store_write_holds_the_commit_but_not_the_events() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let name = unique("gated");
    let (open, gate) = tokio::sync::watch::channel(false);
    let writes = Arc::new(AtomicUsize::new(0));
    let registry = faustus::Registry::new();
    faustus::register_default_drivers(&registry);
    {
        let (gate, writes) = (gate.clone(), writes.clone());
        registry.register_store(
            "gated",
            Arc::new(move |_url, _ctx| {
                Ok(Arc::new(slow::RecordingStore::gated(
                    gate.clone(),
                    writes.clone(),
                )))
            }),
        );
    }
    let app = app_with(
        &registry,
        "counting",
        &format!("memory://{name}"),
        "gated://",
    )
    .topic_partitions(4u32)
    .build()
    .unwrap();
    let (events, counts) = counting(&app);
    let w = start(&app).await;
    let b = broker(&name);
    let mut expected = BTreeMap::new();
    send_round(&app, &events, &keys(), 1, &mut expected).await;
    eventually("a flush to wait on the store", || {
        writes.load(Ordering::SeqCst) > 0
    })
    .await;
    // The flush waits: events still flow and are processed.
    let mut last = BTreeMap::new();
    for k in keys() {
        let md = events.send(k.clone(), 2).await.unwrap().await.unwrap();
        *expected.entry(k).or_default() += 2;
        last.insert(md.partition, md.offset);
    }
    for (p, o) in &last {
        let tp = TopicPartition::new("events", *p);
        tokio::time::timeout(Duration::from_secs(10), app.processed(&tp, *o))
            .await
            .unwrap_or_else(|_| panic!("{tp}@{o} was not processed while the table write waited"));
    }
    for k in keys() {
        assert_eq!(counts.get(&k).await.unwrap(), expected.get(&k).copied());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for p in 0..4 {
        assert_eq!(
            b.committed("counting", &TopicPartition::new("events", p)),
            None,
            "partition {p}: nothing is committed while its table write waits"
        );
    }
    // The store write ends: the offsets follow, up to the last event.
    open.send(true).unwrap();
    eventually("every offset to be committed", || {
        last.iter().all(|(p, o)| {
            b.committed("counting", &TopicPartition::new("events", *p)) == Some(o + 1)
        })
    })
    .await;
    w.stop().await.unwrap();
}
