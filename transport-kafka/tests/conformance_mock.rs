//! The transport conformance suite against librdkafka's in-process mock
//! cluster (no broker needed). Topics are created through the mock cluster,
//! which lacks the CreateTopics API (see `support`).

mod support;

faustus_testkit::transport_conformance!(support::MockKafka::start(1).transport());
