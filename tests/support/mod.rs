//! Shared helpers for the behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use faustus::{App, AppBuilder};

pub mod hooked;
pub mod slow;
use faustus_transport_memory::MemoryBroker;

/// A unique name for a named memory broker.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An app on its own named memory broker (so the test can inspect it), with
/// the environment ignored and a fast commit interval.
pub fn app_on(broker: &str, id: &str) -> AppBuilder {
    faustus::app(id)
        .env(Default::default())
        .broker(format!("memory://{broker}"))
        .store("memory://")
        .web_enabled(false)
        .broker_commit_interval(Duration::from_millis(100))
}

/// An app resolving its drivers from `registry` (test drivers), with the
/// environment ignored and a fast commit interval.
pub fn app_with(registry: &faustus::Registry, id: &str, broker: &str, store: &str) -> AppBuilder {
    faustus::App::builder(id)
        .registry(registry.clone())
        .env(Default::default())
        .broker(broker)
        .store(store)
        .broker_commit_interval(Duration::from_millis(100))
}

/// The named broker.
pub fn broker(name: &str) -> MemoryBroker {
    MemoryBroker::named(name)
}

/// Wait (on tokio's clock, virtual under paused time) until `cond` holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Wait until the group `app1` and `app2` (same id, broker `name`) form has
/// settled with both holding partitions, and let their recoveries finish.
pub async fn settle_two(name: &str, app1: &App, app2: &App) {
    let b = broker(name);
    eventually("the group to settle with two members", || {
        !b.is_rebalancing(app1.id())
            && !app1.assignment().is_empty()
            && !app2.assignment().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Start a worker and wait until it is ready.
pub async fn start(app: &App) -> faustus::WorkerHandle {
    let w = app.start().await.expect("worker starts");
    w.ready().await.expect("worker ready");
    w
}

/// An agent `name` on `topic` that only counts its events: the count.
pub fn count_events(
    app: &faustus::App,
    name: &str,
    topic: &faustus::Topic<String, u64>,
) -> std::sync::Arc<AtomicU64> {
    let seen = std::sync::Arc::new(AtomicU64::new(0));
    app.agent::<String, u64>(name)
        .on(topic)
        .build({
            let seen = seen.clone();
            move |mut s| {
                let seen = seen.clone();
                async move {
                    while futures::StreamExt::next(&mut s).await.is_some() {
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    seen
}

/// The counting app's parts: the `events` topic, the `counts` table (default
/// 0) and the `count` agent.
pub fn counting(app: &faustus::App) -> (faustus::Topic<String, u64>, faustus::Table<String, u64>) {
    let events = app.topic::<String, u64>("events").build().unwrap();
    let counts = app
        .table::<String, u64>("counts")
        .with_default()
        .build()
        .unwrap();
    count_agent(app, &events, &counts);
    (events, counts)
}

/// The `count` agent: adds each event's value to its key's count.
pub fn count_agent(
    app: &faustus::App,
    events: &faustus::Topic<String, u64>,
    counts: &faustus::Table<String, u64>,
) {
    app.agent::<String, u64>("count")
        .on(events)
        .build({
            let counts = counts.clone();
            move |s| {
                let counts = counts.clone();
                async move {
                    let mut items = s.items();
                    while let Some((key, n)) = futures::StreamExt::next(&mut items).await {
                        counts.update(&key.unwrap_or_default(), |c| *c += n).await?;
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
}

/// An example program, built as a program (not a test), next to this test
/// executable: `target/<profile>/examples/<name>`.
///
/// `cargo test --all-targets` compiles examples in test mode only (a plain
/// binary it leaves there may be stale), so the first call runs
/// `cargo build --example <name>` for this profile and target directory (a
/// no-op when up to date); if cargo cannot run, an existing binary is used,
/// and a missing one fails saying what to build.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    use std::collections::HashMap;
    use std::path::Path;
    use std::process::Command;
    use std::sync::{Mutex, OnceLock};

    static BUILT: OnceLock<Mutex<HashMap<String, std::path::PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps");
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    if let Some(target_dir) = profile_dir.parent() {
        cmd.arg("--target-dir").arg(target_dir);
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!("building the {name} example failed ({status}); using what is there")
        }
        Err(e) => {
            eprintln!("could not run cargo to build the {name} example ({e}); using what is there")
        }
    }
    assert!(
        bin.exists(),
        "the {name} example is not built ({} is missing): build it with \
         `cargo build --example {name}` (same profile and target directory)",
        bin.display()
    );
    built.insert(name.to_string(), bin.clone());
    bin
}

/// Read a worker process's startup banner from its stdout (up to the
/// `Ready` line): the banner and the web URL it shows.
pub fn banner_and_url(stdout: impl std::io::Read) -> (String, String) {
    use std::io::BufRead;
    let mut banner = String::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("read the worker's stdout");
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("Ready") {
            break;
        }
    }
    let url = banner
        .lines()
        .find(|l| l.contains("│ web "))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .unwrap_or_else(|| panic!("no web URL in\n{banner}"))
        .to_string();
    (banner, url)
}

/// Kills the child process when dropped (a failing assertion must not leak it).
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real broker under test, from `FAUSTUS_TEST_KAFKA` (`host:port` or a
/// `kafka://` URL), if set.
pub fn kafka_url_from_env() -> Option<String> {
    match std::env::var("FAUSTUS_TEST_KAFKA") {
        Ok(a) if !a.trim().is_empty() => Some(if a.contains("://") {
            a
        } else {
            format!("kafka://{a}")
        }),
        _ => None,
    }
}

/// [`kafka_url_from_env`], saying loudly that the test is skipped when unset.
pub fn kafka_url() -> Option<String> {
    let url = kafka_url_from_env();
    if url.is_none() {
        eprintln!(
            "SKIPPED: set FAUSTUS_TEST_KAFKA=host:port (scripts/test.sh starts a tansu broker \
             and sets it) to run this test against a real Kafka-protocol broker"
        );
    }
    url
}
