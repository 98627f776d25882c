//! Standby replicas: a worker keeps another's table partition warm from its
//! changelog and, when it takes the partition over, replays only the tail.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use faustus::prelude::*;
use faustus::TopicPartition;
use support::*;

fn one_partition_app(
    registry: &faustus::Registry,
    id: &str,
) -> (App, Topic<String, u64>, Table<String, u64>) {
    let app = app_with(registry, "standby", "slow://", "memory://")
        .topic_partitions(1u32)
        .build()
        .unwrap();
    app.set_worker_id(id).unwrap();
    let (events, counts) = counting(&app);
    (app, events, counts)
}

/// Send `n` events over 20 keys and wait until `app` processed them.
async fn send(
    app: &App,
    events: &Topic<String, u64>,
    n: u64,
    expected: &mut BTreeMap<String, u64>,
) {
    let mut last = 0;
    for i in 0..n {
        let k = format!("user-{}", i % 20);
        last = events
            .send(k.clone(), 1)
            .await
            .unwrap()
            .await
            .unwrap()
            .offset;
        *expected.entry(k).or_default() += 1;
    }
    app.processed(&TopicPartition::new("events", 0), last).await;
}

#[tokio::test(start_paused = true)]
async fn a_standby_keeps_up_and_replays_only_the_tail_when_it_takes_over() {
    let name = unique("standby");
    // Changelog readers (standby, recovery) read 5 records per second.
    let (registry, _) = support::slow::slow_registry(&name, 5, Duration::from_secs(1));
    let b_broker = broker(&name);
    let changelog = TopicPartition::new("standby-counts-changelog", 0);
    let mut expected = BTreeMap::new();

    let (a, events, _counts_a) = one_partition_app(&registry, "a");
    let wa = start(&a).await;
    send(&a, &events, 200, &mut expected).await;

    // B joins: the only partition stays with A (range assignment, A first);
    // B is its standby (table_standby_replicas = 1) and reads the changelog.
    let (b, _events_b, counts_b) = one_partition_app(&registry, "b");
    let wb = start(&b).await;
    assert!(b.assignment().is_empty());
    let map = b
        .cluster_map_when(|m| {
            m.worker("b")
                .is_some_and(|w| w.standbys.get("counts") == Some(&vec![0]))
                && m.table_owner("counts", 0).is_some_and(|w| w.id == "a")
        })
        .await;
    assert_eq!(map.workers().len(), 2);
    eventually("B's standby to catch up", || {
        let end = b_broker.end_offset(&changelog);
        end > 0 && b.monitor().snapshot().standby_records == end as u64
    })
    .await;

    // A keeps writing (20 keys changed: 20 changelog records at its next
    // commit); the standby keeps up.
    send(&a, &events, 100, &mut expected).await;
    eventually("B's standby to keep up", || {
        b_broker.end_offset(&changelog) == 40 && b.monitor().snapshot().standby_records == 40
    })
    .await;
    assert_eq!(b.monitor().snapshot().recovered_records, 0);

    // A processes more and leaves at once: its last commit writes 20 more
    // records, more than the standby reads before B takes over. B replays
    // exactly the records its standby had not read.
    send(&a, &events, 50, &mut expected).await;
    wa.stop().await.unwrap();
    eventually("B to serve the partition", || {
        counts_b.active_partitions() == vec![0]
    })
    .await;
    let end = b_broker.end_offset(&changelog) as u64;
    assert_eq!(end, 60);
    let snap = b.monitor().snapshot();
    assert!(snap.standby_records >= 40, "{snap:?}");
    assert_eq!(
        snap.recovered_records,
        end - snap.standby_records,
        "the takeover replays exactly the records after the standby's position"
    );
    assert!(snap.recovered_records > 0, "a tail was left: {snap:?}");
    let fig = &b.monitor().recovery_progress()[0];
    assert_eq!(
        (fig.total, fig.done),
        (snap.recovered_records, snap.recovered_records)
    );
    for (k, v) in &expected {
        assert_eq!(counts_b.get(k).await.unwrap(), Some(*v), "{k}");
    }

    // B counts on from there.
    send(&b, &events, 20, &mut expected).await;
    assert_eq!(
        counts_b.get(&"user-3".to_string()).await.unwrap(),
        expected.get("user-3").copied()
    );
    // Alone, B holds no standbys.
    b.cluster_map_when(|m| m.workers().len() == 1 && m.workers()[0].standbys.is_empty())
        .await;
    wb.stop().await.unwrap();
}
