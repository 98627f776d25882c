#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Faults on librdkafka's mock cluster: a broker down and back, a broker that
//! is never reachable, a record that is too large.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use faustus_core::transport::{
    Message, PartitionReader, ProducerConfig, ReaderConfig, Record, TopicPartition, TopicSpec,
    Transport,
};
use faustus_core::DriverUrl;
use faustus_transport_kafka::KafkaTransport;

mod support;

fn transport(url: &str) -> Arc<dyn Transport> {
    let url = DriverUrl::parse("broker", url).unwrap();
    Arc::new(KafkaTransport::from_url(&url).unwrap())
}

async fn read(c: &mut Box<dyn PartitionReader>, want: usize) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "got {} of {want}",
            out.len()
        );
        out.extend(c.poll(Duration::from_millis(200)).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_and_back() {
    let cluster = support::MockKafka::start(1);
    let t = cluster.transport();
    t.create_topic(&TopicSpec::new("faults", 1)).await.unwrap();
    let p = t.producer(&ProducerConfig::new("p")).await.unwrap();
    let mut c = t.reader(&ReaderConfig::new("r")).await.unwrap();
    c.assign(&[TopicPartition::new("faults", 0)]).await.unwrap();

    let first = p
        .send(Record::new("faults", None, Some(Bytes::from_static(b"1"))))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(first.offset, 0);
    assert_eq!(read(&mut c, 1).await[0].offset, 0);

    cluster.broker_down(1).await;
    // The send is accepted while the broker is away; it is delivered when it
    // returns, and the consumer keeps going.
    let pending = p
        .send(Record::new("faults", None, Some(Bytes::from_static(b"2"))))
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(c.poll(Duration::from_millis(200)).await.unwrap().is_empty());
    }
    cluster.broker_up(1).await;
    let second = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .expect("delivered after the broker came back")
        .unwrap();
    assert_eq!(second.offset, 1);
    let got = read(&mut c, 1).await;
    assert_eq!(
        (got[0].offset, got[0].value.as_deref()),
        (1, Some(&b"2"[..]))
    );
    c.close().await.unwrap();
    p.flush().await.unwrap();
}

