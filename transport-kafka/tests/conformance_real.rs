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
    check_groupless_assign_seek,
    check_flush,
);
