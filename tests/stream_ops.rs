//! Stream operators (group_by, through, take, enumerate, filter, echo,
//! combining, noack) on the memory transport, on virtual time.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use faustus::{field, Error, GroupBy, TopicPartition};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use support::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    account_id: String,
    amount: i64,
}

fn order(a: &str, amount: i64) -> Order {
    Order {
        account_id: a.into(),
        amount,
    }
}

fn committed_sum(broker_name: &str, group: &str, topic: &str, partitions: u32) -> i64 {
    let b = broker(broker_name);
    (0..partitions)
        .filter_map(|p| b.committed(group, &TopicPartition::new(topic, p)))
        .sum()
}

type Seen = Arc<Mutex<Vec<(Option<String>, Order, u32)>>>;

/// An agent on `orders` (4 partitions) grouping by account: what it saw,
/// with the partition of the repartition topic each event came from.
fn group_by_app(name: &str, by: GroupBy<Order, String>) -> (App, Topic<String, Order>, Seen) {
    let app = app_on(name, "group").build().unwrap();
    let orders = app
        .topic::<String, Order>("orders")
        .partitions(4)
        .build()
        .unwrap();
    let seen: Seen = Default::default();
    let by = Arc::new(Mutex::new(Some(by)));
    app.agent::<String, Order>("process")
        .on(&orders)
        .build({
            let seen = seen.clone();
            move |stream| {
                let seen = seen.clone();
                // Built once: a restarted agent repartitions by the same key.
                let by = by.lock().take();
                async move {
                    let by = by.unwrap_or_else(|| field!(Order, account_id));
                    let mut items = stream.group_by(by)?.items();
                    while let Some((key, order)) = items.next().await {
                        let p = faustus::event::current_partition().unwrap();
                        seen.lock().push((key, order, p));
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    (app, orders, seen)
}

#[tokio::test(start_paused = true)]
async fn group_by_field_repartitions_by_the_new_key_and_acks_originals_after_the_forward() {
    let name = unique("group-by");
    let (app, orders, seen) = group_by_app(&name, field!(Order, account_id));
    let worker = start(&app).await;
    // Sent with keys that scatter one account over several partitions.
    for i in 0..40i64 {
        let account = ["alice", "bob", "carol"][(i % 3) as usize];
        orders
            .send(format!("order-{i}"), order(account, i))
            .await
            .unwrap();
    }
    eventually("all 40 repartitioned", || seen.lock().len() == 40).await;
    let repartition = "process-orders-account_id-repartition";
    assert!(broker(&name).topics().contains(&repartition.to_string()));
    // Each account arrives on one partition of the repartition topic, keyed by it.
    let seen = seen.lock().clone();
    let mut by_account: BTreeMap<String, (Vec<i64>, Vec<u32>)> = BTreeMap::new();
    for (key, o, p) in &seen {
        assert_eq!(key.as_deref(), Some(o.account_id.as_str()));
        let e = by_account.entry(o.account_id.clone()).or_default();
        e.0.push(o.amount);
        e.1.push(*p);
    }
    for (i, (account, (mut amounts, parts))) in by_account.into_iter().enumerate() {
        amounts.sort();
        let expected: Vec<i64> = (0..40).filter(|n| n % 3 == i as i64).collect();
        assert_eq!(amounts, expected, "{account}: each order once");
        assert!(
            parts.windows(2).all(|w| w[0] == w[1]),
            "{account} on one partition"
        );
    }
    // The originals and the repartitioned copies are all committed.
    eventually("originals committed", || {
        committed_sum(&name, "group", "orders", 4) == 40
    })
    .await;
    eventually("copies committed", || {
        let n = broker(&name).partition_count(repartition).unwrap();
        committed_sum(&name, "group", repartition, n) == 40
    })
    .await;
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failing_group_by_key_is_reported_with_coordinates_acked_and_the_worker_goes_on() {
    let name = unique("group-by-bad");
    let by = GroupBy::new("account", |o: &Order| {
        if o.amount < 0 {
            Err(Error::State(format!("negative amount {}", o.amount)))
        } else {
            Ok(o.account_id.clone())
        }
    })
    .partitions(2);
    let (app, orders, seen) = group_by_app(&name, by);
    let worker = start(&app).await;
    orders.send("k".into(), order("alice", 1)).await.unwrap();
    let bad = orders
        .send("k".into(), order("alice", -5))
        .await
        .unwrap()
        .await
        .unwrap();
    orders.send("k".into(), order("alice", 2)).await.unwrap();
    eventually("good ones processed", || seen.lock().len() == 2).await;
    let failures = app.monitor().failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        failures[0].event,
        format!("orders[{}]@{}", bad.partition, bad.offset)
    );
    assert!(failures[0].message.contains("negative amount -5"));
    assert_eq!(failures[0].agent, "process");
    // The bad event is acked: everything is committed.
    eventually("committed", || {
        committed_sum(&name, "group", "orders", 4) == 3
    })
    .await;
    assert_eq!(
        broker(&name).partition_count("process-orders-account-repartition"),
        Some(2)
    );
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn through_then_group_by_then_items_compose_in_the_guides_order() {
    let name = unique("through");
    let app = app_on(&name, "through").build().unwrap();
    let source = app.topic::<String, Order>("source").build().unwrap();
    type Got = Arc<Mutex<Vec<(Option<String>, Order)>>>;
    let got: Got = Default::default();
    app.agent::<String, Order>("chain")
        .on(&source)
        .build({
            let got = got.clone();
            move |stream| {
                let got = got.clone();
                async move {
                    let mut items = stream
                        .filter(|o| o.amount != 0)
                        .through("foo")?
                        .group_by(field!(Order, account_id))?
                        .items();
                    while let Some(kv) = items.next().await {
                        got.lock().push(kv);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    for (i, a) in ["x", "y", "x"].iter().enumerate() {
        source
            .send(format!("k{i}"), order(a, i as i64 + 1))
            .await
            .unwrap();
    }
    // Filtered out, but acked (committed) all the same.
    source.send("zero".into(), order("x", 0)).await.unwrap();
    eventually("three through foo", || got.lock().len() == 3).await;
    let b = broker(&name);
    // `foo` got the copies with their original keys.
    let foo: Vec<String> = (0..b.partition_count("foo").unwrap())
        .flat_map(|p| b.messages("foo", p))
        .map(|m| String::from_utf8(m.key.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(foo.len(), 3);
    assert!(foo.contains(&"\"k0\"".to_string()), "{foo:?}");
    let mut keys: Vec<_> = got.lock().iter().map(|(k, _)| k.clone().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, vec!["x", "x", "y"]);
    eventually("source committed, filtered one included", || {
        committed_sum(&name, "through", "source", 8) == 4
    })
    .await;
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn take_batches_by_count_or_time_and_acks_a_batch_only_after_it_was_processed() {
    let name = unique("take");
    let app = app_on(&name, "take").build().unwrap();
    let nums = app.topic::<(), u32>("nums").partitions(1).build().unwrap();
    let batches: Arc<Mutex<Vec<Vec<u32>>>> = Default::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    app.agent::<(), u32>("batcher")
        .on(&nums)
        .build({
            let batches = batches.clone();
            let gate = gate.clone();
            move |stream| {
                let (batches, gate) = (batches.clone(), gate.clone());
                async move {
                    let mut b = stream.take(3, Duration::from_secs(10));
                    while let Some(batch) = b.next().await {
                        batches.lock().push(batch);
                        // "Processing" ends when the test lets it.
                        gate.acquire().await.unwrap().forget();
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    let tp = TopicPartition::new("nums", 0);
    for n in 1..=4 {
        nums.send_value(n).await.unwrap();
    }
    eventually("first batch", || batches.lock().len() == 1).await;
    assert_eq!(batches.lock()[0], vec![1, 2, 3]);
    // Held by the agent: not committed, however long we wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(broker(&name).committed("take", &tp), None);
    gate.add_permits(1);
    // The second batch has one value: it comes when `within` runs out.
    let began = tokio::time::Instant::now();
    eventually("second batch", || batches.lock().len() == 2).await;
    assert!(
        began.elapsed() >= Duration::from_secs(9),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(batches.lock()[1], vec![4]);
    eventually("first batch committed", || {
        broker(&name).committed("take", &tp) == Some(3)
    })
    .await;
    gate.add_permits(1);
    nums.send_value(5).await.unwrap();
    eventually("second batch committed", || {
        broker(&name).committed("take", &tp) == Some(4)
    })
    .await;
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn take_events_enumerate_and_merge_on_local_streams() {
    let app = faustus::app("local")
        .env(Default::default())
        .build()
        .unwrap();
    let numbered: Vec<(u64, char)> = app
        .stream_iter(['a', 'b', 'c'])
        .enumerate(10)
        .collect()
        .await;
    assert_eq!(numbered, vec![(10, 'a'), (11, 'b'), (12, 'c')]);

    let batches: Vec<Vec<u32>> = app
        .stream_iter(1..=5u32)
        .take_events(2, Duration::from_secs(1))
        .map(|events| events.iter().map(|e| e.value).collect())
        .collect()
        .await;
    assert_eq!(batches, vec![vec![1, 2], vec![3, 4], vec![5]]);

    let copies = app.channel::<u32>();
    let echoed: Vec<u32> = app
        .stream_iter([7u32, 8])
        .echo_channels(std::slice::from_ref(&copies))
        .collect()
        .await;
    assert_eq!(echoed, vec![7, 8]);
    assert_eq!(copies.len(), 2);

    let mut both: Vec<u32> = (app.stream_iter([1u32, 3]) & app.stream_iter([2u32, 4]))
        .collect()
        .await;
    both.sort();
    assert_eq!(both, vec![1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn merged_topic_streams_echo_and_noack() {
    let name = unique("echo");
    let app = app_on(&name, "echo").build().unwrap();
    let a = app.topic::<(), u32>("a").partitions(1).build().unwrap();
    let b = app.topic::<(), u32>("b").partitions(1).build().unwrap();
    let copy = app.topic::<(), u32>("copy").partitions(1).build().unwrap();
    let held: Arc<Mutex<Vec<faustus::Event<(), u32>>>> = Default::default();
    app.agent::<(), u32>("both")
        .on(&a)
        .build({
            let (b, copy, held) = (b.clone(), copy.clone(), held.clone());
            move |stream| {
                let (b, copy, held) = (b.clone(), copy.clone(), held.clone());
                async move {
                    let mut events = (stream & b.stream()).echo(&[copy]).noack();
                    while let Some(e) = events.next().await {
                        held.lock().push(e);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    a.send_value(1).await.unwrap();
    b.send_value(2).await.unwrap();
    a.send_value(3).await.unwrap();
    eventually("three held", || held.lock().len() == 3).await;
    let copied: Vec<u32> = broker(&name)
        .messages("copy", 0)
        .iter()
        .map(|m| serde_json::from_slice(m.value.as_ref().unwrap()).unwrap())
        .collect();
    let mut sorted = copied.clone();
    sorted.sort();
    assert_eq!(sorted, vec![1, 2, 3]);
    // noack: advancing did not ack; nothing is committed until we ack.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tpa = TopicPartition::new("a", 0);
    assert_eq!(broker(&name).committed("echo", &tpa), None);
    for e in held.lock().drain(..) {
        e.ack();
    }
    eventually("a committed", || {
        broker(&name).committed("echo", &tpa) == Some(2)
    })
    .await;
    worker.stop().await.unwrap();
}

/// Processors and filters added after iteration started apply from the next
/// value on (they used to be silently ignored); a value they filter out is
/// acked like any other, so the commit goes past it. `through` and
/// `group_by` then fail with an error naming them (they used to panic).
#[tokio::test(start_paused = true)]
async fn processors_added_while_iterating_apply_and_through_then_is_an_error() {
    let name = unique("late-ops");
    let app = app_on(&name, "late").build().unwrap();
    let nums = app.topic::<(), u32>("nums").partitions(1).build().unwrap();
    let seen: Arc<Mutex<Vec<u32>>> = Default::default();
    let late_through: Arc<Mutex<Option<String>>> = Default::default();
    app.agent::<(), u32>("late")
        .on(&nums)
        .build({
            let (seen, late_through) = (seen.clone(), late_through.clone());
            move |mut stream| {
                let (seen, late_through) = (seen.clone(), late_through.clone());
                async move {
                    let first = stream.next().await;
                    seen.lock().extend(first);
                    let mut stream = stream.processor(|n| n * 10).filter(|n| *n != 30);
                    while let Some(n) = stream.next().await {
                        seen.lock().push(n);
                        if n == 40 {
                            break;
                        }
                    }
                    let err = stream.through("elsewhere").unwrap_err();
                    *late_through.lock() = Some(err.to_string());
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    for n in 1..=4 {
        nums.send_value(n).await.unwrap();
    }
    eventually("4 processed", || seen.lock().contains(&40)).await;
    assert_eq!(*seen.lock(), vec![1, 20, 40]);
    let err = late_through.lock().clone().unwrap();
    assert!(err.contains("through()"), "{err}");
    eventually("all committed", || {
        broker(&name).committed("late", &TopicPartition::new("nums", 0)) == Some(4)
    })
    .await;
    worker.stop().await.unwrap();
}
