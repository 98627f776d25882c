//! Driver-level throughput on librdkafka's mock cluster: the Faustus Kafka
//! consumer (`Consumer::poll` batches of owned messages, JSON-decoded) against
//! a bare rdkafka `StreamConsumer` loop that reads and decodes the same
//! topic, and the Faustus producer against bare `FutureProducer` sends.
//!
//! ```text
//! cargo run --release -p faustus-transport-kafka --example bench -- [N]
//! ```
//!
//! This measures the driver only (thread hop, detaching, batching); the
//! agent-level benchmark of the issue (pass-through agent through the
//! conductor) belongs to the bench crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use faustus_core::transport::{ProducerConfig, ReaderConfig, Record, TopicPartition, Transport};
use faustus_core::DriverUrl;
use faustus_transport_kafka::KafkaTransport;
use futures::StreamExt;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 8;

fn value(i: usize) -> Vec<u8> {
    // 100-byte JSON object.
    let mut v = format!("{{\"id\":{i},\"pad\":\"").into_bytes();
    while v.len() < 98 {
        v.push(b'x');
    }
    v.extend_from_slice(b"\"}");
    v
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn bare_produce(bootstrap: &str, topic: &str, n: usize) -> Duration {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let v = value(i);
        let key = (i % 1024).to_string();
        loop {
            match p.send_result(FutureRecord::to(topic).key(&key).payload(&v)) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, _)) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    started.elapsed()
}

async fn faustus_produce(t: &Arc<dyn Transport>, topic: &str, n: usize) -> Duration {
    let p = t.producer(&ProducerConfig::new("bench-p")).await.unwrap();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let r = Record::new(
            topic,
            Some(Bytes::from((i % 1024).to_string())),
            Some(Bytes::from(value(i))),
        );
        pending.push(p.send(r).await.unwrap());
    }
    p.flush().await.unwrap();
    for d in pending {
        d.await.unwrap();
    }
    started.elapsed()
}

async fn bare_consume(bootstrap: &str, topic: &str, n: usize) -> Duration {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-bare")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let started = Instant::now();
    let mut stream = c.stream();
    let mut seen = 0;
    while seen < n {
        let m = stream.next().await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        std::hint::black_box(v);
        seen += 1;
    }
    started.elapsed()
}

async fn faustus_consume(t: &Arc<dyn Transport>, topic: &str, n: usize) -> Duration {
    let mut c = t.reader(&ReaderConfig::new("bench-faustus")).await.unwrap();
    let tps: Vec<TopicPartition> = (0..PARTITIONS as u32)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    c.assign(&tps).await.unwrap();
    let started = Instant::now();
    let mut seen = 0;
    while seen < n {
        for m in c.poll(Duration::from_millis(200)).await.unwrap() {
            let v: serde_json::Value = serde_json::from_slice(m.value.as_deref().unwrap()).unwrap();
            std::hint::black_box(v);
            seen += 1;
        }
    }
    let d = started.elapsed();
    c.close().await.unwrap();
    d
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("bench-bare", PARTITIONS, 1).unwrap();
    cluster
        .create_topic("bench-faustus", PARTITIONS, 1)
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = DriverUrl::parse("broker", &format!("kafka://{bootstrap}?linger.ms=5")).unwrap();
        let t: Arc<dyn Transport> = Arc::new(KafkaTransport::from_url(&url).unwrap());

        let bare_p = bare_produce(&bootstrap, "bench-bare", n).await;
        let faustus_p = faustus_produce(&t, "bench-faustus", n).await;
        println!(
            "produce  bare FutureProducer {:>10.0} msg/s   faustus Producer {:>10.0} msg/s   ratio {:.2}",
            rate(n, bare_p),
            rate(n, faustus_p),
            bare_p.as_secs_f64() / faustus_p.as_secs_f64()
        );

        // Both topics hold the same N records; read each once.
        let bare_c = bare_consume(&bootstrap, "bench-bare", n).await;
        let faustus_c = faustus_consume(&t, "bench-faustus", n).await;
        println!(
            "consume  bare StreamConsumer {:>10.0} msg/s   faustus Consumer {:>10.0} msg/s   ratio {:.2}",
            rate(n, bare_c),
            rate(n, faustus_c),
            bare_c.as_secs_f64() / faustus_c.as_secs_f64()
        );
    });
}
