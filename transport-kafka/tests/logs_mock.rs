#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What librdkafka logs through the driver, on the mock cluster: each client
//! gets only its own properties (no CONFWARN for a URL that mixes producer
//! and consumer options), and partition ends met by the high-water-mark
//! probe are not warnings.
//!
//! A binary of its own: it installs the process-wide `tracing` subscriber
//! (librdkafka logs from its own threads, which a scoped one would miss).

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use faustus_core::transport::{
    ConsumerConfig, ConsumerEvent, ProducerConfig, ReaderConfig, Record, TopicPartition, TopicSpec,
};
use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[derive(Clone, Debug)]
struct Line {
    at: std::time::Instant,
    level: tracing::Level,
    target: String,
    text: String,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Line>>>);

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().push(Line {
            at: std::time::Instant::now(),
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            text: text.0,
        });
    }
}

/// The process-wide capture (installed once; the tests share it).
fn capture() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(capture.clone()),
            )
            .unwrap();
            capture
        })
        .clone()
}

/// rdkafka's producers hand each error event to the context twice; the
/// driver logs it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_logged_once() {
    let capture = capture();
    // Nothing listens on port 1.
    let url =
        faustus_core::DriverUrl::parse("broker", "kafka://127.0.0.1:1?connect_timeout_ms=2000")
            .unwrap();
    let t = faustus_transport_kafka::KafkaTransport::from_url(&url).unwrap();
    use faustus_core::transport::Transport as _;
    assert!(t.partition_count("x").await.is_err());
    let lines = capture.0.lock().clone();
    let errors: Vec<&Line> = lines
        .iter()
        .filter(|l| {
            l.level == tracing::Level::WARN
                && l.text.contains("client=\"faustus-metadata\"")
                && l.text.contains("127.0.0.1:1")
        })
        .collect();
    assert!(!errors.is_empty(), "{lines:#?}");
    // librdkafka itself repeats some reports (each reconnect's "brokers
    // are down"), never within milliseconds of each other.
    for pair in errors.windows(2) {
        let apart = pair[1].at.duration_since(pair[0].at);
        assert!(
            pair[0].text != pair[1].text || apart > Duration::from_millis(20),
            "logged twice, {apart:?} apart: {}",
            pair[0].text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_only_its_own_properties_and_partition_ends_are_not_warnings() {
    let capture = capture();
    let cluster = support::MockKafka::start(1);
    // Producer-only (acks, linger.ms, compression.type) and consumer-only
    // (fetch.min.bytes, session.timeout.ms, heartbeat.interval.ms,
    // max.poll.interval.ms) options in one URL.
    let t = cluster.transport_with(
        "acks=all&linger.ms=5&compression.type=lz4&fetch.min.bytes=1\
         &session.timeout.ms=6000&heartbeat.interval.ms=500&max.poll.interval.ms=60000",
    );
    t.create_topic(&TopicSpec::new("logs", 1)).await.unwrap();
    let p = t.producer(&ProducerConfig::new("p")).await.unwrap();
    p.send(Record::new("logs", None, Some(Bytes::from_static(b"x"))))
        .await
        .unwrap()
        .await
        .unwrap();
    let mut c = t
        .consumer(&ConsumerConfig::group("logs-group", "c"))
        .await
        .unwrap();
    c.subscribe(&["logs".to_string()]).await.unwrap();
    let mut r = t.reader(&ReaderConfig::new("r")).await.unwrap();
    let tp = TopicPartition::new("logs", 0);
    r.assign(std::slice::from_ref(&tp)).await.unwrap();
    // The high-water-mark probe reads to the partition end, three times.
    for _ in 0..3 {
        assert_eq!(r.high_watermark(&tp).await.unwrap(), 1);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no message");
        if let ConsumerEvent::Messages(m) = c.poll(Duration::from_millis(200)).await.unwrap() {
            got += m.len();
        }
    }
    while r.poll(Duration::from_millis(200)).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "reader got nothing");
    }
    // Let the producer's polling thread deliver what librdkafka logged.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.close().await.unwrap();
    r.close().await.unwrap();

    let lines = capture.0.lock().clone();
    let librdkafka: Vec<&Line> = lines.iter().filter(|l| l.target == "librdkafka").collect();
    // The capture works: librdkafka's own lines arrive (the group join).
    assert!(
        !librdkafka.is_empty(),
        "nothing from librdkafka: {lines:#?}"
    );
    let confwarn: Vec<&&Line> = librdkafka
        .iter()
        .filter(|l| l.text.contains("CONFWARN"))
        .collect();
    assert!(confwarn.is_empty(), "{confwarn:#?}");
    let eof_warnings: Vec<&&Line> = librdkafka
        .iter()
        .filter(|l| l.level <= tracing::Level::WARN && l.text.contains("EOF"))
        .collect();
    assert!(eof_warnings.is_empty(), "{eof_warnings:#?}");
    // … but they were met, and logged at debug.
    assert!(
        librdkafka
            .iter()
            .any(|l| l.level == tracing::Level::DEBUG && l.text.contains("PartitionEOF")),
        "no partition end logged: {librdkafka:#?}"
    );
}
