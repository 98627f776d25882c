//! Timers on a grid (no drift, slow runs skipped not stacked), crontab on
//! virtual time, leader election and worker signals.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use faustus::TopicPartition;
use parking_lot::Mutex;
use support::*;
use tokio::time::{advance, Instant};

fn offsets(starts: &Mutex<Vec<Instant>>, origin: Instant) -> Vec<u64> {
    starts
        .lock()
        .iter()
        .map(|t| t.duration_since(origin).as_secs())
        .collect()
}

async fn run_for(secs: u64) {
    for _ in 0..secs * 10 {
        advance(Duration::from_millis(100)).await;
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn timers_keep_to_their_grid_and_skip_what_a_slow_run_overran() {
    let app = app_on(&unique("timer-grid"), "timer-grid").build().unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    app.timer("tick", Duration::from_secs(10), move |_app| {
        let s = s.clone();
        async move {
            let n = {
                let mut v = s.lock();
                v.push(Instant::now());
                v.len()
            };
            // Runs take 3 s (no drift from that); the second takes 15 s.
            let took = if n == 2 { 15 } else { 3 };
            tokio::time::sleep(Duration::from_secs(took)).await;
            Ok(())
        }
    });
    let origin = Instant::now();
    let worker = start(&app).await;
    let ready_at = Instant::now().duration_since(origin).as_secs();
    run_for(65).await;
    worker.stop().await.unwrap();
    let got = offsets(&starts, origin);
    let expected: Vec<u64> = [10, 20, 40, 50, 60].iter().map(|t| t + ready_at).collect();
    assert_eq!(
        got, expected,
        "the 30 s tick was overrun by the slow run and skipped"
    );
    let metrics = app
        .handle_request(
            faustus::http::Request::get("/metrics")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    let text = String::from_utf8_lossy(metrics.body()).to_string();
    assert!(
        text.contains("faustus_timer_overruns_total{timer=\"tick\"} 1"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn crontab_runs_at_its_times_on_virtual_time() {
    let app = app_on(&unique("cron"), "cron").build().unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    app.crontab(
        "every-minute",
        "* * * * *",
        "Europe/Paris",
        false,
        move |_app| {
            let s = s.clone();
            async move {
                s.lock().push(Instant::now());
                Ok(())
            }
        },
    )
    .unwrap();
    assert!(app
        .crontab("bad", "99 * * * *", "UTC", false, |_a| async { Ok(()) })
        .unwrap_err()
        .to_string()
        .contains("99 * * * *"));
    let origin = Instant::now();
    let worker = start(&app).await;
    run_for(185).await;
    worker.stop().await.unwrap();
    let got = offsets(&starts, origin);
    assert!(got.len() == 3 || got.len() == 4, "{got:?}");
    assert!(got[0] <= 60, "{got:?}");
    for w in got.windows(2) {
        assert_eq!(w[1] - w[0], 60, "one minute apart: {got:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn only_the_leader_runs_leader_timers_and_another_takes_over() {
    let name = unique("leader");
    let runs: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let make = |who: &'static str| {
        let app = app_on(&name, "leader-app").build().unwrap();
        let runs = runs.clone();
        app.timer_on_leader("leader-tick", Duration::from_secs(1), move |_app| {
            let runs = runs.clone();
            async move {
                runs.lock().push(who);
                Ok(())
            }
        });
        app
    };
    let (a, b) = (make("a"), make("b"));
    assert!(!a.is_leader());
    let wa = start(&a).await;
    eventually("a leads", || a.is_leader()).await;
    let wb = start(&b).await;
    run_for(5).await;
    assert!(a.is_leader() ^ b.is_leader(), "exactly one leader");
    assert!(a.is_leader(), "the leader partition stays with a");
    runs.lock().clear();
    run_for(5).await;
    assert!(!runs.lock().is_empty());
    assert!(runs.lock().iter().all(|w| *w == "a"), "{:?}", runs.lock());
    wa.stop().await.unwrap();
    eventually("b leads", || b.is_leader()).await;
    runs.lock().clear();
    run_for(5).await;
    assert!(!runs.lock().is_empty());
    assert!(runs.lock().iter().all(|w| *w == "b"), "{:?}", runs.lock());
    assert_eq!(
        b.assignment()
            .iter()
            .filter(|tp| *tp.topic == *b.leader_topic())
            .count(),
        1
    );
    wb.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn worker_signals_fire_in_order() {
    let name = unique("signals");
    let app = app_on(&name, "signals").build().unwrap();
    let _posts = app
        .topic::<String, String>("posts")
        .partitions(2)
        .build()
        .unwrap();
    app.agent::<String, String>("a")
        .on(&_posts)
        .build(|mut s| async move {
            use faustus::futures::StreamExt;
            while s.next().await.is_some() {}
            Ok(())
        })
        .unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let fmt = |tps: &[TopicPartition]| {
        let mut v: Vec<String> = tps.iter().map(|tp| tp.to_string()).collect();
        v.sort();
        v.join(",")
    };
    let l = log.clone();
    app.on_worker_init(move |app| l.lock().push(format!("init {}", app.id())));
    let l = log.clone();
    app.on_partitions_assigned(move |_app, tps| {
        let l = l.clone();
        async move { l.lock().push(format!("assigned {}", fmt(&tps))) }
    });
    let l = log.clone();
    app.on_rebalance_complete(move |_app| {
        let l = l.clone();
        async move { l.lock().push("rebalance complete".into()) }
    });
    let l = log.clone();
    app.on_partitions_revoked(move |_app, tps| {
        let l = l.clone();
        async move { l.lock().push(format!("revoked {}", fmt(&tps))) }
    });
    let l = log.clone();
    app.on_before_shutdown(move |_app| l.lock().push("before shutdown".into()));
    let worker = start(&app).await;
    worker.stop().await.unwrap();
    let got = log.lock().clone();
    let first_assigned = got.iter().position(|e| e.starts_with("assigned"));
    assert_eq!(
        got.first().map(String::as_str),
        Some("init signals"),
        "{got:?}"
    );
    assert_eq!(
        got.get(1).map(String::as_str),
        Some("assigned posts[0],posts[1]"),
        "{got:?}"
    );
    assert_eq!(first_assigned, Some(1));
    assert_eq!(
        got.get(2).map(String::as_str),
        Some("rebalance complete"),
        "{got:?}"
    );
    let shutdown = got.iter().position(|e| e == "before shutdown").unwrap();
    let revoked = got.iter().position(|e| e.starts_with("revoked")).unwrap();
    assert!(shutdown < revoked, "{got:?}");
    assert_eq!(got[revoked], "revoked posts[0],posts[1]");
}
