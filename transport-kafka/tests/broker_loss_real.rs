//! A worker on a real broker (a tansu of the test's own) that goes away and
//! comes back empty, as a broker that lost its data: while it is away the
//! worker is not ready and says why; when it is back, the worker creates
//! the app's topics again with the partition counts the app needs, rejoins
//! with a new consumer, recovers its table from the (new) changelog and
//! processes what is sent.
//! Ignored in plain `cargo test`; `scripts/test.sh` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus_core::transport::{PartitionReader, PartitionReaderExt, ReaderConfig, Transport};
use faustus_core::{App, DriverUrl, Registry, TopicPartition};
use faustus_transport_kafka::KafkaTransport;
use futures::StreamExt;
use support::tansu::Tansu;
use support::worker::{start_ready, wait_for_reasons};

const PARTITIONS: u32 = 3;

/// The last value of each key in `topic` (JSON string keys, u64 values).
async fn changelog_fold(
    transport: &KafkaTransport,
    topic: &str,
) -> std::collections::BTreeMap<String, u64> {
    let mut reader = transport
        .reader(&ReaderConfig::new("broker-loss-check"))
        .await
        .unwrap();
    let mut ends = Vec::new();
    for p in 0..PARTITIONS {
        let tp = TopicPartition::new(topic, p);
        ends.push(reader.high_watermark(&tp).await.unwrap());
    }
    let starts: Vec<_> = (0..PARTITIONS)
        .map(|p| (TopicPartition::new(topic, p), 0))
        .collect();
    reader.assign_at(&starts).await.unwrap();
    let mut next = vec![0i64; PARTITIONS as usize];
    let mut fold = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while next.iter().zip(&ends).any(|(n, e)| n < e) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {topic}: at {next:?} of {ends:?}"
        );
        for m in reader.poll(Duration::from_millis(200)).await.unwrap() {
            next[m.partition as usize] = m.offset + 1;
            let key: String = serde_json::from_slice(m.key.as_deref().unwrap()).unwrap();
            match m.value.as_deref() {
                Some(v) => fold.insert(key, serde_json::from_slice(v).unwrap()),
                None => fold.remove(&key),
            };
        }
    }
    reader.close().await.unwrap();
    fold
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the tansu broker binary: run scripts/test.sh"]
async fn a_broker_back_empty_gets_the_apps_topics_again_and_processing_resumes() {
    if std::env::var("FAUSTUS_TEST_KAFKA").is_err() || support::tansu::binary().is_none() {
        eprintln!("SKIPPED: set FAUSTUS_TEST_KAFKA and install tansu (scripts/test.sh does)");
        return;
    }
    // The worker's log, for a failure's story (RUST_LOG, default info).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    let tansu = Tansu::start(None, false);
    let addr = tansu.addr;
    let url = format!("kafka://{addr}?linger.ms=0&session.timeout.ms=10000&heartbeat.interval.ms=1000&connect_timeout_ms=30000");
    let registry = Registry::new();
    faustus_transport_kafka::register(&registry);
    faustus_store_memory::register(&registry);
    let app = App::builder("broker-back-empty")
        .registry(registry)
        .env(Default::default())
        .broker(url.as_str())
        .store("memory://")
        .web_enabled(false)
        .topic_partitions(PARTITIONS)
        .broker_commit_interval(Duration::from_millis(200))
        .broker_check_interval(Duration::from_millis(500))
        .build()
        .unwrap();
    let numbers = app.topic::<String, u64>("numbers").build().unwrap();
    let totals = app
        .table::<String, u64>("totals")
        .with_default()
        .build()
        .unwrap();
    let sum = Arc::new(AtomicU64::new(0));
    app.agent::<String, u64>("sum")
        .on(&numbers)
        .build({
            let (sum, totals) = (sum.clone(), totals.clone());
            move |s| {
                let (sum, totals) = (sum.clone(), totals.clone());
                async move {
                    let mut items = s.items();
                    while let Some((key, v)) = items.next().await {
                        totals.update(&key.unwrap_or_default(), |t| *t += v).await?;
                        sum.fetch_add(v, Ordering::SeqCst);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start_ready(&app).await;
    let md = numbers.send("k".into(), 1).await.unwrap().await.unwrap();
    let tp = faustus_core::TopicPartition::new("numbers", md.partition);
    tokio::time::timeout(Duration::from_secs(60), app.processed(&tp, md.offset))
        .await
        .expect("processed before the outage");

    // The broker goes away: the worker runs on, not ready, naming the
    // broker, until the group session (10 s) has expired too.
    drop(tansu);
    let outage = tokio::time::Instant::now();
    wait_for_reasons(&app, Duration::from_secs(60), |r| {
        r.iter().any(|r| r.starts_with("broker: "))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(outage.elapsed())).await;

    // It comes back with nothing: no topics, no group, no offsets. The
    // worker creates the app's topics again, with the app's counts.
    let tansu = Tansu::start_at(addr, None, false);
    let admin = KafkaTransport::from_url(&DriverUrl::parse("broker", &url).unwrap()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    for topic in ["numbers", "broker-back-empty-totals-changelog"] {
        loop {
            match admin.partition_count(topic).await.unwrap() {
                Some(n) => {
                    assert_eq!(
                        n, PARTITIONS,
                        "partitions of {topic} after the broker came back"
                    );
                    break;
                }
                None => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{topic} was not created again; not ready because {:?}",
                        app.not_ready_reasons()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    // A record sent now is processed once, by a consumer assigned the new
    // topic (the worker heals by rejoining with fresh metadata).
    numbers.send("k".into(), 4).await.unwrap().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while sum.load(Ordering::SeqCst) < 1 + 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the record sent after the broker came back was not processed; not ready because {:?}",
            app.not_ready_reasons()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reasons = wait_for_reasons(&app, Duration::from_secs(60), |r| r.is_empty()).await;
    assert!(reasons.is_empty());
    assert_eq!(sum.load(Ordering::SeqCst), 1 + 4, "each record once");
    // The changelog was lost with the broker: the table equals the fold of
    // the changelog the broker holds now, not the count kept from before.
    // Changelog records are written at the commit after the update (once
    // per key per commit), so the fold catches up within a commit interval.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let fold = loop {
        let fold = changelog_fold(&admin, "broker-back-empty-totals-changelog").await;
        let table = totals.get(&"k".to_string()).await.unwrap();
        if table == fold.get("k").copied() {
            break fold;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the table ({table:?}) is not the fold of its changelog ({fold:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("changelog now: {fold:?}");
    assert!(fold.get("k").copied().unwrap_or(0) >= 4);
    worker.stop().await.unwrap();
    drop(tansu);
}
