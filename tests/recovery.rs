//! Table recovery: progress figures, and a rebalance in the middle of a long
//! recovery cancels it and resumes exactly where it stopped.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use faustus::monitor::RecoveryState;
use faustus::prelude::*;
use faustus::transport::{ProducerConfig, Record, TopicSpec, Transport};
use faustus::Registry;
use support::slow::{assert_contiguous, slow_registry};
use support::*;

const PER_PARTITION: i64 = 500;

/// Write `PER_PARTITION` records to each of the 4 partitions of the
/// `recov-counts-changelog` topic (50 keys per partition, each rewritten 10
/// times) and return the fold: key -> (partition, value).
async fn preload_changelog(broker: &str) -> BTreeMap<String, (u32, u64)> {
    let t = faustus_transport_memory::MemoryTransport::named(broker);
    let topic = "recov-counts-changelog";
    t.create_topic(&TopicSpec::new(topic, 4).compacted(true))
        .await
        .unwrap();
    let producer = t.producer(&ProducerConfig::new("preload")).await.unwrap();
    let mut fold = BTreeMap::new();
    for p in 0..4u32 {
        for i in 0..PER_PARTITION {
            let key = format!("k{p}-{}", i % 50);
            let mut r = Record::new(
                topic,
                Some(serde_json::to_vec(&key).unwrap().into()),
                Some(serde_json::to_vec(&(i as u64)).unwrap().into()),
            );
            r.partition = Some(p);
            producer.send(r).await.unwrap().await.unwrap();
            fold.insert(key, (p, i as u64));
        }
    }
    fold
}

fn recov_app(registry: &Registry, id: &str) -> (App, Table<String, u64>) {
    let app = app_with(registry, "recov", "slow://", "recording://")
        .topic_partitions(4u32)
        .build()
        .unwrap();
    app.set_worker_id(id).unwrap();
    let (_events, counts) = counting(&app);
    (app, counts)
}

#[tokio::test(start_paused = true)]
async fn a_rebalance_during_recovery_cancels_it_and_the_next_one_resumes_exactly() {
    let name = unique("recov");
    // Recovery reads 10 records per 100 ms: 2000 records take 20 s.
    let (registry, stores) = slow_registry(&name, 10, Duration::from_millis(100));
    let fold = preload_changelog(&name).await;

    let (a, counts_a) = recov_app(&registry, "a");
    let wa = a.start().await.unwrap();
    eventually("worker a to be recovering", || {
        a.monitor()
            .recovery_progress()
            .first()
            .is_some_and(|p| p.done >= 200 && p.state == RecoveryState::Running)
    })
    .await;
    let fig = &a.monitor().recovery_progress()[0];
    assert_eq!(
        (fig.total, fig.partitions.clone()),
        (2000, vec![0, 1, 2, 3])
    );
    assert!(
        fig.eta.is_some_and(|eta| eta > Duration::from_secs(5)),
        "{fig:?}"
    );

    // B joins (members that stop polling for 5 s during a rebalance are
    // removed): A keeps serving the group while it recovers, so the
    // rebalance completes at once and A's recovery is cancelled.
    let began = tokio::time::Instant::now();
    let (b, counts_b) = recov_app(&registry, "b");
    let wb = start(&b).await;
    wa.ready().await.unwrap();
    let took = began.elapsed();
    // B recovers its 1000 records (10 s); had A held the group until its own
    // 2000 records were read, B would have waited far longer.
    assert!(took < Duration::from_secs(14), "B ready after {took:?}");
    assert_eq!(b.monitor().snapshot().rebalances, 0);
    assert!(a.monitor().snapshot().rebalances >= 1);

    // Range assignment: A (first member) serves 0 and 1, B 2 and 3.
    assert_eq!(counts_a.active_partitions(), vec![0, 1]);
    assert_eq!(counts_b.active_partitions(), vec![2, 3]);
    let logs = stores.lock().clone();
    let (log_a, log_b) = (logs[0].lock().clone(), logs[1].lock().clone());
    // Every changelog record of A's partitions applied exactly once, across
    // the cancelled recovery and the resumed one.
    for p in [0, 1] {
        assert_eq!(
            assert_contiguous(&log_a, "counts", p, 0, PER_PARTITION - 1),
            PER_PARTITION as usize
        );
    }
    for p in [2, 3] {
        assert_contiguous(&log_b, "counts", p, 0, PER_PARTITION - 1);
    }
    // The resumed recovery replayed only what the cancelled one had not.
    let fig = a.monitor().recovery_progress()[0].clone();
    assert_eq!(fig.state, RecoveryState::Done);
    assert_eq!(fig.partitions, vec![0, 1]);
    assert!(fig.total < 1000 && fig.done == fig.total, "{fig:?}");
    let applied_a: usize = log_a.iter().map(|(_, (_, n, _))| n).sum();
    assert_eq!(a.monitor().snapshot().recovered_records, applied_a as u64);

    for (key, (p, v)) in &fold {
        let table = if *p < 2 { &counts_a } else { &counts_b };
        assert_eq!(table.get(key).await.unwrap(), Some(*v), "{key}");
    }
    wb.stop().await.unwrap();
    wa.stop().await.unwrap();
}
