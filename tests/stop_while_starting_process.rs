//! SIGTERM is honoured at every stage of start-up: a worker still waiting
//! for an unreachable broker stops at once (exit 0), instead of after its
//! 60 s connect timeout.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn sigterm_while_waiting_for_an_unreachable_broker_stops_the_worker_at_once() {
    let datadir = std::env::temp_dir().join(support::unique("faustus-stop-starting"));
    let child = Command::new(support::example_binary("word_count"))
        .args(["worker", "-l", "info"])
        .env(
            "FAUSTUS_BROKER",
            format!("kafka://127.0.0.1:{}", closed_port()),
        )
        .env("FAUSTUS_DATADIR", &datadir)
        .env("FAUSTUS_WEB_PORT", "0")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = support::ChildGuard(child);
    // Wait until it is trying to reach the broker.
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("not reachable yet")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => panic!("the worker did not start; its log:\n{}", log.join("\n")),
        }
    }
    // Well inside the 60 s the broker connection would wait.
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "the worker ignored SIGTERM while starting; its log:\n{}",
            log.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(line) = rx.try_recv() {
        log.push(line);
    }
    assert!(
        status.success(),
        "a requested stop exits 0, got {status}; log:\n{}",
        log.join("\n")
    );
    let _ = std::fs::remove_dir_all(&datadir);
}
