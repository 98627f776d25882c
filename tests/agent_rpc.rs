//! Agent RPC: ask, cast, map, kvmap, join, kvjoin — on one worker, across two
//! workers of one app on a named memory broker, and on a real Kafka broker.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use faustus::prelude::*;
use faustus::rpc::{CORRELATION_ID, REPLY_TO};
use faustus::transport::Record;
use faustus::Error;
use parking_lot::Mutex;
use support::*;

const T: Duration = Duration::from_secs(10);

/// An app with a `square` agent on `numbers` (4 partitions) that replies
/// `n * n` and records which app answered; 0 gets no reply.
fn rpc_app(
    broker_name: &str,
    id: &str,
    answered: Arc<Mutex<Vec<(String, u64)>>>,
    label: &str,
) -> (App, Agent<String, u64>) {
    let app = app_on(broker_name, id)
        .reply_create_topic(true)
        .build()
        .unwrap();
    let numbers = app
        .topic::<String, u64>("numbers")
        .partitions(4)
        .build()
        .unwrap();
    let label = label.to_string();
    let square = app
        .agent::<String, u64>("square")
        .on(&numbers)
        .yields::<u64>()
        .build(move |s| {
            let (answered, label) = (answered.clone(), label.clone());
            s.filter(|n| *n != 0).map(move |n| {
                answered.lock().push((label.clone(), n));
                Ok(n * n)
            })
        })
        .unwrap();
    (app, square)
}

