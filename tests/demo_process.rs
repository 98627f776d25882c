//! The README's first command as a user runs it: the demo worker in its own
//! process counts words on `memory://`, and Ctrl-C (SIGINT) stops it cleanly.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::ChildGuard;

fn example(name: &str) -> PathBuf {
    support::example_binary(name)
}

#[test]
fn the_demo_counts_words_and_stops_cleanly_on_ctrl_c() {
    let datadir = std::env::temp_dir().join(format!("faustus-demo-{}", std::process::id()));
    let child = Command::new(example("word_count"))
        .args(["worker", "-l", "info"])
        .env("FAUSTUS_DATADIR", &datadir)
        .env("FAUSTUS_WEB_PORT", "0")
        .env_remove("FAUSTUS_BROKER")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The progress log reports words counted (the sample feed runs on memory://).
    let mut counted = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if line.contains("word count progress") && !line.contains("words=0") {
            counted = true;
            break;
        }
    }
    assert!(counted, "the demo logged progress with words counted");

    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        lines.push(line);
    }
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "exit status {status:?}; last lines: {:?}",
        lines.iter().rev().take(5).collect::<Vec<_>>()
    );
    assert!(
        lines.iter().any(|l| l.contains("worker stopped")),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(&datadir);
}

#[test]
fn the_demo_lists_its_agents_like_faust() {
    let out = Command::new(example("word_count"))
        .arg("agents")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("┌Agents"), "{text}");
    assert!(
        text.contains(
            "│ @count_words   │ word-counts-count_words │ Count words from blog post article body."
        ),
        "{text}"
    );
    assert!(text.contains("@shuffle_words"), "{text}");

    let bad = Command::new(example("word_count"))
        .arg("no-such-command")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(!bad.stderr.is_empty());
}
