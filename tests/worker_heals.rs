//! A worker never lingers broken: a failed conductor is restarted (a new
//! consumer rejoins, tables are recovered, processing resumes), and one that
//! keeps failing stops the whole worker with its error — the handle's signal
//! fires, so `App::run` and the `worker` command return instead of waiting.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::{Error, TopicPartition};
use support::hooked::{take_one, Hooked, PollHook};
use support::*;

/// Group consumers fail their polls with a fatal (non-retryable) error
/// while `failures` is above zero (each failed poll takes one;
/// `usize::MAX` fails forever).
#[derive(Debug)]
struct FailingPolls(Arc<AtomicUsize>);

impl PollHook for FailingPolls {
    fn before(&self) -> Option<Error> {
        take_one(&self.0)
            .then(|| Error::State("list offsets of counts-changelog[0]: UnknownPartition".into()))
    }
}

/// A memory broker with [`FailingPolls`].
struct Flaky {
    hooked: Hooked,
    failures: Arc<AtomicUsize>,
    consumers: Arc<AtomicUsize>,
}

fn flaky_app(flaky: &Flaky, id: &str) -> faustus::App {
    flaky
        .hooked
        .app("flaky", id)
        .web_enabled(false)
        .topic_partitions(2u32)
        .build()
        .unwrap()
}

fn flaky(prefix: &str) -> Flaky {
    let failures = Arc::new(AtomicUsize::new(0));
    let hooked = Hooked::new(unique(prefix), Arc::new(FailingPolls(failures.clone())));
    Flaky {
        consumers: hooked.consumers.clone(),
        hooked,
        failures,
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_conductor_is_restarted_and_processing_resumes_exactly() {
    let f = flaky("heal");
    let app = flaky_app(&f, "heal");
    let (events, counts) = counting(&app);
    let worker = start(&app).await;
    for i in 0..20u64 {
        events.send(format!("k{}", i % 4), 1).await.unwrap();
    }
    eventually("the first 20 events counted", || {
        futures::executor::block_on(async {
            let mut total = 0;
            for k in 0..4 {
                total += counts.get(&format!("k{k}")).await.unwrap().unwrap_or(0);
            }
            total == 20
        })
    })
    .await;
    assert!(app.is_ready());

    // One fatal poll error: the conductor fails, is reported, restarts.
    f.failures.store(1, Ordering::SeqCst);
    eventually("the failure to show in the worker's health", || {
        !app.is_ready()
    })
    .await;
    let reasons = app.not_ready_reasons().join("; ");
    assert!(
        reasons.contains("conductor") && reasons.contains("UnknownPartition"),
        "/ready names the conductor and its error: {reasons}"
    );
    eventually("a new consumer and ready again", || {
        f.consumers.load(Ordering::SeqCst) == 2 && app.is_ready()
    })
    .await;

    // The restarted conductor serves the partitions: more events, counted
    // once each on top of the recovered counts.
    for i in 0..20u64 {
        events.send(format!("k{}", i % 4), 1).await.unwrap();
    }
    eventually("all 40 events counted", || {
        futures::executor::block_on(async {
            let mut total = 0;
            for k in 0..4 {
                total += counts.get(&format!("k{k}")).await.unwrap().unwrap_or(0);
            }
            total == 40
        })
    })
    .await;
    for k in 0..4 {
        assert_eq!(counts.get(&format!("k{k}")).await.unwrap(), Some(10));
    }
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_conductor_that_keeps_failing_stops_the_worker_with_its_error() {
    let f = flaky("give-up");
    let app = flaky_app(&f, "give-up");
    let (events, _counts) = counting(&app);
    let worker = start(&app).await;
    events.send("k".into(), 1).await.unwrap();
    f.failures.store(usize::MAX, Ordering::SeqCst);
    // Whoever waits on the worker's signal (App::run, the worker command)
    // wakes up: the worker does not linger.
    let signal = worker.signal();
    tokio::time::timeout(Duration::from_secs(300), signal.wait())
        .await
        .expect("the worker stops by itself after its restarts");
    let err = worker
        .wait()
        .await
        .expect_err("the worker reports the failure");
    assert!(
        err.to_string().contains("UnknownPartition"),
        "the error says what failed: {err}"
    );
    // A few restarts were tried before giving up.
    assert!(f.consumers.load(Ordering::SeqCst) > 2);
}

/// A store that fails its writes (a full disk): the flush is retried at each
/// commit interval, no offset is committed meanwhile, `/ready` says why;
/// once writes succeed again nothing is lost and commits resume.
#[tokio::test(start_paused = true)]
async fn a_store_failing_its_writes_holds_the_commits_and_loses_nothing() {
    use faustus_testkit::faults::FaultyStore;
    let name = unique("store-full");
    let faulty = FaultyStore::new(faustus_store_memory::MemoryStore::new());
    let registry = faustus::Registry::new();
    faustus::register_default_drivers(&registry);
    faulty.register(&registry, "faulty");
    let app = app_with(
        &registry,
        "store-full",
        &format!("memory://{name}"),
        "faulty://",
    )
    .web_enabled(false)
    .topic_partitions(1u32)
    .build()
    .unwrap();
    let (events, counts) = counting(&app);
    let worker = start(&app).await;
    let tp = TopicPartition::new("events", 0);
    events.send("k".into(), 1).await.unwrap();
    eventually("the first event committed", || {
        broker(&name).committed("store-full", &tp) == Some(1)
    })
    .await;

    faulty.fail_writes(true);
    for _ in 0..5 {
        events.send("k".into(), 1).await.unwrap();
    }
    eventually("a failed flush", || faulty.failed_writes() > 1).await;
    eventually("the store problem on /ready", || !app.is_ready()).await;
    let reasons = app.not_ready_reasons().join("; ");
    assert!(
        reasons.contains("store"),
        "/ready names the store: {reasons}"
    );
    // Several intervals later: still nothing committed past the first event.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(broker(&name).committed("store-full", &tp), Some(1));

    let written = faulty.writes();
    faulty.fail_writes(false);
    eventually("commits resume", || {
        broker(&name).committed("store-full", &tp) == Some(6)
    })
    .await;
    eventually("ready again", || app.is_ready()).await;
    assert_eq!(counts.get(&"k".to_string()).await.unwrap(), Some(6));
    // The held-back changes were written once the store accepted writes.
    assert!(faulty.writes() > written);
    worker.stop().await.unwrap();
}
