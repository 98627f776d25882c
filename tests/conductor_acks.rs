//! Acks and commits across several streams on one topic, and shutdown.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use faustus::TopicPartition;
use support::*;
use tokio::sync::Semaphore;

#[tokio::test(start_paused = true)]
async fn offset_is_committed_only_after_both_agents_acked() {
    let name = unique("two-agents");
    let app = app_on(&name, "two-agents").build().unwrap();
    let orders = app
        .topic::<String, u64>("orders")
        .partitions(1)
        .build()
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));

    let fast_seen = count_events(&app, "fast", &orders);
    app.agent::<String, u64>("slow")
        .on(&orders)
        .build({
            let gate = gate.clone();
            move |mut s| {
                let gate = gate.clone();
                async move {
                    while s.next().await.is_some() {
                        gate.acquire().await.expect("gate open").forget();
                    }
                    Ok(())
                }
            }
        })
        .unwrap();

    let worker = start(&app).await;
    for i in 0..3 {
        orders.send("k".into(), i).await.unwrap();
    }
    eventually("fast agent saw all", || {
        fast_seen.load(Ordering::SeqCst) == 3
    })
    .await;
    let b = broker(&name);
    let tp = TopicPartition::new("orders", 0);
    // Several commit intervals pass: the slow agent still holds offset 0.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.committed("two-agents", &tp), None);

    gate.add_permits(1); // slow finishes offset 0 and takes offset 1
    eventually("commit of offset 0", || {
        b.committed("two-agents", &tp) == Some(1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.committed("two-agents", &tp),
        Some(1),
        "never past an unacked message"
    );

    gate.add_permits(2);
    eventually("commit of everything", || {
        b.committed("two-agents", &tp) == Some(3)
    })
    .await;
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_finishes_the_event_in_hand_and_commits_exactly_what_was_processed() {
    let name = unique("shutdown");
    let app = app_on(&name, "shutdown")
        .broker_commit_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let jobs = app
        .topic::<String, u64>("jobs")
        .partitions(1)
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    app.agent::<String, u64>("worker")
        .on(&jobs)
        .build({
            let (done, started) = (done.clone(), started.clone());
            move |mut s| {
                let (done, started) = (done.clone(), started.clone());
                async move {
                    while s.next().await.is_some() {
                        started.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    for i in 0..100 {
        jobs.send("k".into(), i).await.unwrap();
    }
    eventually("ten jobs started", || started.load(Ordering::SeqCst) >= 10).await;
    // Stop while an event is in hand (its 50 ms sleep is running).
    worker.stop().await.unwrap();
    let processed = done.load(Ordering::SeqCst);
    assert_eq!(
        processed,
        started.load(Ordering::SeqCst),
        "the event in hand finished"
    );
    assert!(processed < 100, "intake stopped: {processed}");
    let committed = broker(&name).committed("shutdown", &TopicPartition::new("jobs", 0));
    assert_eq!(
        committed,
        Some(processed as i64),
        "final commit covers exactly what was processed"
    );

    // A restarted worker resumes right after it and processes the rest once.
    let again = start(&app).await;
    eventually("the rest processed", || done.load(Ordering::SeqCst) == 100).await;
    again.stop().await.unwrap();
    assert_eq!(
        started.load(Ordering::SeqCst),
        100,
        "nothing processed twice"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stuck_agent_is_reported_after_the_livelock_soft_timeout() {
    let name = unique("livelock");
    let app = app_on(&name, "livelock")
        .broker_commit_livelock_soft_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let jobs = app
        .topic::<String, u64>("jobs")
        .partitions(1)
        .build()
        .unwrap();
    app.agent::<String, u64>("stuck")
        .on(&jobs)
        .build(|mut s| async move {
            while s.next().await.is_some() {
                std::future::pending::<()>().await;
            }
            Ok(())
        })
        .unwrap();
    let worker = start(&app).await;
    jobs.send("k".into(), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.monitor().snapshot().livelock_warnings,
        0,
        "not before the timeout"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.monitor().snapshot().livelock_warnings,
        1,
        "once, not every interval"
    );
    worker.request_stop();
}

#[tokio::test(start_paused = true)]
async fn app_stream_iterates_any_iterator_with_processors_in_order() {
    let app = app_on(&unique("iter"), "iter").build().unwrap();
    let out: Vec<u64> = app
        .stream_iter(vec![1u64, 2, 3])
        .processor(|v| v * 10)
        .async_processor(|v| async move { v + 1 })
        .collect()
        .await;
    assert_eq!(out, vec![11, 21, 31]);
}
