//! The dashboard at `/` in headless Chromium: it loads and its script fills
//! in live numbers from `/stats`.
//!
//! Needs the `chromium` program (Debian package `chromium`; `scripts/test.sh`
//! installs it when missing). Without it the test prints why and passes,
//! unless `CI=true` or `FAUSTUS_REQUIRE_CHROMIUM=1`, where it fails.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../examples/word_count.rs"]
#[allow(dead_code, unreachable_pub)]
mod word_count;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FAUSTUS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("FAUSTUS_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1")
}

/// Load `url` in headless Chromium, let its scripts run for `budget_ms` of
/// virtual time, and return the DOM.
async fn dump_dom(chromium: &PathBuf, url: &str, budget_ms: u32) -> String {
    let profile = std::env::temp_dir().join(unique("faustus-chromium"));
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    // Real time: the page talks to a real server in this process.
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromium did not finish loading {url} in 60 s");
    }
    let dom = reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    dom
}

/// The text of the element with `id` in `dom`.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    &rest[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_numbers_in_chromium() {
    let Some(chromium) = chromium() else {
        if required() {
            panic!("chromium is not installed (CI=true or FAUSTUS_REQUIRE_CHROMIUM=1 require it): apt-get install chromium chromium-driver");
        }
        eprintln!("SKIPPED the_dashboard_shows_live_numbers_in_chromium: no chromium on PATH (apt-get install chromium chromium-driver; set FAUSTUS_REQUIRE_CHROMIUM=1 to make this a failure)");
        return;
    };
    let name = unique("dashboard");
    let app = app_on(&name, "dashboard-app")
        .web_enabled(true)
        .web_host("127.0.0.1")
        .web_port(0u16)
        .build()
        .unwrap();
    let wc = word_count::build(app).unwrap();
    let worker = start(&wc.app).await;
    wc.posts
        .send("p1".into(), "one two three".into())
        .await
        .unwrap();
    eventually_counted(&wc, 3).await;
    let url = format!("{}/", wc.app.web_url().unwrap());

    let dom = dump_dom(&chromium, &url, 3000).await;
    assert!(dom.contains("<h1>dashboard-app</h1>"), "{dom}");
    assert_eq!(text_of(&dom, "status"), "ready", "{dom}");
    let received: u64 = text_of(&dom, "messages_received").parse().unwrap();
    let snap = wc.app.monitor().snapshot();
    assert_eq!(received, snap.messages_received, "{dom}");
    assert!(received >= 4, "1 post + 3 words: {dom}");
    assert_ne!(text_of(&dom, "updated"), "never");
    assert!(dom.contains("@count_words"), "agents listed: {dom}");
    assert!(dom.contains("word_counts"), "tables listed: {dom}");
    assert!(text_of(&dom, "assigned").contains("posts["), "{dom}");

    // More work: a new page load shows the new numbers.
    wc.posts
        .send("p2".into(), "four five".into())
        .await
        .unwrap();
    eventually_counted(&wc, 5).await;
    let dom = dump_dom(&chromium, &url, 3000).await;
    let now: u64 = text_of(&dom, "messages_received").parse().unwrap();
    assert_eq!(now, received + 3, "{dom}");
    worker.stop().await.unwrap();
}

async fn eventually_counted(wc: &word_count::WordCount, n: u64) {
    for _ in 0..1000 {
        if wc.counted.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("words not counted");
}