#[tokio::test(start_paused = true)]
async fn ask_map_join_kvmap_kvjoin_and_cast_on_one_worker() {
    let name = unique("rpc");
    let answered = Arc::new(Mutex::new(Vec::new()));
    let (app, square) = rpc_app(&name, "rpc", answered.clone(), "w");
    let worker = start(&app).await;

    let nine: u64 = square.ask(3, T).await.unwrap();
    assert_eq!(nine, 9);
    let keyed: u64 = square.ask_key("k".into(), 4, T).await.unwrap();
    assert_eq!(keyed, 16);

    let joined: Vec<u64> = square.join(1..=20, T).await.unwrap();
    assert_eq!(joined, (1..=20u64).map(|n| n * n).collect::<Vec<_>>());

    let kvjoined: Vec<u64> = square
        .kvjoin([("a".to_string(), 5), ("b".to_string(), 6)], T)
        .await
        .unwrap();
    assert_eq!(kvjoined, vec![25, 36]);

    let mut mapped: Vec<u64> = square
        .map::<u64>([7, 8, 9], T)
        .map(|r| r.unwrap())
        .collect()
        .await;
    mapped.sort();
    assert_eq!(mapped, vec![49, 64, 81]);

    let kv: BTreeSet<(String, u64)> = square
        .kvmap::<u64>([("x".to_string(), 2), ("y".to_string(), 10)], T)
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(kv, BTreeSet::from([("x".into(), 4), ("y".into(), 100)]));

    // cast: processed, no reply expected.
    square.cast(11).await.unwrap();
    eventually("cast processed", || {
        answered.lock().iter().any(|(_, n)| *n == 11)
    })
    .await;
    // The reply topic is this app's own `{reply_to_prefix}{uuid}`.
    let reply_to = app.settings().reply_to.clone();
    assert!(reply_to.starts_with("f-reply-"));
    assert!(broker(&name).topics().contains(&reply_to));
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn no_reply_is_a_timeout_error_and_a_bad_reply_a_decode_error_with_coordinates() {
    let name = unique("rpc-bad");
    let (app, square) = rpc_app(&name, "rpc-bad", Default::default(), "w");
    let worker = start(&app).await;

    let began = tokio::time::Instant::now();
    let e = square
        .ask::<u64>(0, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("@square"), "{e}");
    assert!(began.elapsed() >= Duration::from_secs(3));
    assert!(began.elapsed() < Duration::from_secs(4));

    // join with one unanswered request: a timeout, not a hang.
    let e = square
        .join::<u64>([1, 0, 2], Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");

    // The agent replies with a number; asking for a string cannot decode it.
    let e = square.ask::<String>(5, T).await.unwrap_err();
    match &e {
        Error::Decode { at, .. } => assert_eq!(at.topic, app.settings().reply_to),
        other => panic!("expected a decode error, got {other}"),
    }
    // The worker is fine.
    assert_eq!(square.ask::<u64>(2, T).await.unwrap(), 4);
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn missing_reply_topic_is_a_config_error_naming_reply_to() {
    let name = unique("rpc-none");
    let app = app_on(&name, "rpc-none")
        .reply_to_prefix("mine-")
        .build()
        .unwrap();
    assert!(app.settings().reply_to.starts_with("mine-"));
    let a = app
        .agent::<(), u64>("echo")
        .yields::<u64>()
        .build(|s| s.map(Ok))
        .unwrap();
    let worker = start(&app).await;
    let e = a.ask::<u64>(1, T).await.unwrap_err();
    assert!(e.to_string().contains("reply_to"), "{e}");
    assert!(e.to_string().contains("reply_create_topic"), "{e}");
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn replies_older_than_reply_expires_are_discarded() {
    let name = unique("rpc-expire");
    let app = app_on(&name, "rpc-expire")
        .reply_create_topic(true)
        .reply_expires(Duration::from_secs(60))
        .build()
        .unwrap();
    // An agent that never replies, but tells the test each request's headers.
    let requests: Arc<Mutex<Vec<faustus::Message>>> = Default::default();
    let silent = app
        .agent::<(), u64>("silent")
        .build({
            let requests = requests.clone();
            move |s| {
                let requests = requests.clone();
                async move {
                    let mut events = s.events();
                    while let Some(e) = events.next().await {
                        requests.lock().push(e.message().unwrap().clone());
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start(&app).await;
    let asking = tokio::spawn({
        let silent = silent.clone();
        async move { silent.ask::<u64>(1, Duration::from_secs(30)).await }
    });
    eventually("request seen", || !requests.lock().is_empty()).await;
    let req = requests.lock()[0].clone();
    let header = |k: &str| req.headers.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let reply_to = String::from_utf8(header(REPLY_TO).to_vec()).unwrap();
    let id = header(CORRELATION_ID);
    let producer = app.producer().await.unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let send = |value: &'static [u8], ts: i64| {
        let mut r = Record::new(reply_to.as_str(), Some(id.clone()), Some(value.into()));
        r.headers = vec![(CORRELATION_ID.to_string(), id.clone())];
        r.timestamp_ms = Some(ts);
        let p = producer.clone();
        async move { p.send(r).await.unwrap().await.unwrap() }
    };
    // Two hours old: dropped. Fresh: delivered.
    send(b"111", now_ms - 2 * 3600 * 1000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!asking.is_finished());
    send(b"222", now_ms).await;
    assert_eq!(asking.await.unwrap().unwrap(), 222);
    worker.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_agent_on_another_worker_answers() {
    let name = unique("rpc-two");
    let answered = Arc::new(Mutex::new(Vec::new()));
    let (app_a, square_a) = rpc_app(&name, "rpc-two", answered.clone(), "a");
    let (app_b, square_b) = rpc_app(&name, "rpc-two", answered.clone(), "b");
    let wa = start(&app_a).await;
    let wb = start(&app_b).await;
    eventually("partitions shared", || {
        app_a.assignment().len() == 2 && app_b.assignment().len() == 2
    })
    .await;
    // Keys spread over all partitions: half of them are served by the other worker.
    let items: Vec<(String, u64)> = (1..=40u64).map(|n| (format!("key-{n}"), n)).collect();
    let from_a: Vec<u64> = square_a.kvjoin(items.clone(), T).await.unwrap();
    let from_b: Vec<u64> = square_b.kvjoin(items.clone(), T).await.unwrap();
    let expected: Vec<u64> = (1..=40u64).map(|n| n * n).collect();
    assert_eq!(from_a, expected);
    assert_eq!(from_b, expected);
    let labels: BTreeSet<String> = answered.lock().iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(labels, BTreeSet::from(["a".to_string(), "b".to_string()]));
    assert_ne!(app_a.settings().reply_to, app_b.settings().reply_to);
    wb.stop().await.unwrap();
    wa.stop().await.unwrap();
}

/// The same across two workers on a real Kafka-protocol broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker: run by scripts/test.sh"]
async fn kafka_the_agent_on_another_worker_answers() {
    let Some(url) = kafka_url_from_env() else {
        panic!("set FAUSTUS_TEST_KAFKA=host:port (scripts/test.sh does)");
    };
    let id = unique("rpc-kafka");
    let topic = format!("{id}-numbers");
    let make = |label: &'static str, answered: Arc<Mutex<Vec<(String, u64)>>>| {
        let app = faustus::app(&id)
            .env(Default::default())
            .broker(url.clone())
            .store("memory://")
            .reply_create_topic(true)
            .broker_commit_interval(Duration::from_millis(200))
            .build()
            .unwrap();
        let numbers = app
            .topic::<String, u64>(topic.clone())
            .partitions(4)
            .build()
            .unwrap();
        let square = app
            .agent::<String, u64>("square")
            .on(&numbers)
            .yields::<u64>()
            .build(move |s| {
                let answered = answered.clone();
                s.map(move |n| {
                    answered.lock().push((label.to_string(), n));
                    Ok(n * n)
                })
            })
            .unwrap();
        (app, square)
    };
    let answered = Arc::new(Mutex::new(Vec::new()));
    let (app_a, square_a) = make("a", answered.clone());
    let (app_b, _square_b) = make("b", answered.clone());
    let wa = start(&app_a).await;
    let wb = start(&app_b).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    while app_a.assignment().len() + app_b.assignment().len() != 4
        || app_a.assignment().is_empty()
        || app_b.assignment().is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "no rebalance");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let items: Vec<(String, u64)> = (1..=40u64).map(|n| (format!("key-{n}"), n)).collect();
    let got: Vec<u64> = square_a
        .kvjoin(items, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(got, (1..=40u64).map(|n| n * n).collect::<Vec<_>>());
    let labels: BTreeSet<String> = answered.lock().iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(labels, BTreeSet::from(["a".to_string(), "b".to_string()]));
    wb.stop().await.unwrap();
    wa.stop().await.unwrap();
}
