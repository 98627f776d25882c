//! Agent options: on_error (retry, skip, stop), dead letters, restart limit,
//! concurrency, yielding agents with sinks, isolated partitions.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::agent::dead_letter_headers as h;
use faustus::prelude::*;
use faustus::{OnError, TopicPartition};
use parking_lot::Mutex;
use support::*;

/// An agent on `nums` (1 partition) that fails on 13 and records what it saw.
fn failing_agent(
    name: &str,
    configure: impl FnOnce(faustus::AgentBuilder<(), u32>) -> faustus::AgentBuilder<(), u32>,
) -> (App, Topic<(), u32>, Arc<Mutex<Vec<u32>>>) {
    let app = app_on(name, "opts").build().unwrap();
    let nums = app.topic::<(), u32>("nums").partitions(1).build().unwrap();
    let seen: Arc<Mutex<Vec<u32>>> = Default::default();
    configure(app.agent::<(), u32>("picky").on(&nums))
        .build({
            let seen = seen.clone();
            move |mut stream| {
                let seen = seen.clone();
                async move {
                    while let Some(n) = stream.next().await {
                        seen.lock().push(n);
                        if n == 13 {
                            return Err(faustus::Error::State("unlucky".into()));
                        }
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    (app, nums, seen)
}

#[tokio::test(start_paused = true)]
async fn retried_then_skipped_to_the_dead_letter_topic_with_its_coordinates() {
    let name = unique("dlq");
    let (app, nums, seen) = failing_agent(&name, |a| {
        a.dead_letter(true).on_error(|e| {
            if e.attempts < 3 {
                OnError::Retry
            } else {
                OnError::Skip
            }
        })
    });
    let worker = start(&app).await;
    nums.send_value(1).await.unwrap();
    let bad = nums
        .send_with(None, 13, SendOptions::new().header("trace", "t-1"))
        .await
        .unwrap()
        .await
        .unwrap();
    nums.send_value(2).await.unwrap();
    eventually("2 processed", || seen.lock().contains(&2)).await;
    assert_eq!(*seen.lock(), vec![1, 13, 13, 13, 2]);
    let dlq = broker(&name).messages("opts-picky-dead-letter", 0);
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        app.monitor().snapshot().dead_letters,
        1,
        "counted for /metrics"
    );
    let m = &dlq[0];
    assert_eq!(m.value.as_deref(), Some(&b"13"[..]));
    let header = |k: &str| {
        m.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
    };
    assert_eq!(header("trace").as_deref(), Some("t-1"));
    assert!(header(h::ERROR).unwrap().contains("unlucky"));
    assert_eq!(header(h::TOPIC).as_deref(), Some("nums"));
    assert_eq!(header(h::PARTITION).unwrap(), bad.partition.to_string());
    assert_eq!(header(h::OFFSET).unwrap(), bad.offset.to_string());
    assert_eq!(header(h::AGENT).as_deref(), Some("picky"));
    let failures = app.monitor().failures();
    assert_eq!(failures.len(), 3);
    assert!(
        failures.iter().all(|f| f.event == "nums[0]@1"),
        "{failures:?}"
    );
    let tp = TopicPartition::new("nums", 0);
    eventually("all committed", || {
        broker(&name).committed("opts", &tp) == Some(3)
    })
    .await;
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn on_error_stop_gives_the_event_back_and_stops_the_agent() {
    let name = unique("stop");
    let (app, nums, seen) = failing_agent(&name, |a| a.on_error(|_| OnError::Stop));
    let worker = start(&app).await;
    nums.send_value(1).await.unwrap();
    nums.send_value(13).await.unwrap();
    nums.send_value(2).await.unwrap();
    eventually("13 seen", || seen.lock().contains(&13)).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(*seen.lock(), vec![1, 13]);
    // Only what precedes the failed event is committed.
    let tp = TopicPartition::new("nums", 0);
    assert_eq!(broker(&name).committed("opts", &tp), Some(1));
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn restart_limit_stops_an_agent_that_keeps_failing() {
    let name = unique("limit");
    let (app, nums, seen) = failing_agent(&name, |a| {
        a.restart_limit(2, Duration::from_secs(60))
            .on_error(|_| OnError::Retry)
    });
    let worker = start(&app).await;
    nums.send_value(13).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    // First run + 2 restarts, then it stops.
    assert_eq!(*seen.lock(), vec![13, 13, 13]);
    let failures = app.monitor().failures();
    assert!(failures
        .last()
        .unwrap()
        .message
        .contains("restarted more than 2 times"));
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn concurrent_instances_share_one_buffer_but_cannot_group_by_or_write_tables() {
    let name = unique("conc");
    let app = app_on(&name, "conc").build().unwrap();
    let jobs = app.topic::<(), u32>("jobs").partitions(1).build().unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    app.agent::<(), u32>("workers")
        .on(&jobs)
        .concurrency(3)
        .build({
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            move |mut stream| {
                let (in_flight, peak) = (in_flight.clone(), peak.clone());
                async move {
                    while let Some(_job) = stream.next().await {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let orders = app
        .topic::<(), u32>("orders")
        .partitions(1)
        .build()
        .unwrap();
    app.agent::<(), u32>("grouping")
        .on(&orders)
        .concurrency(2)
        .build(|stream| async move {
            let mut s = stream.group_by(faustus::GroupBy::new("n", |n: &u32| Ok(*n)))?;
            while s.next().await.is_some() {}
            Ok(())
        })
        .unwrap();
    let counts = app
        .table::<String, u64>("counts")
        .partitions(1)
        .with_default()
        .build()
        .unwrap();
    let writes = app
        .topic::<(), u32>("writes")
        .partitions(1)
        .build()
        .unwrap();
    app.agent::<(), u32>("writers")
        .on(&writes)
        .concurrency(2)
        .build(move |mut stream| {
            let counts = counts.clone();
            async move {
                while stream.next().await.is_some() {
                    counts.update(&"n".to_string(), |c| *c += 1).await?;
                }
                Ok(())
            }
        })
        .unwrap();
    let worker = start(&app).await;
    for n in 0..6 {
        jobs.send_value(n).await.unwrap();
    }
    let tp = TopicPartition::new("jobs", 0);
    eventually("jobs committed", || {
        broker(&name).committed("conc", &tp) == Some(6)
    })
    .await;
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    writes.send_value(1).await.unwrap();
    eventually("both refusals reported", || {
        let f = app.monitor().failures();
        f.iter().any(|f| {
            f.agent == "grouping"
                && f.message
                    .contains("group_by cannot be used in an agent with concurrency 2")
        }) && f.iter().any(|f| {
            f.agent == "writers"
                && f.message
                    .contains("cannot be written from an agent with concurrency 2")
        })
    })
    .await;
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn yielded_values_go_to_every_sink_and_a_failing_sink_is_a_failure_on_the_event() {
    let name = unique("sinks");
    let app = app_on(&name, "sinks").build().unwrap();
    let nums = app.topic::<(), u32>("nums").partitions(1).build().unwrap();
    let doubled = app
        .topic::<(), u32>("doubled")
        .partitions(1)
        .build()
        .unwrap();
    let relayed: Arc<Mutex<Vec<u32>>> = Default::default();
    let relay = app
        .agent::<(), u32>("relay")
        .build({
            let relayed = relayed.clone();
            move |mut s| {
                let relayed = relayed.clone();
                async move {
                    while let Some(n) = s.next().await {
                        relayed.lock().push(n);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let called: Arc<Mutex<Vec<u32>>> = Default::default();
    app.agent::<(), u32>("double")
        .on(&nums)
        .yields::<u32>()
        .sink_topic(&doubled)
        .sink_agent(&relay)
        .sink({
            let called = called.clone();
            move |n| {
                let called = called.clone();
                async move {
                    if n == 14 {
                        return Err(faustus::Error::State("sink refuses 14".into()));
                    }
                    called.lock().push(n);
                    Ok(())
                }
            }
        })
        .build(|s| s.map(|n| Ok(n * 2)))
        .unwrap();
    let worker = start(&app).await;
    for n in [1, 7, 2] {
        nums.send_value(n).await.unwrap();
    }
    eventually("relayed", || relayed.lock().len() == 3).await;
    eventually("callback", || called.lock().len() == 2).await;
    assert_eq!(*called.lock(), vec![2, 4]);
    assert_eq!(*relayed.lock(), vec![2, 14, 4]);
    let topic: Vec<Vec<u8>> = broker(&name)
        .messages("doubled", 0)
        .into_iter()
        .map(|m| m.value.unwrap().to_vec())
        .collect();
    assert_eq!(topic, vec![b"2".to_vec(), b"14".to_vec(), b"4".to_vec()]);
    let f = app.monitor().failures();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].event, "nums[0]@1");
    assert!(f[0].message.contains("sink refuses 14"));
    let tp = TopicPartition::new("nums", 0);
    eventually("committed", || {
        broker(&name).committed("sinks", &tp) == Some(3)
    })
    .await;
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn isolated_partitions_run_one_instance_per_partition_and_stop_on_revoke() {
    let name = unique("isolated");
    let build = |seen: Arc<Mutex<Vec<(usize, u32)>>>, live: Arc<AtomicUsize>| {
        let app = app_on(&name, "iso").build().unwrap();
        let topic = app
            .topic::<String, u32>("parts")
            .partitions(2)
            .build()
            .unwrap();
        let next_id = Arc::new(AtomicUsize::new(0));
        app.agent::<String, u32>("per-partition")
            .on(&topic)
            .isolated_partitions(true)
            .build(move |mut s| {
                let (seen, live) = (seen.clone(), live.clone());
                let id = next_id.fetch_add(1, Ordering::SeqCst);
                async move {
                    live.fetch_add(1, Ordering::SeqCst);
                    while s.next().await.is_some() {
                        let p = faustus::event::current_partition().unwrap();
                        seen.lock().push((id, p));
                    }
                    live.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .unwrap();
        (app, topic)
    };
    let seen: Arc<Mutex<Vec<(usize, u32)>>> = Default::default();
    let live = Arc::new(AtomicUsize::new(0));
    let (app, topic) = build(seen.clone(), live.clone());
    let w1 = start(&app).await;
    eventually("two instances", || live.load(Ordering::SeqCst) == 2).await;
    for i in 0..20 {
        topic
            .send_with(None, i, SendOptions::new().partition(i % 2))
            .await
            .unwrap();
    }
    eventually("all seen", || seen.lock().len() == 20).await;
    // Each instance saw exactly one partition.
    let mut by_instance: std::collections::BTreeMap<usize, BTreeSet<u32>> = Default::default();
    for (id, p) in seen.lock().iter() {
        by_instance.entry(*id).or_default().insert(*p);
    }
    assert_eq!(by_instance.len(), 2);
    assert!(by_instance.values().all(|ps| ps.len() == 1));
    // A second worker joins: one partition moves, its instance here stops.
    let seen2: Arc<Mutex<Vec<(usize, u32)>>> = Default::default();
    let live2 = Arc::new(AtomicUsize::new(0));
    let (app2, _) = build(seen2.clone(), live2.clone());
    let w2 = start(&app2).await;
    eventually("rebalanced", || {
        live.load(Ordering::SeqCst) == 1 && live2.load(Ordering::SeqCst) == 1
    })
    .await;
    w2.stop().await.unwrap();
    w1.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn group_by_in_an_agent_keeps_its_buffer_across_restarts() {
    // A failure after the repartition restarts the agent; the repartitioned
    // events still buffered are processed by the next run, none lost.
    let name = unique("gb-restart");
    let app = app_on(&name, "gbr").build().unwrap();
    let orders = app
        .topic::<String, u32>("ords")
        .partitions(1)
        .build()
        .unwrap();
    let seen: Arc<Mutex<Vec<u32>>> = Default::default();
    app.agent::<String, u32>("gb")
        .on(&orders)
        .build({
            let seen = seen.clone();
            move |stream| {
                let seen = seen.clone();
                async move {
                    let mut s = stream.group_by(
                        faustus::GroupBy::new("parity", |n: &u32| Ok(n % 2)).partitions(1),
                    )?;
                    while let Some(n) = s.next().await {
                        if n == 5 && !seen.lock().contains(&5) {
                            seen.lock().push(5);
                            return Err(faustus::Error::State("once".into()));
                        }
                        if n != 5 {
                            seen.lock().push(n);
                        }
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    for n in 0..10 {
        orders.send(format!("k{n}"), n).await.unwrap();
    }
    eventually("all but the failed one", || seen.lock().len() == 10).await;
    let mut got = seen.lock().clone();
    got.sort();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_isolated_instance_restarts_the_agent_and_nothing_is_lost() {
    let name = unique("isolated-fail");
    let app = app_on(&name, "isof")
        .stream_buffer_maxsize(4usize)
        .build()
        .unwrap();
    let topic = app.topic::<(), u32>("parts").partitions(2).build().unwrap();
    let seen: Arc<Mutex<BTreeSet<u32>>> = Default::default();
    let failed = Arc::new(AtomicUsize::new(0));
    app.agent::<(), u32>("iso")
        .on(&topic)
        .isolated_partitions(true)
        .build({
            let (seen, failed) = (seen.clone(), failed.clone());
            move |mut s| {
                let (seen, failed) = (seen.clone(), failed.clone());
                async move {
                    while let Some(n) = s.next().await {
                        if n == 3 && failed.fetch_add(1, Ordering::SeqCst) == 0 {
                            return Err(faustus::Error::State("first 3 fails".into()));
                        }
                        seen.lock().insert(n);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    for n in 0..60u32 {
        topic
            .send_with(None, n, SendOptions::new().partition(n % 2))
            .await
            .unwrap();
    }
    // 3 itself was acked on failure (skip, the default); everything else is processed.
    eventually("all others processed", || seen.lock().len() == 59).await;
    assert!(!seen.lock().contains(&3));
    assert_eq!(app.monitor().failures().len(), 1);
    let b = broker(&name);
    eventually("all committed", || {
        (0..2)
            .filter_map(|p| b.committed("isof", &TopicPartition::new("parts", p)))
            .sum::<i64>()
            == 60
    })
    .await;
    worker.stop().await.unwrap();
}

/// One isolated instance fails while another has an event in hand: the
/// failing event is the one dead-lettered, and the other instance's event is
/// given back and processed by the next run (it used to be overwritten in the
/// run's one slot by the aborted instance's, then released: never processed,
/// its partition's commit stuck behind it).
#[tokio::test(start_paused = true)]
async fn a_failing_isolated_instance_dead_letters_its_own_event_and_gives_the_others_back() {
    let name = unique("isolated-dlq");
    let app = app_on(&name, "isod").build().unwrap();
    let topic = app.topic::<(), u32>("parts").partitions(2).build().unwrap();
    let seen: Arc<Mutex<Vec<u32>>> = Default::default();
    let holding = Arc::new(tokio::sync::Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    app.agent::<(), u32>("iso")
        .on(&topic)
        .isolated_partitions(true)
        .dead_letter(true)
        .build({
            let (seen, holding, runs) = (seen.clone(), holding.clone(), runs.clone());
            move |mut s| {
                let (seen, holding, runs) = (seen.clone(), holding.clone(), runs.clone());
                async move {
                    while let Some(n) = s.next().await {
                        match n {
                            // Partition 1's first run holds 1 until partition 0 fails.
                            1 if runs.fetch_add(1, Ordering::SeqCst) == 0 => {
                                holding.notify_one();
                                std::future::pending::<()>().await;
                            }
                            0 => {
                                holding.notified().await;
                                return Err(faustus::Error::State("zero fails".into()));
                            }
                            _ => seen.lock().push(n),
                        }
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    topic
        .send_with(None, 1, SendOptions::new().partition(1))
        .await
        .unwrap();
    topic
        .send_with(None, 0, SendOptions::new().partition(0))
        .await
        .unwrap();
    eventually("1 processed by the next run", || seen.lock().contains(&1)).await;
    let dlq = broker(&name).messages("isod-iso-dead-letter", 0);
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].value.as_deref(), Some(&b"0"[..]));
    let b = broker(&name);
    eventually("both committed", || {
        (0..2)
            .filter_map(|p| b.committed("isod", &TopicPartition::new("parts", p)))
            .sum::<i64>()
            == 2
    })
    .await;
    worker.stop().await.unwrap();
}
