//! `kafka-count`: a stateful count per key (no repartition) on a real
//! Kafka-protocol broker, written as a README reader would: an App on
//! `kafka://…` with its tables in `redb://` (a fresh temporary directory), a
//! keyed topic, a non-windowed changelog-backed table `counts` with a default,
//! and an agent doing `counts[key] += 1` (`counts.update(key, |n| *n += 1)`)
//! for each event.
//!
//! The input is in the topic before the worker starts: N ~100-byte JSON
//! readings keyed by the JSON string `"device-%05d" % (i % 1000)` in an
//! 8-partition topic (murmur2 partitioning of the key: one key, one
//! partition). `--topic T` reads an existing topic pre-produced that way
//! (`bench/compare/peers/produce.py --kind keyed`, as for Quix's count);
//! without it the bench creates a topic and pre-produces the same keys and
//! values with a bare rdkafka producer.
//!
//! Measured the way `bench/compare/peers/quix_apps.py count` is: the agent
//! takes a monotonic timestamp at its first event and after the N-th
//! increment; the rate is N over that window, and start → first event
//! (mostly the group join) is reported separately. The broker URL carries
//! `session.timeout.ms=10000&heartbeat.interval.ms=1000` (tansu's join
//! waits half the session timeout). Then every key's count in the table
//! must equal the number of values produced with that key (else the run
//! fails), and the worker is stopped (its final commit writes the
//! changelog and redb). No in-process baseline: its comparison is Quix's
//! count in `bench/compare`. Prints a `RESULT {json}` line (the peers'
//! format) for `bench/compare/compare.py`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::kafka::{client, send_retrying, unique, Broker, Seen};
use crate::{reading, rss_mib, BenchResult, Reading, PARTITIONS};

/// Distinct keys of the keyed readings (`KEYED_KEYS` of the peers' `common.py`).
const KEYS: u64 = 1000;

/// Give up when no event arrives for this long (the group join included).
const STALL: Duration = Duration::from_secs(120);

/// The key of reading `i`: `common.keyed_key(i)`.
fn keyed_key(i: u64) -> String {
    format!("device-{:05}", i % KEYS)
}

/// What `n` keyed readings count to, per key.
fn expected_counts(n: u64) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for i in 0..n.min(KEYS) {
        let extra = u64::from(i < n % KEYS);
        counts.insert(keyed_key(i), n / KEYS + extra);
    }
    counts
}

/// Pre-produce `n` keyed readings into `topic` with a bare producer (JSON
/// key and value, murmur2 partitioning: what `produce.py --kind keyed` does).
async fn preproduce_keyed(bootstrap: &str, topic: &str, n: u64) -> BenchResult<Duration> {
    let p: FutureProducer = client(bootstrap)
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .create()?;
    let mut rng = StdRng::seed_from_u64(42);
    let t0 = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..n {
        let key = serde_json::to_vec(&keyed_key(i))?;
        let value = serde_json::to_vec(&reading(i, &mut rng))?;
        pending.push(send_retrying(&p, FutureRecord::to(topic).key(&key).payload(&value)).await);
        if pending.len() >= 10_000 {
            for f in pending.drain(..) {
                f.await?.map_err(|(e, _)| format!("pre-produce: {e}"))?;
            }
        }
    }
    for f in pending {
        f.await?.map_err(|(e, _)| format!("pre-produce: {e}"))?;
    }
    Ok(t0.elapsed())
}

