//! The cluster map: every worker publishes what it holds and reads what the others hold.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use faustus::prelude::*;
use faustus::ClusterMap;
use support::*;

/// The counting app: `events` (4 partitions) → `count` agent → `counts` table.
fn counting_app(broker_name: &str, worker: &str) -> (App, Topic<String, u64>, Table<String, u64>) {
    let app = app_on(broker_name, "mapped")
        .topic_partitions(4u32)
        .canonical_url(format!("http://{worker}.example:6066"))
        .build()
        .unwrap();
    app.set_worker_id(worker).unwrap();
    let (events, counts) = counting(&app);
    (app, events, counts)
}

/// Every partition of `counts` and `events` has exactly the owner `app` itself reports.
fn owners_agree(map: &ClusterMap, apps: &[&App]) -> bool {
    let mut seen = BTreeSet::new();
    for app in apps {
        let id = app.worker_id();
        for tp in app.assignment() {
            if map
                .topic_owner(&tp.topic, tp.partition)
                .map(|w| w.id.as_str())
                != Some(&id)
            {
                return false;
            }
            if map
                .table_owner("counts", tp.partition)
                .map(|w| w.id.as_str())
                != Some(&id)
            {
                return false;
            }
            seen.insert(tp.partition);
        }
    }
    seen.len() == 4
}

#[tokio::test(start_paused = true)]
async fn each_worker_sees_both_and_ownership_follows_join_and_leave() {
    let name = unique("cluster");
    let (a, _events, _) = counting_app(&name, "worker-a");
    let wa = start(&a).await;
    let map = a
        .cluster_map_when(|m| m.workers().len() == 1 && owners_agree(m, &[&a]))
        .await;
    let me = map.worker("worker-a").unwrap();
    assert_eq!(me.url, "http://worker-a.example:6066");
    assert_eq!(me.tables["counts"], vec![0, 1, 2, 3]);
    assert!(me.standbys.is_empty(), "no standby without a second worker");

    // B joins: after the rebalance both see both, with the same owners.
    let (b, _events_b, _) = counting_app(&name, "worker-b");
    let wb = start(&b).await;
    let settled = |m: &ClusterMap| m.workers().len() == 2 && owners_agree(m, &[&a, &b]);
    let map_a = a.cluster_map_when(settled).await;
    let map_b = b.cluster_map_when(settled).await;
    for map in [&map_a, &map_b] {
        let ids: Vec<&str> = map.workers().iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["worker-a", "worker-b"]);
        assert_eq!(
            map.worker("worker-b").unwrap().url,
            "http://worker-b.example:6066"
        );
    }
    assert!(!a.assignment().is_empty() && !b.assignment().is_empty());
    // Standbys (one replica by default): each holds the other's partitions.
    let map = a
        .cluster_map_when(|m| {
            settled(m)
                && m.workers().iter().all(|w| {
                    let other = if w.id == "worker-a" { &b } else { &a };
                    let theirs: Vec<u32> =
                        other.assignment().iter().map(|tp| tp.partition).collect();
                    w.standbys.get("counts").cloned().unwrap_or_default() == theirs
                })
        })
        .await;
    assert_eq!(map.standby_holders("counts", 4, 1).len(), 4);

    // A leaves gracefully: its tombstone removes it; B owns everything.
    wa.stop().await.unwrap();
    let map = b
        .cluster_map_when(|m| m.workers().len() == 1 && owners_agree(m, &[&b]))
        .await;
    assert_eq!(map.workers()[0].id, "worker-b");
    assert!(map.workers()[0].standbys.is_empty());
    wb.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_crashed_worker_expires_after_three_heartbeats_of_a_live_one() {
    use faustus::transport::Record;
    let name = unique("ghost");
    let (a, _events, _) = counting_app(&name, "worker-a");
    // A worker that crashed long ago left its record (no tombstone).
    let producer = a.producer().await.unwrap();
    let ghost = serde_json::json!({
        "id": "ghost", "url": "http://ghost", "assigned": [["events", 0]],
        "tables": {"counts": [0]}, "standbys": {}, "beat": 7
    });
    a.transport()
        .await
        .unwrap()
        .create_topic(&faustus::transport::TopicSpec::new("mapped-__cluster", 1).compacted(true))
        .await
        .unwrap();
    let mut r = Record::new(
        "mapped-__cluster",
        Some("ghost".into()),
        Some(serde_json::to_vec(&ghost).unwrap().into()),
    );
    r.partition = Some(0);
    producer.send(r).await.unwrap().await.unwrap();

    let wa = start(&a).await;
    // The live worker's own record overrides the ghost's claim at once.
    let map = a
        .cluster_map_when(|m| m.worker("worker-a").is_some() && owners_agree(m, &[&a]))
        .await;
    assert!(map.worker("ghost").is_some());
    assert!(map.worker("ghost").unwrap().tables.is_empty());
    // After three heartbeats of worker-a the ghost is gone.
    tokio::time::sleep(faustus::cluster::HEARTBEAT * 2 + Duration::from_secs(1)).await;
    assert!(a.cluster_map().worker("ghost").is_some());
    tokio::time::sleep(faustus::cluster::HEARTBEAT).await;
    a.cluster_map_when(|m| m.worker("ghost").is_none()).await;
    wa.stop().await.unwrap();
}
