//! Stream-operator and RPC benchmarks.
//!
//! * `groupby`: N readings pre-produced into 8 partitions on `memory://`.
//!   Ours: an agent repartitions them by device (`group_by`, through the
//!   internal repartition topic: forward, delivery ack, then the original's
//!   ack) and counts them. Baseline: the same agent without `group_by`.
//!   Measured from `app.start()` until the agent counted all N. Target ≥ 40%.
//! * `rpc`: an agent yields `n * 2` for every request; 64 tasks each ask in a
//!   loop (`agent.ask`, reply through the app's reply topic) until N round
//!   trips are done. Reported: round trips per second (no baseline). On
//!   `memory://`, or on a real broker with `--brokers host:port`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use faustus::prelude::*;
use faustus::GroupBy;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::{encode, produce, rate, reading, readings_app, BenchResult, Reading, Row};

/// Run one counting pipeline over `values`; returns the time from start until all counted.
async fn count_pipeline(values: &[Bytes], group: bool) -> BenchResult<Duration> {
    let n = values.len() as u64;
    let id = if group {
        "bench-groupby"
    } else {
        "bench-groupby-base"
    };
    let (app, topic) = readings_app(id)?;
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    {
        let (count, done) = (count.clone(), done.clone());
        app.agent::<(), Reading>("count")
            .on(&topic)
            .build(move |readings| {
                let (count, done) = (count.clone(), done.clone());
                async move {
                    let mut s = if group {
                        let by = GroupBy::new("device", |r: &Reading| Ok(r.device.clone()))
                            .partitions(crate::PARTITIONS);
                        readings.group_by(by)?.items().map(|(_, v)| v).boxed()
                    } else {
                        readings.boxed()
                    };
                    while let Some(_r) = s.next().await {
                        if count.fetch_add(1, Ordering::Relaxed) + 1 == n {
                            done.notify_one();
                        }
                    }
                    Ok(())
                }
            })?;
    }
    produce(&topic, values).await?;
    let cs0 = crate::context_switches();
    let t0 = Instant::now();
    let worker = app.start().await?;
    worker.ready().await?;
    if count.load(Ordering::Relaxed) < n {
        done.notified().await;
    }
    let took = t0.elapsed();
    let cs = crate::context_switches() - cs0;
    let commits = app.monitor().snapshot().commits;
    worker.stop().await?;
    println!("  ({cs} context switches, {commits} commits)");
    let got = count.load(Ordering::Relaxed);
    if got != n {
        return Err(format!("groupby: counted {got}, expected {n}").into());
    }
    Ok(took)
}

pub(crate) async fn groupby(n: u64) -> BenchResult<Row> {
    let mut rng = StdRng::seed_from_u64(7);
    let values: Vec<Bytes> = (0..n).map(|i| encode(&reading(i, &mut rng))).collect();
    println!("groupby: {n} readings, 8 partitions, repartitioned by device into 8");
    let base = count_pipeline(&values, false).await?;
    println!("  without group_by: {base:.3?}");
    let ours = count_pipeline(&values, true).await?;
    println!("  with group_by:    {ours:.3?}");
    Ok(Row {
        workload: "group_by repartition (memory)",
        ours: rate(n, ours),
        baseline: rate(n, base),
        target: 0.4,
    })
}

pub(crate) async fn rpc(n: u64, brokers: Option<&str>) -> BenchResult<f64> {
    let broker = match brokers {
        None => "memory://".to_string(),
        Some(b) if b.contains("://") => b.to_string(),
        Some(b) => format!("kafka://{b}"),
    };
    let id = format!("bench-rpc-{}", std::process::id());
    let app = faustus::app(id.as_str())
        .broker(broker.as_str())
        .store("memory://")
        .topic_partitions(crate::PARTITIONS)
        .reply_create_topic(true)
        .broker_commit_interval(Duration::from_millis(100))
        .build()?;
    let double = app
        .agent::<(), u64>("double")
        .yields::<u64>()
        .build(|s| s.map(|n| Ok(n * 2)))?;
    let worker = app.start().await?;
    worker.ready().await?;
    // Warm up: the reply consumer starts on the first ask.
    let _: u64 = double.ask(1, Duration::from_secs(60)).await?;
    const CONCURRENT: u64 = 64;
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENT {
        let (double, next) = (double.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), faustus::Error>(());
                }
                let r: u64 = double.ask(i, Duration::from_secs(60)).await?;
                if r != i * 2 {
                    return Err(faustus::Error::State(format!("ask({i}) replied {r}")));
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let took = t0.elapsed();
    worker.stop().await?;
    let r = rate(n, took);
    println!(
        "rpc on {broker}: {n} asks, {CONCURRENT} concurrent: {took:.3?}, {r:.0} round trips/s"
    );
    Ok(r)
}
