//! Memory-broker behaviour beyond the shared conformance suite: rebalance
//! timeouts on virtual time, wake-ups, cancel safety, fairness, errors.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use faustus_core::transport::{
    Consumer, ConsumerConfig, ConsumerEvent, Message, Producer, ProducerConfig, ReaderConfig,
    Record, TopicPartition, TopicSpec, Transport,
};
use faustus_core::DriverUrl;
use faustus_transport_memory::MemoryTransport;
use tokio::time::Instant;

fn tps(topic: &str, n: u32) -> Vec<TopicPartition> {
    (0..n).map(|p| TopicPartition::new(topic, p)).collect()
}

async fn fill(p: &Arc<dyn Producer>, topic: &str, partition: u32, n: usize) {
    for i in 0..n {
        let mut r = Record::new(topic, None, Some(Bytes::from(i.to_string())));
        r.partition = Some(partition);
        p.send(r).await.unwrap().await.unwrap();
    }
}

async fn setup(url: &str, topic: &str, partitions: u32) -> (MemoryTransport, Arc<dyn Producer>) {
    let t = MemoryTransport::from_url(&DriverUrl::parse("broker", url).unwrap()).unwrap();
    t.create_topic(&TopicSpec::new(topic, partitions))
        .await
        .unwrap();
    let p = t.producer(&ProducerConfig::new("p")).await.unwrap();
    (t, p)
}

async fn member(t: &MemoryTransport, group: &str, client: &str, topic: &str) -> Box<dyn Consumer> {
    let mut c = t
        .consumer(&ConsumerConfig::group(group, client))
        .await
        .unwrap();
    c.subscribe(&[topic.to_string()]).await.unwrap();
    c
}

