//! Streams created in tasks (`topic.stream()`), services and codecs end to end.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use faustus::prelude::*;
use faustus::{Service, ShutdownSignal, TopicPartition};
use parking_lot::Mutex;
use support::*;

#[tokio::test(start_paused = true)]
async fn a_task_stream_that_is_dropped_leaves_the_topic_and_does_not_block_commits() {
    let name = unique("task-stream");
    let app = app_on(&name, "task-stream").build().unwrap();
    let readings = app
        .topic::<String, u64>("readings")
        .partitions(1)
        .build()
        .unwrap();
    let first_three = Arc::new(Mutex::new(Vec::new()));
    app.task("read_three", {
        let (readings, first_three) = (readings.clone(), first_three.clone());
        move |_app| {
            let (readings, first_three) = (readings.clone(), first_three.clone());
            async move {
                let mut s = readings.stream();
                while let Some(v) = s.next().await {
                    first_three.lock().push(v);
                    if first_three.lock().len() == 3 {
                        break; // drop the stream: unsubscribe
                    }
                }
                Ok(())
            }
        }
    });
    let total = Arc::new(AtomicU64::new(0));
    app.agent::<String, u64>("total")
        .on(&readings)
        .build({
            let total = total.clone();
            move |mut s| {
                let total = total.clone();
                async move {
                    while let Some(v) = s.next().await {
                        total.fetch_add(v, Ordering::SeqCst);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let w = start(&app).await;
    eventually("the task subscribed", || {
        app.stream_buffer_peaks()
            .iter()
            .filter(|(t, _)| t == "readings")
            .count()
            == 2
    })
    .await;
    for v in 1..=50 {
        readings.send("k".into(), v).await.unwrap();
    }
    let tp = TopicPartition::new("readings", 0);
    eventually("all 50 committed", || {
        broker(&name).committed("task-stream", &tp) == Some(50)
    })
    .await;
    assert_eq!(first_three.lock().len(), 3);
    assert_eq!(total.load(Ordering::SeqCst), (1..=50).sum::<u64>());
    w.stop().await.unwrap();
}

struct Recorder(Arc<Mutex<Vec<&'static str>>>);

#[async_trait::async_trait]
impl Service for Recorder {
    async fn on_start(&self, _app: &App) -> faustus::Result<()> {
        self.0.lock().push("start");
        Ok(())
    }
    async fn run(&self, _app: App, stop: ShutdownSignal) -> faustus::Result<()> {
        self.0.lock().push("running");
        stop.wait().await;
        Ok(())
    }
    async fn on_stop(&self, _app: &App) -> faustus::Result<()> {
        self.0.lock().push("stop");
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn services_start_run_and_stop_with_the_worker() {
    let app = app_on(&unique("svc"), "svc").build().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    app.service(Recorder(log.clone()));
    let w = start(&app).await;
    eventually("service running", || log.lock().contains(&"running")).await;
    w.stop().await.unwrap();
    assert_eq!(*log.lock(), vec!["start", "running", "stop"]);
}

#[tokio::test(start_paused = true)]
async fn composed_and_custom_codecs_round_trip_through_a_topic() {
    #[derive(Debug)]
    struct Reverse;
    impl faustus::codec::Codec for Reverse {
        fn encode(&self, data: bytes::Bytes) -> Result<bytes::Bytes, String> {
            Ok(data.iter().rev().copied().collect::<Vec<u8>>().into())
        }
        fn decode(&self, data: bytes::Bytes) -> Result<bytes::Bytes, String> {
            self.encode(data)
        }
    }
    let name = unique("codecs");
    let app = app_on(&name, "codecs").build().unwrap();
    app.registry().register_codec("reverse", Arc::new(Reverse));
    let t = app
        .topic::<String, Vec<u32>>("coded")
        .partitions(1)
        .value_serializer("json|reverse|binary")
        .build()
        .unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    app.agent::<String, Vec<u32>>("reader")
        .on(&t)
        .build({
            let got = got.clone();
            move |mut s| {
                let got = got.clone();
                async move {
                    while let Some(v) = s.next().await {
                        got.lock().push(v);
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let w = start(&app).await;
    let md = t
        .send("k".into(), vec![1, 2, 3])
        .await
        .unwrap()
        .await
        .unwrap();
    app.processed(&TopicPartition::new("coded", 0), md.offset)
        .await;
    assert_eq!(*got.lock(), vec![vec![1, 2, 3]]);
    // On the wire: base64 of the reversed JSON.
    let raw = broker(&name).messages("coded", 0)[0].value.clone().unwrap();
    assert_eq!(&raw[..], b"XTMsMiwxWw==");
    w.stop().await.unwrap();
}
