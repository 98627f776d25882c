//! The transport conformance suite against librdkafka's in-process mock
//! cluster (no broker needed). Topics are created through the mock cluster,
//! which lacks the CreateTopics API (see `support`).

mod support;

// Group timings shortened: with librdkafka's defaults (45 s session
// timeout, 3 s heartbeats) check_two_members_split took 91 s against its
// 90 s deadline per step, and failed once on a slow rebalance.
faustus_testkit::transport_conformance!(@each support::MockKafka::start(1)
        .transport_with("session.timeout.ms=6000&heartbeat.interval.ms=500");
    check_create_topic,
    check_round_trip,
    check_keyed_partitioning,
    check_explicit_partition,
    check_single_member_gets_all,
    check_two_members_split,
    check_commit_resume,
    check_pause_resume,
    check_member_seek,
    check_reader_assign_seek,
    check_reader_outside_group,
    check_flush,
    check_send_batch,
);

// `check_rebalance_revokes_first` is not run on the mock: its group
// coordinator answers OffsetCommit with REBALANCE_IN_PROGRESS while the group
// is in its JOINING state (`rd_kafka_mock_cgrp_classic_check_state` in
// librdkafka's rdkafka_mock_cgrp.c), so the commit the contract makes between
// `Revoked` and the next poll cannot succeed there. Apache Kafka (and tansu)
// accept commits of the current generation while a rebalance is being
// prepared, which is what Java consumers rely on in `onPartitionsRevoked`; the
// check runs against a real broker in `conformance_real.rs` (scripts/test.sh).
