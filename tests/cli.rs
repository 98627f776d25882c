//! The command line: `send` (to a topic or an agent), `reset`,
//! `clean-versions`, and the `worker` flags with the startup banner (as a
//! process).
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../examples/word_count.rs"]
#[allow(dead_code, unreachable_pub)]
mod word_count;

use std::ffi::OsString;
use std::process::{Command, ExitCode, Stdio};

use faustus::cli::{EXIT_FAILURE, EXIT_USAGE};
use support::*;

fn run(app: &faustus::App, args: &[&str]) -> ExitCode {
    let mut all = vec!["word_count"];
    all.extend_from_slice(args);
    faustus::cli::run(app, all.iter().map(OsString::from))
}

fn wc_on(broker: &str, id: &str) -> word_count::WordCount {
    word_count::build(app_on(broker, id).build().unwrap()).unwrap()
}

fn values(broker: &str, topic: &str) -> Vec<(Option<String>, Option<String>, u32)> {
    let b = faustus_transport_memory::MemoryBroker::named(broker);
    let mut out = Vec::new();
    for p in 0..b.partition_count(topic).unwrap_or(0) {
        for m in b.messages(topic, p) {
            let text = |v: Option<&[u8]>| v.map(|b| String::from_utf8(b.to_vec()).unwrap());
            out.push((text(m.key.as_deref()), text(m.value.as_deref()), p));
        }
    }
    out
}

