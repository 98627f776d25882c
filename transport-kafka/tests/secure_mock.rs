#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Broker credentials on librdkafka's mock cluster (plain `cargo test`):
//! TLS through a real TLS terminator on loopback (CA verification, a wrong
//! CA, client certificates and an encrypted key), and the OAUTHBEARER token
//! hook. The mock cluster advertises its plaintext address, so after the
//! bootstrap connection clients would leave TLS: these tests stop at
//! metadata; produce and consume over TLS run against tansu in
//! `secure_real.rs`. The mock cluster has no SASL at all.

mod support;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use faustus_core::credentials::{Credentials, OAuthToken, Tls};
use faustus_core::transport::Transport;
use faustus_core::{DriverUrl, Error, Registry, TransportContext};
use faustus_transport_kafka::KafkaTransport;
use support::tls::{terminator, Pki, KEY_PASSWORD};

fn backend(cluster: &support::MockKafka) -> SocketAddr {
    let first = cluster.bootstrap().split(',').next().unwrap();
    first.to_socket_addrs().unwrap().next().unwrap()
}

fn transport(
    addr: SocketAddr,
    options: &str,
    credentials: Credentials,
) -> Result<KafkaTransport, Error> {
    let url = DriverUrl::parse("broker", &format!("kafka://{addr}?{options}"))?;
    KafkaTransport::from_url_with(
        &url,
        &TransportContext::new().with_credentials(Some(credentials)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_right_ca_reaches_the_broker() {
    let cluster = support::MockKafka::start(1);
    let pki = Pki::new("right-ca");
    let tls = terminator(&pki, None, backend(&cluster));
    // Through the registry, as an app builds it from its settings.
    let registry = Registry::new();
    faustus_transport_kafka::register(&registry);
    let url =
        DriverUrl::parse("broker", &format!("kafka://{tls}?connect_timeout_ms=20000")).unwrap();
    let ctx = TransportContext::new()
        .with_credentials(Some(Credentials::tls(Tls::new().ca_file(&pki.ca))));
    let t = registry.transport_with(&url, &ctx).unwrap();
    // Metadata over TLS, the certificate checked against the CA (and its
    // 127.0.0.1 address against the certificate's names).
    assert_eq!(t.partition_count("no-such-topic").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_wrong_ca_fails_at_once_saying_why() {
    let cluster = support::MockKafka::start(1);
    let pki = Pki::new("wrong-ca");
    let tls = terminator(&pki, None, backend(&cluster));
    let t = transport(
        tls,
        "connect_timeout_ms=60000",
        Credentials::tls(Tls::new().ca_file(&pki.other_ca)),
    )
    .unwrap();
    let started = Instant::now();
    let e = t.partition_count("x").await.unwrap_err();
    let text = e.to_string();
    // Not the 60 s of "no broker answered": librdkafka's reason, at once.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(!e.is_retryable(), "{text}");
    assert!(text.contains(&format!("kafka://{tls}")), "{text}");
    assert!(text.contains("certificate verify failed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_a_tls_port_is_not_mistaken_for_success() {
    let cluster = support::MockKafka::start(1);
    let pki = Pki::new("no-tls");
    let tls = terminator(&pki, None, backend(&cluster));
    let url =
        DriverUrl::parse("broker", &format!("kafka://{tls}?connect_timeout_ms=1500")).unwrap();
    let t = KafkaTransport::from_url(&url).unwrap();
    assert!(t.partition_count("x").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_with_an_encrypted_key() {
    let cluster = support::MockKafka::start(1);
    let pki = Pki::new("mtls");
    let tls = terminator(&pki, Some(&pki.ca), backend(&cluster));
    let with_cert = Tls::new()
        .ca_file(&pki.ca)
        .client_cert(&pki.client_cert, &pki.client_key)
        .key_password(KEY_PASSWORD);
    let t = transport(tls, "", Credentials::tls(with_cert.clone())).unwrap();
    assert_eq!(t.partition_count("no-such-topic").await.unwrap(), None);

    // Without a certificate the terminator refuses the handshake.
    let t = transport(
        tls,
        "connect_timeout_ms=5000",
        Credentials::tls(Tls::new().ca_file(&pki.ca)),
    )
    .unwrap();
    let started = Instant::now();
    let e = t.partition_count("x").await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(20), "{e}");
    assert!(e.contains("SSL") || e.contains("handshake"), "{e}");

    // A wrong key password is reported when the transport is built, naming
    // the key, never showing the password.
    let e = transport(
        tls,
        "",
        Credentials::tls(with_cert.key_password("not-the-password")),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("broker_credentials") && e.contains("ssl.key"),
        "{e}"
    );
    assert!(
        !e.contains("not-the-password") && !e.contains(KEY_PASSWORD),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_asks_the_token_provider() {
    let cluster = support::MockKafka::start(1);
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(OAuthToken::new(
                "header.payload.signature",
                "faustus-app",
                SystemTime::now() + Duration::from_secs(3600),
            ))
        }
    };
    let t = transport(
        backend(&cluster),
        "connect_timeout_ms=3000",
        Credentials::oauth_bearer(provider),
    )
    .unwrap();
    // The mock broker speaks no SASL, so authentication cannot succeed; but
    // the client asked the provider for its token first.
    let e = t.partition_count("x").await.unwrap_err();
    assert!(calls.load(Ordering::SeqCst) >= 1, "{e}");

    // A provider that fails: its message is what the connection check says.
    let failing = || Err(Error::config("oauth", "the identity provider said no"));
    let t = transport(
        backend(&cluster),
        "connect_timeout_ms=3000",
        Credentials::oauth_bearer(failing),
    )
    .unwrap();
    let e = t.partition_count("x").await.unwrap_err().to_string();
    assert!(e.contains("the identity provider said no"), "{e}");
}