async fn next_assigned(c: &mut Box<dyn Consumer>) -> Vec<TopicPartition> {
    loop {
        match c.poll(Duration::from_secs(60)).await.unwrap() {
            ConsumerEvent::Assigned(tps) => return tps,
            ConsumerEvent::Idle => {}
            other => panic!("expected Assigned, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn silent_member_is_removed_after_the_rebalance_timeout() {
    let (t, _p) = setup("memory://?rebalance_timeout_ms=5000", "t", 2).await;
    let mut a = member(&t, "g", "a", "t").await;
    assert_eq!(next_assigned(&mut a).await, tps("t", 2));

    let mut b = member(&t, "g", "b", "t").await;
    let start = Instant::now();
    // `a` never polls: `b` waits for it for the rebalance timeout, then gets everything.
    assert_eq!(next_assigned(&mut b).await, tps("t", 2));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(t.broker().group_members("g").len(), 1);

    // `a` learns it lost its partitions, cannot commit them, and rejoins.
    assert_eq!(
        a.poll(Duration::from_secs(1)).await.unwrap(),
        ConsumerEvent::Revoked(tps("t", 2))
    );
    let e = a
        .commit(&[(TopicPartition::new("t", 0), 1)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("t[0]"), "{e}");
    assert_eq!(t.broker().group_members("g").len(), 2);
    assert!(t.broker().is_rebalancing("g"));
}

#[tokio::test(start_paused = true)]
async fn waiting_member_wakes_as_soon_as_the_revocation_is_acknowledged() {
    let (t, _p) = setup("memory://", "t", 2).await;
    let mut a = member(&t, "g", "a", "t").await;
    next_assigned(&mut a).await;
    let mut b = member(&t, "g", "b", "t").await;
    let start = Instant::now();
    let waiter = tokio::spawn(async move {
        let got = next_assigned(&mut b).await;
        (got, b)
    });
    tokio::task::yield_now().await;
    assert_eq!(
        a.poll(Duration::from_secs(1)).await.unwrap(),
        ConsumerEvent::Revoked(tps("t", 2))
    );
    a.commit(&[(TopicPartition::new("t", 1), 0)]).await.unwrap();
    assert_eq!(
        next_assigned(&mut a).await,
        vec![TopicPartition::new("t", 0)]
    );
    let (got, _b) = waiter.await.unwrap();
    assert_eq!(got, vec![TopicPartition::new("t", 1)]);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn every_member_gets_assigned_even_when_empty() {
    let (t, _p) = setup("memory://", "t", 2).await;
    let mut cs = Vec::new();
    for name in ["a", "b", "c"] {
        cs.push(member(&t, "g", name, "t").await);
    }
    let mut all = BTreeSet::new();
    let mut sizes = Vec::new();
    for c in cs.iter_mut() {
        let got = next_assigned(c).await;
        sizes.push(got.len());
        all.extend(got);
    }
    assert_eq!(sizes, vec![1, 1, 0]);
    assert_eq!(all.len(), 2);
    let owned = t.broker().group_assignment("g");
    assert_eq!(owned.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn resubscribing_revokes_then_assigns_the_new_topics() {
    let (t, _p) = setup("memory://", "t", 2).await;
    t.create_topic(&TopicSpec::new("u", 3)).await.unwrap();
    let mut a = member(&t, "g", "a", "t").await;
    next_assigned(&mut a).await;
    a.subscribe(&["u".to_string()]).await.unwrap();
    assert_eq!(
        a.poll(Duration::from_secs(1)).await.unwrap(),
        ConsumerEvent::Revoked(tps("t", 2))
    );
    assert_eq!(next_assigned(&mut a).await, tps("u", 3));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_consumer_leaves_the_group() {
    let (t, _p) = setup("memory://", "t", 2).await;
    let mut a = member(&t, "g", "a", "t").await;
    let mut b = member(&t, "g", "b", "t").await;
    next_assigned(&mut a).await;
    next_assigned(&mut b).await;
    drop(b);
    assert_eq!(t.broker().group_members("g").len(), 1);
    assert!(matches!(
        a.poll(Duration::from_secs(1)).await.unwrap(),
        ConsumerEvent::Revoked(_)
    ));
    assert_eq!(next_assigned(&mut a).await, tps("t", 2));
}

#[tokio::test(start_paused = true)]
async fn poll_wakes_on_produce() {
    let (t, p) = setup("memory://", "t", 1).await;
    let mut c = t.reader(&ReaderConfig::new("c")).await.unwrap();
    c.assign(&tps("t", 1)).await.unwrap();
    let start = Instant::now();
    let reader = tokio::spawn(async move { c.poll(Duration::from_secs(3600)).await.unwrap() });
    tokio::task::yield_now().await;
    fill(&p, "t", 0, 1).await;
    let ev = reader.await.unwrap();
    assert!(ev.len() == 1, "{ev:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn idle_after_the_timeout() {
    let (t, _p) = setup("memory://", "t", 1).await;
    let mut c = t.reader(&ReaderConfig::new("c")).await.unwrap();
    c.assign(&tps("t", 1)).await.unwrap();
    let start = Instant::now();
    assert_eq!(c.poll(Duration::from_secs(7)).await.unwrap(), Vec::new());
    assert_eq!(start.elapsed(), Duration::from_secs(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_is_cancel_safe() {
    let (t, p) = setup("memory://", "t", 2).await;
    let mut c = t.consumer(&ConsumerConfig::group("g", "c")).await.unwrap();
    c.subscribe(&["t".to_string()]).await.unwrap();
    let producer = tokio::spawn(async move {
        for i in 0..2000u32 {
            let _delivery = p
                .send(Record::new("t", Some(Bytes::from(i.to_string())), None))
                .await
                .unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut seen: Vec<Message> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2000 {
        assert!(Instant::now() < deadline, "only {} messages", seen.len());
        tokio::select! {
            ev = c.poll(Duration::from_secs(5)) => {
                if let ConsumerEvent::Messages(m) = ev.unwrap() {
                    seen.extend(m);
                }
            }
            _ = tokio::time::sleep(Duration::from_micros(50)) => {}
        }
    }
    producer.await.unwrap();
    let distinct: BTreeSet<(u32, i64)> = seen.iter().map(|m| (m.partition, m.offset)).collect();
    assert_eq!(distinct.len(), 2000, "no message lost or duplicated");
}

#[tokio::test(start_paused = true)]
async fn busy_partition_does_not_starve_others() {
    let (t, p) = setup("memory://", "t", 3).await;
    fill(&p, "t", 0, 1000).await;
    fill(&p, "t", 1, 10).await;
    fill(&p, "t", 2, 1000).await;
    let mut config = ReaderConfig::new("c");
    config.max_poll_records = 100;
    let mut c = t.reader(&config).await.unwrap();
    c.assign(&tps("t", 3)).await.unwrap();
    let batch = c.poll(Duration::from_secs(1)).await.unwrap();
    assert!(!batch.is_empty(), "expected messages");
    assert_eq!(batch.len(), 100);
    let per = |p: u32| batch.iter().filter(|m| m.partition == p).count();
    assert_eq!(per(1), 10);
    assert!(per(0) >= 30 && per(2) >= 30, "{} {}", per(0), per(2));
    for p in 0..3 {
        let offs: Vec<i64> = batch
            .iter()
            .filter(|m| m.partition == p)
            .map(|m| m.offset)
            .collect();
        assert!(
            offs.windows(2).all(|w| w[1] == w[0] + 1),
            "order within partition {p}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn commit_errors_name_the_partition() {
    let (t, _p) = setup("memory://", "t", 2).await;
    let mut a = member(&t, "g", "a", "t").await;
    // Not yet assigned.
    let e = a
        .commit(&[(TopicPartition::new("t", 1), 3)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("t[1]"), "{e}");
    next_assigned(&mut a).await;
    a.commit(&[(TopicPartition::new("t", 1), 3)]).await.unwrap();
    assert_eq!(
        t.broker().committed("g", &TopicPartition::new("t", 1)),
        Some(3)
    );
    let e = a
        .commit(&[(TopicPartition::new("x", 0), 3)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("x[0]"), "{e}");
    // A partition reader (no group) has neither `commit` nor `subscribe`:
    // the types say so (`PartitionReader`).
}

#[tokio::test(start_paused = true)]
async fn produce_and_subscribe_auto_create_topics() {
    let (t, p) = setup("memory://?partitions=5", "t", 1).await;
    let meta = p
        .send(Record::new("new-a", None, None))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(meta.partition, 0);
    assert!(meta.timestamp_ms.is_some());
    assert_eq!(t.broker().partition_count("new-a"), Some(5));
    let _c = member(&t, "g", "a", "new-b").await;
    assert_eq!(t.broker().partition_count("new-b"), Some(5));
    // Keyless records spread round-robin.
    for _ in 0..4 {
        p.send(Record::new("new-a", None, None))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let counts: Vec<i64> = tps("new-a", 5)
        .iter()
        .map(|tp| t.broker().end_offset(tp))
        .collect();
    assert_eq!(counts, vec![1, 1, 1, 1, 1]);
    let mut r = Record::new("new-a", None, None);
    r.partition = Some(9);
    let e = p.send(r).await.unwrap_err();
    assert!(e.to_string().contains("new-a[9]"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn named_brokers_are_shared_across_transports() {
    let name = format!("groups-test-{}", std::process::id());
    let (t1, p) = setup(&format!("memory://{name}"), "t", 4).await;
    let (t2, _) = setup(&format!("memory://{name}"), "t", 4).await;
    fill(&p, "t", 3, 2).await;
    let mut a = member(&t1, "g", "w1", "t").await;
    assert_eq!(next_assigned(&mut a).await, tps("t", 4));
    let mut b = member(&t2, "g", "w2", "t").await;
    assert!(matches!(
        a.poll(Duration::from_secs(1)).await.unwrap(),
        ConsumerEvent::Revoked(_)
    ));
    assert_eq!(next_assigned(&mut a).await, tps("t", 2));
    let got = next_assigned(&mut b).await;
    assert_eq!(got, tps("t", 4)[2..].to_vec());
    let ConsumerEvent::Messages(m) = b.poll(Duration::from_secs(1)).await.unwrap() else {
        panic!("w2 owns t[3] and should read it");
    };
    assert_eq!(m.len(), 2);
    assert_eq!(t2.broker().messages("t", 3).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_and_a_group_see_everything_once() {
    let (t, _) = setup("memory://", "t", 4).await;
    let mut producers = Vec::new();
    for w in 0..4 {
        let p = t
            .producer(&ProducerConfig::new(format!("p{w}")))
            .await
            .unwrap();
        producers.push(tokio::spawn(async move {
            for i in 0..500 {
                let key = Bytes::from(format!("{w}-{i}"));
                p.send(Record::new("t", Some(key), None))
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        }));
    }
    let mut readers = Vec::new();
    for name in ["a", "b"] {
        let mut c = member(&t, "g", name, "t").await;
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut idle = 0;
            while idle < 5 {
                match c.poll(Duration::from_millis(100)).await.unwrap() {
                    ConsumerEvent::Messages(m) => {
                        idle = 0;
                        let offsets: Vec<(TopicPartition, i64)> =
                            m.iter().map(|m| (m.tp(), m.offset + 1)).collect();
                        c.commit(&offsets).await.unwrap();
                        seen.extend(m.into_iter().map(|m| (m.partition, m.offset)));
                    }
                    ConsumerEvent::Idle => idle += 1,
                    _ => idle = 0,
                }
            }
            (seen, c)
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let mut all = Vec::new();
    let mut keep = Vec::new();
    for r in readers {
        let (seen, c) = r.await.unwrap();
        all.extend(seen);
        keep.push(c);
    }
    let distinct: BTreeSet<(u32, i64)> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 2000);
    assert_eq!(all.len(), 2000, "nothing read twice");
}
