#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Compressed batches written by another client (a bare rdkafka producer
//! with `compression.type`) are read by Faustus's consumers: gzip, snappy,
//! lz4 and zstd, on the mock cluster (plain `cargo test`) and on a real
//! broker (ignored; `scripts/test.sh` runs it against tansu).

mod support;

use std::sync::Arc;
use std::time::Duration;

use faustus_core::transport::{
    ConsumerConfig, ConsumerEvent, ReaderConfig, TopicPartition, TopicSpec, Transport,
};
use faustus_core::DriverUrl;
use faustus_transport_kafka::KafkaTransport;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

const CODECS: [&str; 4] = ["gzip", "snappy", "lz4", "zstd"];
const RECORDS: usize = 50;

fn value(codec: &str, i: usize) -> String {
    // Repetitive, so every codec really shrinks it.
    format!("{codec} record {i} {}", "abcdefgh".repeat(20))
}

/// Write `RECORDS` records to `topic` with another client, in batches
/// compressed with `codec`.
async fn produce_compressed(bootstrap: &str, topic: &str, codec: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("linger.ms", "50")
        .set("batch.num.messages", "25")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..RECORDS {
        let v = value(codec, i);
        let key = format!("k{i}");
        pending.push(
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .key(key.as_bytes())
                        .payload(v.as_bytes())
                        .partition(0),
                )
                .map_err(|(e, _)| e)
                .unwrap(),
        );
    }
    producer
        .flush(Timeout::After(Duration::from_secs(30)))
        .unwrap();
    for p in pending {
        p.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// Read every codec's topic with a partition reader and a group consumer.
async fn read_back(t: &Arc<dyn Transport>, topics: &[(String, &str)]) {
    for (topic, codec) in topics {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let want: Vec<String> = (0..RECORDS).map(|i| value(codec, i)).collect();
        let mut r = t
            .reader(&ReaderConfig::new(format!("r-{codec}")))
            .await
            .unwrap();
        r.assign(&[TopicPartition::new(topic.as_str(), 0)])
            .await
            .unwrap();
        let mut got = Vec::new();
        while got.len() < RECORDS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{codec}: {} of {RECORDS}",
                got.len()
            );
            for m in r.poll(Duration::from_millis(200)).await.unwrap() {
                got.push(String::from_utf8(m.value.unwrap().to_vec()).unwrap());
            }
        }
        assert_eq!(got, want, "{codec}");
        r.close().await.unwrap();

        let mut c = t
            .consumer(&ConsumerConfig::group(
                format!("g-{topic}"),
                format!("c-{codec}"),
            ))
            .await
            .unwrap();
        c.subscribe(std::slice::from_ref(topic)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        let mut got = Vec::new();
        while got.len() < RECORDS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{codec} group: {} of {RECORDS}",
                got.len()
            );
            if let ConsumerEvent::Messages(ms) = c.poll(Duration::from_millis(200)).await.unwrap() {
                for m in ms {
                    assert_eq!(m.key.as_deref(), Some(format!("k{}", got.len()).as_bytes()));
                    got.push(String::from_utf8(m.value.unwrap().to_vec()).unwrap());
                }
            }
        }
        assert_eq!(got, want, "{codec} group");
        c.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_from_another_client_are_read_on_the_mock() {
    let cluster = support::MockKafka::start(1);
    let t = cluster.transport_with("session.timeout.ms=6000&heartbeat.interval.ms=500");
    let mut topics = Vec::new();
    for codec in CODECS {
        let topic = format!("compressed-{codec}");
        t.create_topic(&TopicSpec::new(&topic, 1)).await.unwrap();
        produce_compressed(cluster.bootstrap(), &topic, codec).await;
        topics.push((topic, codec));
    }
    read_back(&t, &topics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Kafka-protocol broker: run scripts/test.sh"]
async fn compressed_batches_from_another_client_are_read_on_a_real_broker() {
    let Ok(addr) = std::env::var("FAUSTUS_TEST_KAFKA") else {
        eprintln!("SKIPPED: set FAUSTUS_TEST_KAFKA=host:port");
        return;
    };
    let url = DriverUrl::parse("broker", &format!("kafka://{addr}")).unwrap();
    let t: Arc<dyn Transport> = Arc::new(KafkaTransport::from_url(&url).unwrap());
    let mut topics = Vec::new();
    for codec in CODECS {
        let topic =
            faustus_testkit::transport_conformance::unique_name(&format!("compressed-{codec}"));
        t.create_topic(&TopicSpec::new(&topic, 1)).await.unwrap();
        produce_compressed(&addr, &topic, codec).await;
        topics.push((topic, codec));
    }
    read_back(&t, &topics).await;
}
