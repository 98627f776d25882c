//! Values a user can type that do not fit: the example worker, run as its
//! own process, refuses them with a one-line error naming the setting, and
//! exits with the usage code (2) — not a panic (101).

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Output, Stdio};

/// Run the word_count example with `args` and `env`, on `memory://`, with
/// the web server on a free port and a data dir of its own; it must exit by
/// itself (the input is refused before the worker starts).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let datadir = std::env::temp_dir().join(support::unique("faustus-bad-settings"));
    let mut cmd = Command::new(support::example_binary("word_count"));
    cmd.args(args)
        .env("FAUSTUS_DATADIR", &datadir)
        .env("FAUSTUS_WEB_PORT", "0")
        .env("NO_COLOR", "1")
        .env_remove("FAUSTUS_BROKER")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A worker that (wrongly) started would run until stopped: bound the wait.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("word_count {args:?} with {env:?} did not exit within 60 s");
        }
    };
    let _ = std::fs::remove_dir_all(&datadir);
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_commit_interval_too_long_for_a_duration_is_refused_naming_the_setting() {
    let out = run(
        &["worker"],
        &[("FAUSTUS_BROKER_COMMIT_INTERVAL", "99999999999999999999999")],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("broker_commit_interval")
            && err.contains("FAUSTUS_BROKER_COMMIT_INTERVAL")
            && err.contains("too long"),
        "the error names the setting, the variable and the problem:\n{err}"
    );
}

#[test]
fn absurd_durations_in_other_settings_are_refused_too() {
    for (var, value, setting) in [
        (
            "FAUSTUS_TABLE_CLEANUP_INTERVAL",
            "36501d",
            "table_cleanup_interval",
        ),
        ("FAUSTUS_REPLY_EXPIRES", "1000000000000d", "reply_expires"),
        (
            "FAUSTUS_BROKER_COMMIT_LIVELOCK_SOFT_TIMEOUT",
            "-5s",
            "broker_commit_livelock_soft_timeout",
        ),
    ] {
        let out = run(&["worker"], &[(var, value)]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{var}={value}: exit status; stderr:\n{err}"
        );
        assert!(
            err.contains(setting) && err.contains(var) && !err.contains("panicked"),
            "{var}={value}:\n{err}"
        );
    }
}

#[test]
fn a_negative_or_endless_producer_latency_is_a_usage_error() {
    for latency in ["-1", "inf", "NaN", "1e30"] {
        let arg = format!("--max-latency={latency}");
        let out = run(&["produce", "--max-messages", "1", &arg], &[]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--max-latency {latency}: stderr:\n{err}"
        );
        assert!(
            err.contains("max-latency") && !err.contains("panicked"),
            "{err}"
        );
    }
}

#[test]
fn a_bad_web_server_option_stops_the_worker_naming_the_option_and_the_url() {
    for (url, option) in [
        ("hyper://?idle_timout=5s", "hyper.idle_timout"),
        (
            "hyper://?header_timeout=99999999999999999999999",
            "hyper.header_timeout",
        ),
    ] {
        let out = run(&["worker"], &[("FAUSTUS_WEB", url)]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{url}: stderr:\n{err}");
        assert!(
            err.contains(option) && err.contains(url) && !err.contains("panicked"),
            "{url}:\n{err}"
        );
    }
}

#[test]
fn the_longest_accepted_durations_run_and_stop_cleanly() {
    use std::io::{BufRead, BufReader, Read};
    use std::time::{Duration, Instant};
    let datadir = std::env::temp_dir().join(support::unique("faustus-long-durations"));
    let child = Command::new(support::example_binary("word_count"))
        .arg("worker")
        .env("FAUSTUS_DATADIR", &datadir)
        .env("FAUSTUS_WEB_PORT", "0")
        .env("NO_COLOR", "1")
        .env("FAUSTUS_BROKER_COMMIT_INTERVAL", "36500d")
        .env("FAUSTUS_BROKER_COMMIT_LIVELOCK_SOFT_TIMEOUT", "36500d")
        .env("FAUSTUS_TABLE_CLEANUP_INTERVAL", "36500d")
        .env("FAUSTUS_REPLY_EXPIRES", "3153600000")
        .env(
            "FAUSTUS_WEB",
            "hyper://?header_timeout=36500d&idle_timeout=36500d",
        )
        .env_remove("FAUSTUS_BROKER")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = support::ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut stderr_pipe = child.0.stderr.take().unwrap();
    let stderr_text = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ready = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if line.contains("Ready") {
            ready = true;
            break;
        }
    }
    assert!(ready, "the worker did not become ready");
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = stderr_text.join().unwrap();
    assert!(
        status.success() && !err.contains("panicked"),
        "{status:?}:\n{err}"
    );
    let _ = std::fs::remove_dir_all(&datadir);
}
