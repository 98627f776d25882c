//! TLS for the tests: a CA with server and client certificates made on the
//! spot (OpenSSL, the same vendored build librdkafka uses), and a TLS
//! terminator on loopback that forwards each connection to a plaintext
//! broker — a real TLS endpoint in front of the mock cluster or tansu.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use openssl::symm::Cipher;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};
use tokio::net::{TcpListener, TcpStream};

/// The password of the client's encrypted key.
pub(crate) const KEY_PASSWORD: &str = "client-key-pass";

/// PEM files of a test PKI in a temporary directory (removed on drop).
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
    pub(crate) ca: PathBuf,
    /// A CA that signed nothing here.
    pub(crate) other_ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_cert: PathBuf,
    /// The client key, encrypted with [`KEY_PASSWORD`].
    pub(crate) client_key: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut b = X509NameBuilder::new().unwrap();
    b.append_entry_by_text("CN", cn).unwrap();
    b.build()
}

fn ca(cn: &str) -> (X509, PKey<Private>) {
    let key = key();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name(cn)).unwrap();
    b.set_issuer_name(&name(cn)).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

fn leaf(cn: &str, ca: &(X509, PKey<Private>), server: bool) -> (X509, PKey<Private>) {
    let key = key();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name(cn)).unwrap();
    b.set_issuer_name(ca.0.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().build().unwrap())
        .unwrap();
    let usage = if server {
        ExtendedKeyUsage::new().server_auth().build().unwrap()
    } else {
        ExtendedKeyUsage::new().client_auth().build().unwrap()
    };
    b.append_extension(usage).unwrap();
    if server {
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(Some(&ca.0), None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    b.sign(&ca.1, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

impl Pki {
    /// Make a CA, a server certificate for `localhost` and `127.0.0.1`, a
    /// client certificate (key encrypted with [`KEY_PASSWORD`]), and an
    /// unrelated CA.
    pub(crate) fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "faustus-tls-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |file: &str, pem: Vec<u8>| {
            let path = dir.join(file);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let root = ca("Faustus test CA");
        let other = ca("Some other CA");
        let server = leaf("localhost", &root, true);
        let client = leaf("faustus-client", &root, false);
        Pki {
            ca: write("ca.pem", root.0.to_pem().unwrap()),
            other_ca: write("other-ca.pem", other.0.to_pem().unwrap()),
            server_cert: write("server.pem", server.0.to_pem().unwrap()),
            server_key: write(
                "server-key.pem",
                server.1.private_key_to_pem_pkcs8().unwrap(),
            ),
            client_cert: write("client.pem", client.0.to_pem().unwrap()),
            client_key: write(
                "client-key.pem",
                client
                    .1
                    .private_key_to_pem_pkcs8_passphrase(
                        Cipher::aes_256_cbc(),
                        KEY_PASSWORD.as_bytes(),
                    )
                    .unwrap(),
            ),
            dir,
        }
    }
}

/// A TLS terminator on `127.0.0.1`: accepts TLS with the PKI's server
/// certificate (and, when `client_ca` is given, requires a client
/// certificate it signed) and forwards the plaintext to `backend`. Runs on
/// its own thread until the process ends.
pub(crate) fn terminator(pki: &Pki, client_ca: Option<&Path>, backend: SocketAddr) -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    terminator_on(pki, client_ca, std_listener, backend);
    addr
}

/// [`terminator`] on a listener bound beforehand (so a broker can be told
/// to advertise its address first).
pub(crate) fn terminator_on(
    pki: &Pki,
    client_ca: Option<&Path>,
    listener: std::net::TcpListener,
    backend: SocketAddr,
) {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor
        .set_certificate_chain_file(&pki.server_cert)
        .unwrap();
    acceptor
        .set_private_key_file(&pki.server_key, SslFiletype::PEM)
        .unwrap();
    if let Some(ca) = client_ca {
        acceptor.set_ca_file(ca).unwrap();
        acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    let acceptor = acceptor.build();
    listener.set_nonblocking(true).unwrap();
    std::thread::Builder::new()
        .name("tls-terminator".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let ssl = Ssl::new(acceptor.context()).unwrap();
                    tokio::spawn(async move {
                        let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                        if Pin::new(&mut tls).accept().await.is_err() {
                            // A client that does not trust us, or has no
                            // certificate: it sees the handshake fail.
                            return;
                        }
                        let Ok(mut plain) = TcpStream::connect(backend).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        })
        .unwrap();
}