#[test]
fn send_to_a_topic_or_an_agent() {
    let broker = unique("cli-send");
    let wc = wc_on(&broker, "cli-send");
    let code = run(
        &wc.app,
        &[
            "send",
            "posts",
            "the quick fox",
            "--key",
            "p1",
            "--repeat",
            "3",
        ],
    );
    assert_eq!(code, ExitCode::SUCCESS);
    let sent = values(&broker, "posts");
    assert_eq!(sent.len(), 3, "{sent:?}");
    for (k, v, p) in &sent {
        // JSON codecs: text that is not JSON is sent as a JSON string.
        assert_eq!(k.as_deref(), Some("\"p1\""));
        assert_eq!(v.as_deref(), Some("\"the quick fox\""));
        assert_eq!(*p, sent[0].2, "same key, same partition");
    }
    // To an agent (its topic), JSON values as given, an explicit partition.
    let code = run(
        &wc.app,
        &[
            "send",
            "@count_words",
            r#"{"word":"fox"}"#,
            "-k",
            "fox",
            "--partition",
            "2",
        ],
    );
    assert_eq!(code, ExitCode::SUCCESS);
    let sent = values(&broker, "cli-send-count_words");
    assert_eq!(
        sent,
        vec![(Some("\"fox\"".into()), Some(r#"{"word":"fox"}"#.into()), 2)]
    );
    // Errors: an unknown agent fails (1); bad arguments are usage errors (2).
    assert_eq!(
        run(&wc.app, &["send", "@nobody", "x"]),
        ExitCode::from(EXIT_FAILURE)
    );
    assert_eq!(
        run(&wc.app, &["send", "posts", "x", "--repeat", "0"]),
        ExitCode::from(EXIT_USAGE)
    );
    assert_eq!(run(&wc.app, &["send"]), ExitCode::from(EXIT_USAGE));
    assert_eq!(run(&wc.app, &["send", "--help"]), ExitCode::SUCCESS);
}

/// Keys stored in the word-count table under `datadir` (opened and closed here).
fn keys_stored(datadir: &std::path::Path) -> u64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = app_on(&unique("cli-keys"), "word-counts")
        .store("redb://")
        .datadir(datadir.to_path_buf())
        .build()
        .unwrap();
    rt.block_on(async {
        let url = faustus::DriverUrl::parse("store", "redb://").unwrap();
        let store = app
            .registry()
            .store(
                &url,
                &faustus::store::StoreContext::new(app.id(), app.settings().table_path()),
            )
            .unwrap();
        let ts = store
            .open(&faustus::store::TableSpec::new("word_counts", 8))
            .await
            .unwrap();
        let mut n = 0;
        for p in 0..8 {
            n += ts.len(p).await.unwrap();
        }
        n
    })
}

#[test]
fn reset_deletes_local_table_state_only_when_confirmed() {
    let datadir = std::env::temp_dir().join(unique("faustus-cli-reset"));
    let (mut child, url) = spawn_worker(&datadir);
    // The demo feeds sample posts on memory://: wait until some are counted.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = faustus::HttpClient::new();
        for _ in 0..500 {
            let (status, body) = client.get(&format!("{url}/count/?word=the")).await.unwrap();
            if status == 200 && body != r#"{"the":0}"# {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("nothing counted");
    });
    interrupt(&mut child);
    let before = keys_stored(&datadir);
    assert!(before > 0);
    let reset = |args: &[&str]| {
        Command::new(example_binary("word_count"))
            .args(args)
            .env("FAUSTUS_DATADIR", &datadir)
            .env_remove("FAUSTUS_BROKER")
            .output()
            .unwrap()
    };
    let out = reset(&["reset"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--yes") && err.lines().count() == 1, "{err}");
    assert_eq!(
        keys_stored(&datadir),
        before,
        "nothing deleted without --yes"
    );
    let out = reset(&["reset", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reset table word_counts"));
    assert_eq!(keys_stored(&datadir), 0);
    let _ = std::fs::remove_dir_all(&datadir);
}

#[test]
fn clean_versions_removes_older_data_directories() {
    let base = std::env::temp_dir().join(unique("faustus-cli-versions"));
    for d in ["cv-data", "cv-v2-data", "cv-v3-data", "other-data"] {
        std::fs::create_dir_all(base.join(d).join("tables")).unwrap();
    }
    let app = app_on(&unique("cli-cv"), "cv")
        .version(3u32)
        .datadir(base.join("cv-v3-data"))
        .build()
        .unwrap();
    assert_eq!(app.id(), "cv-v3");
    assert_eq!(run(&app, &["clean-versions"]), ExitCode::SUCCESS);
    assert!(!base.join("cv-data").exists());
    assert!(!base.join("cv-v2-data").exists());
    assert!(
        base.join("cv-v3-data").exists(),
        "the current version stays"
    );
    assert!(base.join("other-data").exists(), "other apps' data stays");
    let _ = std::fs::remove_dir_all(&base);
}

/// Start the demo worker on a random web port; its banner and web URL.
fn spawn_worker_with_banner(datadir: &std::path::Path) -> (ChildGuard, String, String) {
    let child = Command::new(example_binary("word_count"))
        .args(["worker", "--web-port", "0", "--web-host", "127.0.0.1"])
        .env("FAUSTUS_DATADIR", datadir)
        .env_remove("FAUSTUS_BROKER")
        .env_remove("FAUSTUS_WEB_PORT")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let (banner, url) = banner_and_url(child.0.stdout.take().unwrap());
    (child, banner, url)
}

fn spawn_worker(datadir: &std::path::Path) -> (ChildGuard, String) {
    let (child, _, url) = spawn_worker_with_banner(datadir);
    (child, url)
}

/// Ctrl-C the worker; it exits 0.
fn interrupt(child: &mut ChildGuard) {
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_worker_prints_a_banner_and_serves_the_count_page() {
    let datadir = std::env::temp_dir().join(unique("faustus-cli-banner"));
    let (mut child, banner, url) = spawn_worker_with_banner(&datadir);
    for needle in [
        "│ id ",
        "word-counts",
        "│ transport ",
        "memory://",
        "│ store ",
        "redb://",
        "@count_words",
        "word_counts",
    ] {
        assert!(banner.contains(needle), "{needle} missing in\n{banner}");
    }
    assert!(!url.ends_with(":0"), "{url}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = faustus::HttpClient::new();
        let (status, body) = client.get(&format!("{url}/count/?word=the")).await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with(r#"{"the":"#), "{body}");
    });
    interrupt(&mut child);
    let _ = std::fs::remove_dir_all(&datadir);

    // Usage errors exit 2 with a one-line error on stderr; --help exits 0.
    let out = Command::new(example_binary("word_count"))
        .args(["worker", "--web-port", "http"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--web-port"));
    let out = Command::new(example_binary("word_count"))
        .args(["worker", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--without-web") && help.contains("--web-port"),
        "{help}"
    );
}
