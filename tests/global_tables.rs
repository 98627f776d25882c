//! Global tables: every worker holds every partition, kept current from the
//! changelog, on two and three workers of one app (named memory broker).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use faustus::prelude::*;
use support::*;

/// `prices` (4 partitions) → `latest` global table (last price per symbol).
fn prices_app(broker_name: &str) -> (App, Topic<String, u64>, Table<String, u64>) {
    prices_app_on(broker_name, "memory://")
}

/// [`prices_app`] with its tables in `store`.
fn prices_app_on(broker_name: &str, store: &str) -> (App, Topic<String, u64>, Table<String, u64>) {
    let app = app_on(broker_name, "globals")
        .topic_partitions(4u32)
        .store(store)
        .build()
        .unwrap();
    let prices = app.topic::<String, u64>("prices").build().unwrap();
    let latest = app.global_table::<String, u64>("latest").build().unwrap();
    app.agent::<String, u64>("track")
        .on(&prices)
        .build({
            let latest = latest.clone();
            move |s| {
                let latest = latest.clone();
                async move {
                    let mut items = s.items();
                    while let Some((symbol, price)) = items.next().await {
                        latest.set(symbol.unwrap_or_default(), price).await?;
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    (app, prices, latest)
}

/// Whether `table` holds exactly `expected` (read key by key and in full).
async fn holds(table: &Table<String, u64>, expected: &BTreeMap<String, u64>) -> bool {
    for (k, v) in expected {
        if table.get(k).await.unwrap() != Some(*v) {
            return false;
        }
    }
    let items: BTreeMap<String, u64> = table.items().await.unwrap().into_iter().collect();
    items == *expected
}

async fn eventually_holds(
    what: &str,
    table: &Table<String, u64>,
    expected: &BTreeMap<String, u64>,
) {
    for _ in 0..2_000 {
        if holds(table, expected).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(start_paused = true)]
async fn every_worker_holds_the_whole_table_without_rebalancing_in_a_loop() {
    let name = unique("globals");
    let (app1, prices, latest1) = prices_app(&name);
    let w1 = start(&app1).await;
    let (app2, _p2, latest2) = prices_app(&name);
    let w2 = start(&app2).await;
    settle_two(&name, &app1, &app2).await;
    assert_eq!(latest1.active_partitions(), vec![0, 1, 2, 3]);
    assert_eq!(latest2.active_partitions(), vec![0, 1, 2, 3]);

    let mut expected = BTreeMap::new();
    for round in 1..=2u64 {
        for i in 0..40 {
            let symbol = format!("SYM{i}");
            prices.send(symbol.clone(), round * 100 + i).await.unwrap();
            expected.insert(symbol, round * 100 + i);
        }
    }
    // Each worker processed half of the partitions; both hold everything.
    eventually_holds("worker 1 to hold every price", &latest1, &expected).await;
    eventually_holds("worker 2 to hold every price", &latest2, &expected).await;

    // A write outside a stream on one worker reaches the other.
    latest1.set("OUTSIDE".into(), 7).await.unwrap();
    expected.insert("OUTSIDE".into(), 7);
    eventually_holds("worker 2 to see worker 1's write", &latest2, &expected).await;

    // No recovery loop: the group stays as it is.
    let r1 = app1.monitor().snapshot().rebalances;
    let r2 = app2.monitor().snapshot().rebalances;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(app1.monitor().snapshot().rebalances, r1);
    assert_eq!(app2.monitor().snapshot().rebalances, r2);
    assert!(!broker(&name).is_rebalancing("globals"));

    // A third worker is ready only once it holds the whole table.
    let (app3, _p3, latest3) = prices_app(&name);
    let w3 = start(&app3).await;
    assert!(
        holds(&latest3, &expected).await,
        "a new worker starts with every price"
    );
    for w in [w1, w2, w3] {
        w.stop().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_restarted_worker_reads_only_the_tail_from_its_durable_store() {
    let name = unique("globals-restart");
    let dir = std::env::temp_dir().join(unique("globals-redb"));
    let (app, _prices, latest) = prices_app_on(&name, &format!("redb://{}", dir.display()));
    let w = start(&app).await;
    let mut expected = BTreeMap::new();
    for i in 0..10u64 {
        latest.set(format!("K{i}"), i).await.unwrap();
        expected.insert(format!("K{i}"), i);
    }
    // Let a commit send the changelog and the reader store it with offsets.
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.stop().await.unwrap();

    // Meanwhile another worker (memory store) writes 5 more.
    let (other, _p, latest_other) = prices_app(&name);
    let wo = start(&other).await;
    for i in 10..15u64 {
        latest_other.set(format!("K{i}"), i).await.unwrap();
        expected.insert(format!("K{i}"), i);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    wo.stop().await.unwrap();

    // A new worker on the same files (the stopped one let go of them)
    // reads only those 5 and holds all 15 when ready.
    let (app, _prices, latest) = prices_app_on(&name, &format!("redb://{}", dir.display()));
    let w = start(&app).await;
    assert!(holds(&latest, &expected).await);
    assert_eq!(app.monitor().snapshot().recovered_records, 5);
    w.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
