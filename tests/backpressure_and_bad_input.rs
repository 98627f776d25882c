//! Backpressure (bounded stream buffers, paused partitions) and bad input
//! (undecodable messages, failing and panicking agents).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use faustus::transport::Record;
use faustus::{Error, TopicPartition};
use parking_lot::Mutex;
use support::*;

/// An app whose streams buffer 10 events, with a 2-partition topic `numbers`.
fn small_buffer_app(id: &str) -> (App, Topic<String, u64>) {
    let name = unique(id);
    let app = app_on(&name, id)
        .stream_buffer_maxsize(10usize)
        .build()
        .unwrap();
    let numbers = app
        .topic::<String, u64>("numbers")
        .partitions(2)
        .build()
        .unwrap();
    (app, numbers)
}

#[tokio::test(start_paused = true)]
async fn a_slow_agent_pauses_intake_instead_of_buffering_or_dropping() {
    let (app, numbers) = small_buffer_app("backpressure");
    let seen = Arc::new(Mutex::new(Vec::new()));
    app.agent::<String, u64>("slow")
        .on(&numbers)
        .build({
            let seen = seen.clone();
            move |s| {
                let seen = seen.clone();
                async move {
                    let mut items = s.items();
                    while let Some((k, v)) = items.next().await {
                        // Slow enough that its buffer stays full for longer
                        // than the conductor waits before pausing.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        seen.lock().push((k.unwrap_or_default(), v));
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    // A fast producer: 2000 messages, far more than the buffer holds.
    for i in 0..2000u64 {
        numbers.send(format!("key-{}", i % 7), i).await.unwrap();
    }
    eventually("every message processed", || seen.lock().len() == 2000).await;
    worker.stop().await.unwrap();

    for (topic, peak) in app.stream_buffer_peaks() {
        assert!(
            peak <= 10,
            "buffer of {topic} held {peak} > stream_buffer_maxsize"
        );
    }
    assert!(
        app.monitor().snapshot().partitions_paused > 0,
        "the full buffer paused partitions"
    );
    // Nothing dropped or duplicated; per key (so per partition) in order.
    let seen = seen.lock();
    let mut values: Vec<u64> = seen.iter().map(|(_, v)| *v).collect();
    values.sort_unstable();
    assert_eq!(values, (0..2000).collect::<Vec<_>>());
    for k in 0..7 {
        let key = format!("key-{k}");
        let per_key: Vec<u64> = seen
            .iter()
            .filter(|(kk, _)| *kk == key)
            .map(|(_, v)| *v)
            .collect();
        assert!(
            per_key.windows(2).all(|w| w[0] < w[1]),
            "order kept for {key}"
        );
    }
}

/// A stream that is full only for a moment is waited for, not paused:
/// pausing makes librdkafka drop and fetch again what it had prefetched.
#[tokio::test(start_paused = true)]
async fn a_burst_a_stream_soon_takes_pauses_nothing() {
    let (app, numbers) = small_buffer_app("burst");
    let seen = Arc::new(Mutex::new(Vec::new()));
    app.agent::<String, u64>("quick")
        .on(&numbers)
        .build({
            let seen = seen.clone();
            move |mut s| {
                let seen = seen.clone();
                async move {
                    while let Some(v) = s.next().await {
                        // Quick, but it lets the conductor run in between.
                        tokio::task::yield_now().await;
                        seen.lock().push(v);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    for i in 0..2000u64 {
        numbers.send(format!("key-{}", i % 7), i).await.unwrap();
    }
    eventually("every message processed", || seen.lock().len() == 2000).await;
    worker.stop().await.unwrap();
    let peaks = app.stream_buffer_peaks();
    assert!(
        peaks.iter().any(|(_, peak)| *peak == 10),
        "the buffer was full at times: {peaks:?}"
    );
    assert_eq!(app.monitor().snapshot().partitions_paused, 0);
    let mut values = seen.lock().clone();
    values.sort_unstable();
    assert_eq!(values, (0..2000).collect::<Vec<_>>());
}

/// A stream that stays full holds up the other topics only until its
/// partitions are paused (half a second); then they flow again.
#[tokio::test(start_paused = true)]
async fn a_stuck_stream_is_paused_and_other_topics_go_on() {
    let name = unique("stuck");
    let app = app_on(&name, "stuck")
        .stream_buffer_maxsize(10usize)
        .build()
        .unwrap();
    let slow = app
        .topic::<String, u64>("slow")
        .partitions(1)
        .build()
        .unwrap();
    let fast = app
        .topic::<String, u64>("fast")
        .partitions(1)
        .build()
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let slow_seen = Arc::new(AtomicU64::new(0));
    app.agent::<String, u64>("stuck")
        .on(&slow)
        .build({
            let (gate, seen) = (gate.clone(), slow_seen.clone());
            move |mut s| {
                let (gate, seen) = (gate.clone(), seen.clone());
                async move {
                    while s.next().await.is_some() {
                        // Held until the test opens the gate.
                        gate.acquire().await.map(|p| p.forget()).ok();
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let fast_seen = count_events(&app, "free", &fast);
    let worker = start(&app).await;
    // More than the stuck stream's buffer and a poll batch hold.
    for i in 0..1000u64 {
        slow.send("k".to_string(), i).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..1000u64 {
        fast.send("k".to_string(), i).await.unwrap();
    }
    eventually("the other topic processed", || {
        fast_seen.load(Ordering::SeqCst) == 1000
    })
    .await;
    assert!(slow_seen.load(Ordering::SeqCst) < 1000);
    assert!(
        app.monitor().snapshot().partitions_paused > 0,
        "the stuck stream's partition was paused"
    );
    gate.add_permits(1000);
    eventually("the stuck stream finished", || {
        slow_seen.load(Ordering::SeqCst) == 1000
    })
    .await;
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn undecodable_messages_are_reported_with_coordinates_and_skipped() {
    let name = unique("decode");
    let reported: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = app_on(&name, "decode")
        .on_decode_error({
            let reported = reported.clone();
            move |e| {
                if let Error::Decode { at, .. } = e {
                    reported.lock().push(at.to_string());
                }
            }
        })
        .build()
        .unwrap();
    let numbers = app
        .topic::<String, u64>("numbers")
        .partitions(1)
        .build()
        .unwrap();
    let sum = Arc::new(AtomicU64::new(0));
    app.agent::<String, u64>("sum")
        .on(&numbers)
        .build({
            let sum = sum.clone();
            move |mut s| {
                let sum = sum.clone();
                async move {
                    while let Some(v) = s.next().await {
                        sum.fetch_add(v, Ordering::SeqCst);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    numbers.send("a".into(), 1).await.unwrap();
    let producer = app.producer().await.unwrap();
    producer
        .send(Record::new("numbers", None, Some("not json".into())))
        .await
        .unwrap()
        .await
        .unwrap();
    producer
        .send(Record::new(
            "numbers",
            Some("\u{0}bad key".into()),
            Some("5".into()),
        ))
        .await
        .unwrap()
        .await
        .unwrap();
    let last = numbers.send("a".into(), 2).await.unwrap().await.unwrap();
    app.processed(&TopicPartition::new("numbers", 0), last.offset)
        .await;
    assert_eq!(
        sum.load(Ordering::SeqCst),
        3,
        "later messages were processed"
    );
    assert_eq!(
        *reported.lock(),
        vec!["numbers[0]@1".to_string(), "numbers[0]@2".to_string()]
    );
    assert_eq!(app.monitor().snapshot().decode_errors, 2);
    worker.stop().await.unwrap();
    assert_eq!(
        broker(&name).committed("decode", &TopicPartition::new("numbers", 0)),
        Some(4),
        "bad messages are acked, so the commit passes them"
    );
}

#[tokio::test(start_paused = true)]
async fn failing_and_panicking_agents_are_logged_acked_and_restarted() {
    let name = unique("agent-errors");
    let app = app_on(&name, "agent-errors").build().unwrap();
    let numbers = app
        .topic::<String, u64>("numbers")
        .partitions(1)
        .build()
        .unwrap();
    let processed = Arc::new(Mutex::new(Vec::new()));
    app.agent::<String, u64>("picky")
        .on(&numbers)
        .build({
            let processed = processed.clone();
            move |mut s| {
                let processed = processed.clone();
                async move {
                    while let Some(v) = s.next().await {
                        if v == 13 {
                            return Err(Error::other(format!("unlucky {v}")));
                        }
                        if v == 7 {
                            panic!("seven is a panic");
                        }
                        processed.lock().push(v);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    let mut last = None;
    for v in [1, 13, 2, 7, 3] {
        last = Some(numbers.send("k".into(), v).await.unwrap().await.unwrap());
    }
    let last = last.unwrap();
    app.processed(&TopicPartition::new("numbers", 0), last.offset)
        .await;
    assert_eq!(*processed.lock(), vec![1, 2, 3]);
    let failures = app.monitor().failures();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].event, "numbers[0]@1");
    assert!(failures[0].message.contains("unlucky 13"));
    assert!(!failures[0].panicked);
    assert_eq!(failures[1].event, "numbers[0]@3");
    assert!(failures[1].panicked && failures[1].message.contains("seven"));
    worker.stop().await.unwrap();
    assert_eq!(
        broker(&name).committed("agent-errors", &TopicPartition::new("numbers", 0)),
        Some(5)
    );
}