/// A fresh directory for the redb files.
fn fresh_dir() -> BenchResult<PathBuf> {
    let d = std::env::temp_dir().join(unique("faustus-bench-kafka-count"));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Run the count on the broker at `brokers` (`host:port`) over `topic`
/// (pre-produced) or a fresh topic with `n` readings. (Not on librdkafka's
/// mock cluster: it has no CreateTopics API for the table's changelog.)
pub(crate) async fn kafka_count(brokers: &str, topic: Option<&str>, n: u64) -> BenchResult<()> {
    if brokers == "mock" {
        return Err(
            "kafka-count needs a real broker (--brokers host:port): librdkafka's mock cluster \
             cannot create the table's changelog topic"
                .into(),
        );
    }
    let broker = Broker::Real(brokers.to_string());
    let bootstrap = broker.bootstrap();
    let topic = match topic {
        Some(t) => {
            println!(
                "kafka-count on {bootstrap}: {n} keyed values ({KEYS} keys) pre-produced in {t}"
            );
            t.to_string()
        }
        None => {
            let t = unique("bench-count");
            broker.create_topic(&t).await?;
            let took = preproduce_keyed(&bootstrap, &t, n).await?;
            println!(
                "kafka-count on {bootstrap}: {n} keyed values ({KEYS} keys) pre-produced in {t} ({took:.2?})"
            );
            t
        }
    };
    let dir = fresh_dir()?;
    let result = count(&bootstrap, &topic, n, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(broker);
    result
}

async fn count(bootstrap: &str, topic: &str, n: u64, dir: &std::path::Path) -> BenchResult<()> {
    let start = Instant::now();

    // ---- the user code
    let app = faustus::app(unique("bench-kafka-count"))
        .env(Default::default())
        .broker(format!(
            "kafka://{bootstrap}?session.timeout.ms=10000&heartbeat.interval.ms=1000"
        ))
        .store(format!("redb://{}", dir.display()))
        .topic_partitions(PARTITIONS)
        .web_enabled(false)
        .build()?;
    let readings = app.topic::<String, Reading>(topic).build()?;
    let counts = app
        .table::<String, u64>("counts")
        .with_default()
        .help("Readings per device.")
        .build()?;
    let seen = Arc::new(Seen::default());
    app.agent::<String, Reading>("count").on(&readings).build({
        let counts = counts.clone();
        let seen = seen.clone();
        move |stream| {
            let counts = counts.clone();
            let seen = seen.clone();
            async move {
                let mut items = stream.items();
                while let Some((key, _reading)) = items.next().await {
                    // A value without a key is left out of the counts
                    // (the exactness check below then fails).
                    if let Some(key) = key {
                        counts.update(key.as_str(), |n| *n += 1).await?;
                    }
                    // As Quix's `tick`: the first and the N-th counted.
                    seen.tick(n);
                }
                Ok(())
            }
        }
    })?;

    // ---- the run
    let worker = app.start().await?;
    worker.ready().await?;
    // Ready: assigned and the table recovered (empty here); the consumer
    // may already be fetching.
    let ready = start.elapsed();
    let mut last_seen = (0u64, Instant::now());
    loop {
        let c = seen.count.load(Ordering::Relaxed);
        if c >= n {
            break;
        }
        if c != last_seen.0 {
            last_seen = (c, Instant::now());
        } else if last_seen.1.elapsed() > STALL {
            let _ = worker.stop().await;
            return Err(format!(
                "kafka-count: the agent counted {c} of {n} and nothing more for {STALL:?}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let Some((first, last)) = seen.window() else {
        return Err("kafka-count: no timestamps".into());
    };
    let counted = seen.count.load(Ordering::Relaxed);

    // ---- exactness: every key's count is what was produced with it
    let got: HashMap<String, u64> = counts.items().await?.into_iter().collect();
    let expected = expected_counts(n);
    let commits = app.monitor().snapshot().commits;
    let t_stop = Instant::now();
    worker.stop().await?;
    let stopped = t_stop.elapsed();
    let exact = got == expected && counted == n;
    let window = last - first;
    let rate = n as f64 / window.as_secs_f64();
    let join = first - start;
    let (hwm, _) = rss_mib();
    println!(
        "  faustus count: {window:.3?} first→N-th event ({rate:.0} events/s), {join:.3?} start→first event ({ready:.3?} to ready), \
         {commits} commits in the run, stop (final commit) {stopped:.3?}, peak RSS {hwm:.0}MiB"
    );
    let line = serde_json::json!({
        "tool": "faustus",
        "workload": "count",
        "count": n,
        "seconds": (window.as_secs_f64() * 1e4).round() / 1e4,
        "rate": (rate * 10.0).round() / 10.0,
        "join_s": (join.as_secs_f64() * 1e3).round() / 1e3,
        "ready_s": (ready.as_secs_f64() * 1e3).round() / 1e3,
        "exact": exact,
        "keys": got.len(),
        "commits": commits,
        "stop_s": (stopped.as_secs_f64() * 1e3).round() / 1e3,
        "peak_rss_mib": hwm.round(),
    });
    println!("RESULT {line}");
    if !exact {
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(k, c)| got.get(*k) != Some(c))
            .map(|(k, c)| format!("{k}: got {:?}, want {c}", got.get(k)))
            .collect();
        let extra = got.keys().filter(|k| !expected.contains_key(*k)).count();
        return Err(format!(
            "kafka-count: EXACTNESS CHECK FAILED: {} of {} keys wrong ({extra} unexpected keys; \
             {counted} events seen, {n} produced); first ones: {}",
            wrong.len(),
            expected.len(),
            wrong[..wrong.len().min(10)].join(", ")
        )
        .into());
    }
    println!(
        "  exactness: {} keys, every count equals the number of values produced with its key",
        got.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counts_sum_to_n() {
        for n in [1, 999, 1000, 1001, 50_000, 300_001] {
            let c = expected_counts(n);
            assert_eq!(c.values().sum::<u64>(), n);
            assert_eq!(c.len() as u64, n.min(KEYS));
            let mut by_hand: HashMap<String, u64> = HashMap::new();
            if n <= 2000 {
                for i in 0..n {
                    *by_hand.entry(keyed_key(i)).or_default() += 1;
                }
                assert_eq!(by_hand, c);
            }
        }
    }
}
