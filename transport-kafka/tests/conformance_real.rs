#![allow(clippy::unwrap_used)]
//! The transport conformance suite against a real Kafka-protocol broker.
//!
//! Set `FAUSTUS_TEST_KAFKA=host:port` (or a whole `kafka://` URL) and run
//! with `--ignored`; `scripts/test-broker.sh start` starts a local tansu
//! broker and prints its address.

use std::sync::Arc;

use faustus_core::transport::Transport;
use faustus_core::DriverUrl;
use faustus_transport_kafka::KafkaTransport;

fn real_transport() -> Option<Arc<dyn Transport>> {
    let Ok(addr) = std::env::var("FAUSTUS_TEST_KAFKA") else {
        eprintln!("SKIPPED: set FAUSTUS_TEST_KAFKA=host:port to run the Kafka conformance suite against a real broker");
        return None;
    };
    let url = if addr.contains("://") {
        addr
    } else {
        format!("kafka://{addr}")
    };
    let url = match DriverUrl::parse("broker", &url) {
        Ok(u) => u,
        Err(e) => panic!("FAUSTUS_TEST_KAFKA: {e}"),
    };
    match KafkaTransport::from_url(&url) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => panic!("FAUSTUS_TEST_KAFKA: {e}"),
    }
}

/// One ignored test per conformance check (the testkit macro has no way to
/// mark its tests ignored).
macro_rules! real_broker_checks {
    ($($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs a real Kafka-protocol broker: run scripts/test.sh"]
            async fn $check() {
                let Some(transport) = real_transport() else {
                    return;
                };
                faustus_testkit::transport_conformance::$check(transport).await;
            }
        )+
    };
}

real_broker_checks!(
    check_create_topic,
    check_round_trip,
    check_keyed_partitioning,
    check_explicit_partition,
    check_single_member_gets_all,
    check_two_members_split,
    check_commit_resume,
    check_rebalance_revokes_first,
    check_pause_resume,
    check_member_seek,
    check_reader_assign_seek,
    check_reader_outside_group,
    check_flush,
    check_send_batch,
);

/// tansu 0.6 answers ListOffsets(latest) with the last batch's base offset
/// + 1; the high-water mark must still be the true end after a batch of
/// several records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Kafka-protocol broker: run scripts/test.sh"]
async fn high_watermark_after_a_multi_record_batch() {
    use bytes::Bytes;
    use faustus_core::transport::{
        ProducerConfig, ReaderConfig, Record, TopicPartition, TopicSpec,
    };

    let Some(t) = real_transport() else {
        return;
    };
    let topic = faustus_testkit::transport_conformance::unique_name("batch-hw");
    t.create_topic(&TopicSpec::new(&topic, 1)).await.unwrap();
    let p = t.producer(&ProducerConfig::new("batch-hw")).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let mut r = Record::new(topic.as_str(), None, Some(Bytes::from(format!("v{i}"))));
        r.partition = Some(0);
        deliveries.push(p.send(r).await.unwrap());
    }
    p.flush().await.unwrap();
    for d in deliveries {
        d.await.unwrap();
    }
    let mut c = t
        .reader(&ReaderConfig::new("batch-hw-reader"))
        .await
        .unwrap();
    let tp = TopicPartition::new(topic.as_str(), 0);
    assert_eq!(c.high_watermark(&tp).await.unwrap(), 10);
    c.close().await.unwrap();
}