#[tokio::test]
async fn unreachable_broker_is_a_retryable_error_naming_the_url() {
    // Nothing listens on port 1.
    let t = transport("kafka://127.0.0.1:1?connect_timeout_ms=1500");
    let started = std::time::Instant::now();
    let e = t.producer(&ProducerConfig::new("p")).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("kafka://127.0.0.1:1"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_fails_at_the_sender() {
    let cluster = support::MockKafka::start(1);
    t_create(&cluster, "big").await;
    let t: Arc<dyn Transport> = Arc::new(cluster.kafka("message.max.bytes=2000"));
    let p = t.producer(&ProducerConfig::new("p")).await.unwrap();
    let big = Record::new("big", None, Some(Bytes::from(vec![b'x'; 10_000])));
    let failed = match p.send(big).await {
        Err(e) => Some(e),
        Ok(d) => d.await.err(),
    };
    let e = failed.expect("a record above message.max.bytes must fail");
    assert!(!e.is_retryable(), "{e}");
    // The producer still works.
    let ok = p
        .send(Record::new("big", None, Some(Bytes::from_static(b"small"))))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ok.offset, 0);
}

async fn t_create(cluster: &Arc<support::MockKafka>, name: &str) {
    cluster
        .transport()
        .create_topic(&TopicSpec::new(name, 1))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_watermark_after_a_multi_record_batch() {
    let cluster = support::MockKafka::start(1);
    let t = cluster.transport();
    t.create_topic(&TopicSpec::new("batch", 1)).await.unwrap();
    let p = t.producer(&ProducerConfig::new("p")).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let mut r = Record::new("batch", None, Some(Bytes::from(format!("v{i}"))));
        r.partition = Some(0);
        deliveries.push(p.send(r).await.unwrap());
    }
    p.flush().await.unwrap();
    for d in deliveries {
        d.await.unwrap();
    }
    let mut c = t.reader(&ReaderConfig::new("r")).await.unwrap();
    let tp = TopicPartition::new("batch", 0);
    assert_eq!(c.high_watermark(&tp).await.unwrap(), 10);
    // Also while assigned and read to the end.
    c.assign(std::slice::from_ref(&tp)).await.unwrap();
    assert_eq!(read(&mut c, 10).await.len(), 10);
    assert_eq!(c.high_watermark(&tp).await.unwrap(), 10);
    c.close().await.unwrap();
}

/// `poll` is cancel-safe: a poll dropped mid-wait (as in `tokio::select!`)
/// loses nothing; the next poll returns what the dropped one would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_is_cancel_safe() {
    let cluster = support::MockKafka::start(1);
    let t = cluster.transport();
    t.create_topic(&TopicSpec::new("cancel", 1)).await.unwrap();
    let p = t.producer(&ProducerConfig::new("p")).await.unwrap();
    let mut c = t.reader(&ReaderConfig::new("r")).await.unwrap();
    c.assign(&[TopicPartition::new("cancel", 0)]).await.unwrap();
    let mut got = Vec::new();
    for i in 0..20 {
        let mut r = Record::new("cancel", None, Some(Bytes::from(format!("v{i}"))));
        r.partition = Some(0);
        p.send(r).await.unwrap().await.unwrap();
        // A poll that is cancelled after a few milliseconds, then a real one.
        tokio::select! {
            ev = c.poll(Duration::from_millis(500)) => {
                got.extend(ev.unwrap());
            }
            _ = tokio::time::sleep(Duration::from_millis(3)) => {}
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 20 && tokio::time::Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(200)).await.unwrap());
    }
    assert_eq!(
        got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (0..20).collect::<Vec<i64>>()
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_sent_with_the_acks_their_topic_asks_for() {
    use faustus_core::transport::{Acks, PartitionReaderExt, ReaderConfig, TopicPartition};
    let cluster = support::MockKafka::start(1);
    let t = cluster.transport();
    t.create_topic(&TopicSpec::new("acks", 1)).await.unwrap();
    let p = t.producer(&ProducerConfig::new("p")).await.unwrap();
    let mut deliveries = Vec::new();
    for (i, acks) in [None, Some(Acks::All), Some(Acks::Leader), Some(Acks::None)]
        .into_iter()
        .enumerate()
    {
        let mut r = Record::new("acks", None, Some(Bytes::from(format!("v{i}"))));
        r.partition = Some(0);
        r.acks = acks;
        deliveries.push((acks, p.send(r).await.unwrap()));
    }
    p.flush().await.unwrap();
    for (acks, d) in deliveries {
        let md = d.await.unwrap();
        if acks == Some(Acks::None) {
            // With acks=0 the broker answers nothing, so no offset is known:
            // the record really went out without acknowledgement.
            assert!(md.offset < 0, "{md:?}");
        } else {
            assert!(md.offset >= 0, "{acks:?}: {md:?}");
        }
    }
    // Every record reached the partition, whatever its acks.
    let mut c = t.reader(&ReaderConfig::new("reader")).await.unwrap();
    let tp = TopicPartition::new("acks", 0);
    c.assign_at(&[(tp, 0)]).await.unwrap();
    let mut values = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while values.len() < 4 && std::time::Instant::now() < deadline {
        let ms = c.poll(std::time::Duration::from_millis(200)).await.unwrap();
        values.extend(ms.into_iter().map(|m| m.value.unwrap()));
    }
    values.sort();
    assert_eq!(values, vec!["v0", "v1", "v2", "v3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_makes_send_wait_and_drops_nothing() {
    let cluster = support::MockKafka::start(1);
    t_create(&cluster, "full").await;
    // librdkafka's queue holds two records.
    let t: Arc<dyn Transport> = Arc::new(cluster.kafka("queue.buffering.max.messages=2"));
    let p = t.producer(&ProducerConfig::new("p")).await.unwrap();
    let mut c = t.reader(&ReaderConfig::new("r")).await.unwrap();
    c.assign(&[TopicPartition::new("full", 0)]).await.unwrap();
    let record = |v: &'static [u8]| Record::new("full", None, Some(Bytes::from_static(v)));

    cluster.broker_down(1).await;
    // Accepted into the queue while the broker is away ...
    let first = p.send(record(b"1")).await.unwrap();
    let second = p.send(record(b"2")).await.unwrap();
    // ... and the queue is full: the next send waits instead of failing.
    let third = tokio::spawn({
        let p = p.clone();
        async move { p.send(record(b"3")).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!third.is_finished(), "send waits while the queue is full");

    cluster.broker_up(1).await;
    let third = tokio::time::timeout(Duration::from_secs(60), third)
        .await
        .expect("accepted once the queue has room")
        .unwrap()
        .unwrap();
    let mut offsets = Vec::new();
    for d in [first, second, third] {
        offsets.push(
            tokio::time::timeout(Duration::from_secs(60), d)
                .await
                .expect("delivered")
                .unwrap()
                .offset,
        );
    }
    assert_eq!(offsets, vec![0, 1, 2]);
    let got: Vec<_> = read(&mut c, 3)
        .await
        .into_iter()
        .map(|m| m.value.unwrap())
        .collect();
    assert_eq!(got, vec!["1", "2", "3"], "nothing dropped, in order");
    c.close().await.unwrap();
    p.flush().await.unwrap();
}
