//! A whole worker on Kafka (librdkafka's mock cluster): it keeps running while
//! the broker is away (not ready, naming the broker) and resumes when it
//! returns, nothing lost.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus_core::{App, Registry, TopicPartition};
use futures::StreamExt;
use support::worker::{start_ready, wait_for_reasons};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_survives_a_lost_broker_and_resumes_when_it_returns() {
    let cluster = support::MockKafka::start(1);
    let registry = Registry::new();
    {
        let cluster = cluster.clone();
        registry.register_transport("mock", Arc::new(move |_url| Ok(cluster.transport())));
    }
    faustus_store_memory::register(&registry);
    let app = App::builder("broker-loss")
        .registry(registry)
        .env(Default::default())
        .broker("mock://")
        .store("memory://")
        .broker_commit_interval(Duration::from_millis(200))
        .broker_check_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let numbers = app
        .topic::<String, u64>("numbers")
        .partitions(1)
        .build()
        .unwrap();
    let sum = Arc::new(AtomicU64::new(0));
    app.agent::<String, u64>("sum")
        .on(&numbers)
        .build({
            let sum = sum.clone();
            move |mut s| {
                let sum = sum.clone();
                async move {
                    while let Some(v) = s.next().await {
                        sum.fetch_add(v, Ordering::SeqCst);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let worker = start_ready(&app).await;
    let tp = TopicPartition::new("numbers", 0);
    let md = numbers.send("k".into(), 1).await.unwrap().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), app.processed(&tp, md.offset))
        .await
        .expect("processed before the outage");

    cluster.broker_down(1).await;
    // While the broker is away a send is accepted and waits; the worker runs on.
    let pending = numbers
        .send_soon(Some(&"k".to_string()), &2, Default::default())
        .await
        .unwrap();
    // /ready says why the worker is not ready: the broker.
    let reasons = wait_for_reasons(&app, Duration::from_secs(60), |r| {
        r.iter().any(|r| r.starts_with("broker: "))
    })
    .await;
    assert!(
        reasons.iter().any(|r| r.contains("does not answer")),
        "{reasons:?}"
    );
    assert!(!app.is_ready());
    assert_eq!(sum.load(Ordering::SeqCst), 1);

    cluster.broker_up(1).await;
    let reasons = wait_for_reasons(&app, Duration::from_secs(60), |r| {
        !r.iter().any(|r| r.starts_with("broker: "))
    })
    .await;
    assert!(reasons.is_empty(), "ready again: {reasons:?}");
    assert!(app.is_ready());
    let md = tokio::time::timeout(Duration::from_secs(90), pending)
        .await
        .expect("delivered after the broker came back")
        .unwrap();
    let md3 = tokio::time::timeout(Duration::from_secs(60), async {
        numbers.send("k".into(), 4).await?.await
    })
    .await
    .expect("sends work again")
    .unwrap();
    assert!(md3.offset > md.offset);
    tokio::time::timeout(Duration::from_secs(90), app.processed(&tp, md3.offset))
        .await
        .expect("the worker resumed consuming");
    assert_eq!(
        sum.load(Ordering::SeqCst),
        1 + 2 + 4,
        "nothing lost, nothing twice"
    );
    worker.stop().await.unwrap();
}
