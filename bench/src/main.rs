//! Faustus benchmarks, each against a bare baseline measured in the same run.
//!
//! ```text
//! export CARGO_TARGET_DIR=target-bench
//! cargo run --release -p faustus-bench -- passthrough   # [--n 1000000]
//! cargo run --release -p faustus-bench -- wordcount     # [--n 200000]  (posts)
//! cargo run --release -p faustus-bench -- stalled       # [--n 1000000]
//! cargo run --release -p faustus-bench -- web-count     # [--n 100000]  (requests)
//! cargo run --release -p faustus-bench -- all
//! cargo run --release -p faustus-bench -- kafka-passthrough --brokers mock        # [--n 1000000]
//! cargo run --release -p faustus-bench -- kafka-passthrough --brokers host:port
//! cargo run --release -p faustus-bench -- kafka-count --brokers host:port       # [--n 300000] [--topic T]
//! ```
//!
//! * `passthrough`: N JSON values of ~100 bytes are produced, before the
//!   worker starts, into an 8-partition topic on a private `memory://` broker.
//!   A pass-through agent consumes them (decode, ack on advance, periodic
//!   commit). Measured: wall time from `app.start()` until `app.processed()`
//!   reports the last offset of every partition done. Baseline: the same
//!   encoded values decoded with `serde_json` in one tokio task and handed to
//!   another over a bounded (1000) tokio mpsc channel. Target: ≥ 50%.
//! * `wordcount`: N posts of 8–12 words drawn uniformly from a 1000-word
//!   vocabulary are pre-produced; one agent splits each post and calls
//!   `table.update(word, |n| *n += 1)` (by &str: no allocation for known words) per word on a `Table<String, u64>`
//!   (memory store, changelog on the memory transport). Measured like
//!   `passthrough`, as increments (words) per second. Baseline: decode the
//!   same posts and increment a `HashMap<String, u64>`. The table's final
//!   counts (summed over partitions: a word counted in posts of several
//!   partitions lives in each) must equal the baseline's exactly. Target: ≥ 30%.
//! * `stalled`: an agent takes one event and then awaits a future that never
//!   completes; N messages are produced while the worker runs. Once intake
//!   settles, every stream buffer's peak must be ≤ `stream_buffer_maxsize`
//!   (1000); the report also shows what the conductor pulled from the broker
//!   and the process's RSS (the memory broker itself holds all N messages).
//!
//! * `table-redb`: N distinct keys (one update each) through a
//!   `Table<String, u64>` on `redb://` (default cache), measured from start
//!   until the stopped worker's final commit wrote them to redb. Baseline:
//!   the same keys and values inserted into a redb file by hand, 10k per
//!   write transaction. Target: ≥ 50%.
//! * `table-recovery [--brokers host:port]`: an N-record changelog
//!   (distinct keys) on a named `memory://` broker, or on a Kafka-protocol
//!   broker (`kafka://host:port`, topics named per run). Cold recovery: a
//!   worker with an empty redb store (and one with the memory store), time
//!   to ready, against a bare group-less consumer of the same transport
//!   reading the whole changelog (target ≥ 50%); for reference, the same
//!   records written straight into redb the way recovery writes them. On a
//!   real broker the rates use the replay time from the monitor (the group
//!   join, 20–25 s on tansu, is left out); on `memory://` the time to ready. Then restart: a new worker on the same files
//!   (offsets persisted), time to ready, against opening the store and
//!   reading every partition's offset (target: at most twice that, shown as
//!   restarts per second).
//! * `table-rss --cache K`: N keys written straight into a 1-partition redb
//!   table (page cache 16 MiB); a worker with the table cache bounded to K
//!   keys reads every key once; prints the RSS before the worker and after
//!   the reads (run it with two values of K: separate processes).
//!
//! * `kafka-passthrough`: the same pass-through agent on the `kafka://`
//!   transport against the faster of two bare rdkafka loops (a `BaseConsumer`
//!   polled on its own thread, and a `StreamConsumer`; both with the fetch
//!   settings Faustus's consumers get by default), and `topic.send_soon`
//!   against bare `FutureProducer` sends, on librdkafka's mock cluster or a
//!   real broker (see `kafka.rs`). Targets: consume ≥ 100% of the bare loop,
//!   produce ≥ 70%. `FAUSTUS_BENCH_KAFKA_QUERY=k=v&…` adds client settings
//!   to the worker's broker URL (to try fetch settings). With `--topic T
//!   --n N` only the worker runs, on an existing topic of N readings
//!   (`compare/peers/produce.py --kind readings`), and prints its peak RSS.
//!   (`all` does not include it.)
//! * `kafka-count`: stateful count per key, no repartition, on a real
//!   broker (not the mock cluster: it cannot create the changelog), as
//!   user code (see `kafka_count.rs`): an app on
//!   `kafka://…?session.timeout.ms=10000&heartbeat.interval.ms=1000` with a
//!   `redb://` store in a fresh temporary directory, a non-windowed
//!   changelog-backed table `counts` and an agent doing
//!   `counts.update(key, |n| *n += 1)` per event of a keyed 8-partition
//!   topic (N ~100-byte readings over 1000 keys) pre-produced before the
//!   worker starts (`--topic T`: an existing topic, as `bench/compare`
//!   pre-produces for every tool; else the bench makes one). Rate: N over
//!   the window from the first event counted to the N-th, as Quix's count
//!   in `bench/compare`; start → first event apart. Every key's final count
//!   must equal what was produced with it, or the run fails. No baseline
//!   in process (its peer is Quix's count): prints a `RESULT {json}` line.
//!   (`all` does not include it.)
//!
//! * `web-count`: the guide's `/count/?word=` page (`table_route`) against a
//!   bare hyper server answering from a HashMap, and the proxy hop between
//!   two workers (see `web.rs`). Target: local ≥ 50%.
//! * `groupby`, `rpc`: see `streams.rs` (group_by repartition vs the same
//!   pipeline without it, target ≥ 40%; RPC round trips/s with 64 concurrent
//!   asks, on `memory://` or `--brokers host:port`).
//!
//! `FAUSTUS_BENCH_NO_BASELINE=1` skips the baselines, to profile Faustus alone.
//!
//! Every run prints a table: workload, our rate, baseline rate, ratio,
//! target, and the peak RSS of the process (`VmHWM`, which also counts the
//! pre-produced data held by the in-memory broker). Timings are wall clock on
//! a shared machine: run several times and take medians.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use faustus::prelude::*;
use faustus::{SendOptions, TopicPartition};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

mod kafka;
mod kafka_count;
mod streams;
mod tables;
mod web;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type BenchResult<T> = std::result::Result<T, BoxError>;

pub(crate) const PARTITIONS: u32 = 8;
const BUFFER_MAXSIZE: usize = 1000;
/// Commit often enough that commits happen inside the measured window
/// (the default, 3 s, could leave a whole run without one).
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// The ~100-byte JSON value of `passthrough` and `stalled`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Reading {
    pub(crate) id: u64,
    pub(crate) device: String,
    kind: String,
    value: f64,
    ok: bool,
    ts: i64,
}

const KINDS: &[&str] = &["temperature", "humidity", "pressure", "voltage"];

pub(crate) fn reading(i: u64, rng: &mut StdRng) -> Reading {
    Reading {
        id: i,
        device: format!("device-{:05}", rng.gen_range(0..100_000)),
        kind: KINDS[(i % KINDS.len() as u64) as usize].to_string(),
        value: (rng.gen_range(0.0..100.0f64) * 1000.0).round() / 1000.0,
        ok: rng.gen_bool(0.9),
        ts: 1_700_000_000_000 + i as i64,
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("bench values serialize to JSON"))
}

/// Peak and current resident set size of this process, in MiB (`VmHWM`, `VmRSS`).
pub(crate) fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// `FAUSTUS_BENCH_NO_BASELINE=1` skips the baselines (to profile Faustus alone).
fn skip_baseline() -> bool {
    std::env::var_os("FAUSTUS_BENCH_NO_BASELINE").is_some()
}

/// Context switches (voluntary + involuntary) of all this process's threads so
/// far: many per event means the pipeline ping-pongs between parked threads.
pub(crate) fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

pub(crate) fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

pub(crate) fn human(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else {
        format!("{:.1}k/s", r / 1e3)
    }
}

pub(crate) struct Row {
    pub(crate) workload: &'static str,
    pub(crate) ours: f64,
    pub(crate) baseline: f64,
    pub(crate) target: f64,
}

fn print_table(rows: &[Row]) {
    let (hwm, _) = rss_mib();
    println!(
        "{:<34} {:>12} {:>12} {:>7} {:>7} {:>10}",
        "workload", "faustus", "baseline", "ratio", "target", "peak RSS"
    );
    for r in rows {
        let ratio = r.ours / r.baseline;
        println!(
            "{:<34} {:>12} {:>12} {:>6.1}% {:>6.0}% {:>7.0}MiB {}",
            r.workload,
            human(r.ours),
            human(r.baseline),
            ratio * 100.0,
            r.target * 100.0,
            hwm,
            if ratio >= r.target { "ok" } else { "MISSED" }
        );
    }
}

/// Produce `values` round-robin over the topic's partitions (before the worker
/// runs); returns the last offset written to each partition.
pub(crate) async fn produce<K, V>(topic: &Topic<K, V>, values: &[Bytes]) -> BenchResult<Vec<i64>>
where
    K: Serialize + serde::de::DeserializeOwned + Send + 'static,
    V: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut last = vec![-1i64; PARTITIONS as usize];
    for (i, v) in values.iter().enumerate() {
        let p = i as u32 % PARTITIONS;
        let meta = topic
            .send_bytes(None, Some(v.clone()), SendOptions::new().partition(p))
            .await?
            .await?;
        last[p as usize] = meta.offset;
    }
    Ok(last)
}

/// Start the worker and wait until every partition's last offset is
/// processed; returns (time to ready, time to all processed), both from start.
async fn run_worker_until_done(
    app: &App,
    topic: &str,
    last: &[i64],
) -> BenchResult<(Duration, Duration, faustus::WorkerHandle)> {
    let t0 = Instant::now();
    let worker = app.start().await?;
    worker.ready().await?;
    let ready = t0.elapsed();
    for (p, &off) in last.iter().enumerate() {
        if off >= 0 {
            app.processed(&TopicPartition::new(topic, p as u32), off)
                .await;
        }
    }
    Ok((ready, t0.elapsed(), worker))
}

// ---------------------------------------------------------------- passthrough

async fn passthrough(n: u64) -> BenchResult<Row> {
    let mut rng = StdRng::seed_from_u64(42);
    let values: Vec<Bytes> = (0..n).map(|i| encode(&reading(i, &mut rng))).collect();
    let bytes: usize = values.iter().map(|b| b.len()).sum();
    let expected_sum: u64 = (0..n).sum();
    println!(
        "passthrough: {n} values, {:.1} bytes each on average, {PARTITIONS} partitions",
        bytes as f64 / n as f64
    );

    // Faustus.
    let (app, topic) = readings_app("bench-passthrough")?;
    let count = Arc::new(AtomicU64::new(0));
    let id_sum = Arc::new(AtomicU64::new(0));
    {
        let (count, id_sum) = (count.clone(), id_sum.clone());
        app.agent::<(), Reading>("passthrough")
            .on(&topic)
            .build(move |mut readings| {
                let (count, id_sum) = (count.clone(), id_sum.clone());
                async move {
                    while let Some(r) = readings.next().await {
                        id_sum.fetch_add(r.id, Ordering::Relaxed);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
            })?;
    }
    let t = Instant::now();
    let last = produce(&topic, &values).await?;
    println!("  produced in {:.2?}", t.elapsed());
    let cs0 = context_switches();
    let (ready, ours_time, worker) = run_worker_until_done(&app, "readings", &last).await?;
    let cs_ours = context_switches() - cs0;
    let snap = app.monitor().snapshot();
    worker.stop().await?;
    let got = count.load(Ordering::Relaxed);
    let sum = id_sum.load(Ordering::Relaxed);
    if got != n || sum != expected_sum {
        return Err(format!(
            "passthrough: agent saw {got} events (id sum {sum}), expected {n} (id sum {expected_sum})"
        )
        .into());
    }
    println!(
        "  faustus: {:.3?} from start ({:.3?} to ready), {} commits, {cs_ours} context switches during the run",
        ours_time, ready, snap.commits
    );

    if skip_baseline() {
        return Ok(Row {
            workload: "passthrough (1 agent, 8 partitions)",
            ours: rate(n, ours_time),
            baseline: f64::NAN,
            target: 0.5,
        });
    }
    // Baseline: decode in one task, hand over a bounded mpsc to another.
    let values = Arc::new(values);
    let cs0 = context_switches();
    let t0 = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Reading>(1000);
    let consumer = tokio::spawn(async move {
        let (mut count, mut sum) = (0u64, 0u64);
        while let Some(r) = rx.recv().await {
            sum += r.id;
            count += 1;
        }
        (count, sum)
    });
    let vals = values.clone();
    let producer = tokio::spawn(async move {
        for b in vals.iter() {
            let r: Reading = serde_json::from_slice(b).expect("baseline values decode");
            if tx.send(r).await.is_err() {
                break;
            }
        }
    });
    producer.await?;
    let (bcount, bsum) = consumer.await?;
    let base_time = t0.elapsed();
    let cs_base = context_switches() - cs0;
    if bcount != n || bsum != expected_sum {
        return Err("passthrough: the baseline lost values".into());
    }
    println!("  baseline: {base_time:.3?}, {cs_base} context switches");
    Ok(Row {
        workload: "passthrough (1 agent, 8 partitions)",
        ours: rate(n, ours_time),
        baseline: rate(n, base_time),
        target: 0.5,
    })
}

// ------------------------------------------------------------------ wordcount

fn vocabulary(rng: &mut StdRng, size: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::with_capacity(size);
    while words.len() < size {
        let len = rng.gen_range(3..=10);
        let w: String = (0..len)
            .map(|_| (b'a' + rng.gen_range(0..26u8)) as char)
            .collect();
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

fn count_words_baseline(posts: &[Bytes]) -> HashMap<String, u64> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for b in posts {
        let post: String = serde_json::from_slice(b).expect("baseline posts decode");
        for w in post.split_whitespace() {
            match counts.get_mut(w) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(w.to_owned(), 1);
                }
            }
        }
    }
    counts
}

async fn wordcount(n_posts: u64) -> BenchResult<Row> {
    let mut rng = StdRng::seed_from_u64(7);
    let vocab = vocabulary(&mut rng, 1000);
    let mut total_words = 0u64;
    let posts: Vec<Bytes> = (0..n_posts)
        .map(|_| {
            let k = rng.gen_range(8..=12);
            total_words += k;
            let words: Vec<&str> = (0..k)
                .map(|_| vocab[rng.gen_range(0..vocab.len())].as_str())
                .collect();
            encode(&words.join(" "))
        })
        .collect();
    println!(
        "wordcount: {n_posts} posts, {total_words} words, vocabulary {}, {PARTITIONS} partitions",
        vocab.len()
    );

    let app = faustus::app("bench-wordcount")
        .broker("memory://")
        .store("memory://")
        .web_enabled(false)
        .topic_partitions(PARTITIONS)
        .stream_buffer_maxsize(BUFFER_MAXSIZE)
        .broker_commit_interval(COMMIT_INTERVAL)
        .build()?;
    let topic = app
        .topic::<(), String>("posts")
        .partitions(PARTITIONS)
        .build()?;
    let counts = app
        .table::<String, u64>("word_counts")
        .partitions(PARTITIONS)
        .with_default()
        .build()?;
    {
        let counts = counts.clone();
        app.agent::<(), String>("count_words")
            .on(&topic)
            .build(move |mut posts| {
                let counts = counts.clone();
                async move {
                    while let Some(post) = posts.next().await {
                        for word in post.split_whitespace() {
                            counts.update(word, |n| *n += 1).await?;
                        }
                    }
                    Ok(())
                }
            })?;
    }
    let t = Instant::now();
    let last = produce(&topic, &posts).await?;
    println!("  produced in {:.2?}", t.elapsed());
    let (ready, ours_time, worker) = run_worker_until_done(&app, "posts", &last).await?;
    let snap = app.monitor().snapshot();
    // Exactness: sum each word over the table partitions it lives in.
    let mut table_counts: HashMap<String, u64> = HashMap::new();
    for (w, c) in counts.items().await? {
        *table_counts.entry(w).or_default() += c;
    }
    worker.stop().await?;
    println!(
        "  faustus: {:.3?} from start ({:.3?} to ready), {} commits during the run",
        ours_time, ready, snap.commits
    );

    if skip_baseline() {
        return Ok(Row {
            workload: "wordcount (Table.update per word)",
            ours: rate(total_words, ours_time),
            baseline: f64::NAN,
            target: 0.3,
        });
    }
    let t0 = Instant::now();
    let baseline = count_words_baseline(&posts);
    let base_time = t0.elapsed();
    println!("  baseline: {base_time:.3?}");

    let base_total: u64 = baseline.values().sum();
    let table_total: u64 = table_counts.values().sum();
    if base_total != total_words || table_counts != baseline {
        let wrong = baseline
            .iter()
            .filter(|(w, c)| table_counts.get(*w) != Some(c))
            .count();
        return Err(format!(
            "wordcount: EXACTNESS CHECK FAILED: table total {table_total}, baseline total {base_total}, \
             expected {total_words}; {wrong} words differ, table has {} words, baseline {}",
            table_counts.len(),
            baseline.len()
        )
        .into());
    }
    println!(
        "  exactness: table counts equal the baseline's ({} words, {table_total} increments)",
        baseline.len()
    );
    Ok(Row {
        workload: "wordcount (Table.update per word)",
        ours: rate(total_words, ours_time),
        baseline: rate(total_words, base_time),
        target: 0.3,
    })
}

/// An app on a private memory broker with the 8-partition `readings` topic.
pub(crate) fn readings_app(id: &str) -> BenchResult<(App, Topic<(), Reading>)> {
    let app = faustus::app(id)
        .broker("memory://")
        .store("memory://")
        .web_enabled(false)
        .topic_partitions(PARTITIONS)
        .stream_buffer_maxsize(BUFFER_MAXSIZE)
        .broker_commit_interval(COMMIT_INTERVAL)
        .build()?;
    let topic = app
        .topic::<(), Reading>("readings")
        .partitions(PARTITIONS)
        .build()?;
    Ok((app, topic))
}

// -------------------------------------------------------------------- stalled

async fn stalled(n: u64) -> BenchResult<bool> {
    let (app, topic) = readings_app("bench-stalled")?;
    let took_first = Arc::new(AtomicU64::new(0));
    {
        let took_first = took_first.clone();
        app.agent::<(), Reading>("stalled")
            .on(&topic)
            .build(move |mut readings| {
                let took_first = took_first.clone();
                async move {
                    if readings.next().await.is_some() {
                        took_first.fetch_add(1, Ordering::Relaxed);
                    }
                    // Stall forever with the first event in hand.
                    futures::future::pending::<()>().await;
                    Ok(())
                }
            })?;
    }
    let worker = app.start().await?;
    worker.ready().await?;
    let (_, rss_ready) = rss_mib();

    let mut rng = StdRng::seed_from_u64(42);
    let mut bytes = 0usize;
    let t = Instant::now();
    for i in 0..n {
        let v = encode(&reading(i, &mut rng));
        bytes += v.len();
        topic
            .send_bytes(
                None,
                Some(v),
                SendOptions::new().partition(i as u32 % PARTITIONS),
            )
            .await?
            .await?;
    }
    let produced_in = t.elapsed();

    // Wait until intake settles: messages_received unchanged for 1 s.
    let mut prev = u64::MAX;
    let mut stable = 0;
    while stable < 10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = app.monitor().snapshot().messages_received;
        if now == prev {
            stable += 1;
        } else {
            stable = 0;
            prev = now;
        }
    }
    let snap = app.monitor().snapshot();
    let peaks = app.stream_buffer_peaks();
    let (hwm, rss) = rss_mib();
    let max_peak = peaks.iter().map(|(_, p)| *p).max().unwrap_or(0);
    println!(
        "stalled: {n} messages ({:.1} MiB of values) produced in {produced_in:.2?} while the agent stalls on its first event (taken: {})",
        bytes as f64 / (1024.0 * 1024.0),
        took_first.load(Ordering::Relaxed)
    );
    println!(
        "{:<34} {:>10} {:>10} {:>12} {:>10} {:>10} {:>10}",
        "stream buffer", "peak", "maxsize", "pulled", "paused", "RSS ready", "peak RSS"
    );
    for (topic, peak) in &peaks {
        println!(
            "{:<34} {:>10} {:>10} {:>12} {:>10} {:>7.0}MiB {:>7.0}MiB {}",
            topic,
            peak,
            BUFFER_MAXSIZE,
            snap.messages_received,
            snap.partitions_paused,
            rss_ready,
            hwm,
            if *peak <= BUFFER_MAXSIZE {
                "ok"
            } else {
                "EXCEEDED"
            }
        );
    }
    println!(
        "  pulled = messages the conductor took from the broker ({} acked); the rest stay in the broker. RSS now {rss:.0}MiB.",
        snap.events_acked
    );
    Ok(!peaks.is_empty() && max_peak <= BUFFER_MAXSIZE)
}

// ----------------------------------------------------------------------- main

fn usage() -> ! {
    eprintln!("usage: faustus-bench <passthrough|wordcount|stalled|groupby|all> [--n N]");
    eprintln!("       faustus-bench table-redb [--n N]");
    eprintln!("       faustus-bench table-recovery [--n N] [--brokers host:port]");
    eprintln!("       faustus-bench table-rss [--n N] [--cache KEYS]");
    eprintln!("       faustus-bench rpc [--brokers host:port] [--n N]");
    eprintln!("       faustus-bench kafka-passthrough --brokers mock|host:port [--n N]");
    eprintln!("       faustus-bench kafka-passthrough --brokers host:port --topic T --n N   # the worker alone, on T");
    eprintln!("       faustus-bench kafka-count --brokers host:port [--n N] [--topic T]");
    eprintln!("       faustus-bench web-count [--n N]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    // Quiet unless RUST_LOG asks for the workers' logs.
    if std::env::var_os("RUST_LOG").is_some() {
        faustus::cli::init_logging("info");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        usage();
    };
    let n: Option<u64> = match args.iter().position(|a| a == "--n") {
        Some(i) => match args
            .get(i + 1)
            .and_then(|s| s.replace('_', "").parse().ok())
        {
            Some(n) if n > 0 => Some(n),
            _ => usage(),
        },
        None => None,
    };
    let result: BenchResult<bool> = async {
        match cmd.as_str() {
            "passthrough" => {
                let row = passthrough(n.unwrap_or(1_000_000)).await?;
                print_table(&[row]);
                Ok(true)
            }
            "wordcount" => {
                let row = wordcount(n.unwrap_or(200_000)).await?;
                print_table(&[row]);
                Ok(true)
            }
            "stalled" => stalled(n.unwrap_or(1_000_000)).await,
            "web-count" => {
                let rows = web::web_count(n.unwrap_or(100_000)).await?;
                print_table(&rows);
                Ok(true)
            }
            "table-redb" => {
                let row = tables::redb_updates(n.unwrap_or(1_000_000)).await?;
                print_table(&[row]);
                Ok(true)
            }
            "table-recovery" => {
                let brokers = args
                    .iter()
                    .position(|a| a == "--brokers")
                    .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| usage()));
                let rows = tables::recovery(n.unwrap_or(1_000_000), brokers.as_deref()).await?;
                print_table(&rows);
                Ok(true)
            }
            "table-rss" => {
                let cache = match args.iter().position(|a| a == "--cache") {
                    Some(i) => args
                        .get(i + 1)
                        .and_then(|s| s.replace('_', "").parse().ok())
                        .unwrap_or_else(|| usage()),
                    None => faustus::table::DEFAULT_CACHE_CAPACITY,
                };
                tables::rss(n.unwrap_or(1_000_000), cache).await?;
                Ok(true)
            }
            "groupby" => {
                let row = streams::groupby(n.unwrap_or(500_000)).await?;
                print_table(&[row]);
                Ok(true)
            }
            "rpc" => {
                let brokers = args
                    .iter()
                    .position(|a| a == "--brokers")
                    .and_then(|i| args.get(i + 1).cloned());
                streams::rpc(n.unwrap_or(100_000), brokers.as_deref()).await?;
                Ok(true)
            }
            "kafka-passthrough" => {
                let brokers = match args.iter().position(|a| a == "--brokers") {
                    Some(i) => args.get(i + 1).cloned().unwrap_or_else(|| usage()),
                    None => "mock".to_string(),
                };
                if let Some(i) = args.iter().position(|a| a == "--topic") {
                    let topic = args.get(i + 1).cloned().unwrap_or_else(|| usage());
                    let n = n.unwrap_or_else(|| usage());
                    kafka::kafka_passthrough_worker(&brokers, &topic, n).await?;
                    return Ok(true);
                }
                let rows = kafka::kafka_passthrough(&brokers, n.unwrap_or(1_000_000)).await?;
                print_table(&rows);
                Ok(true)
            }
            "kafka-count" => {
                let arg = |name: &str| {
                    args.iter()
                        .position(|a| a == name)
                        .map(|i| args.get(i + 1).cloned().unwrap_or_else(|| usage()))
                };
                let brokers = arg("--brokers").unwrap_or_else(|| usage());
                let topic = arg("--topic");
                kafka_count::kafka_count(&brokers, topic.as_deref(), n.unwrap_or(300_000)).await?;
                Ok(true)
            }
            "all" => {
                let a = passthrough(n.unwrap_or(1_000_000)).await?;
                let b = wordcount(n.map(|n| n / 5).unwrap_or(200_000)).await?;
                print_table(&[a, b]);
                stalled(n.unwrap_or(1_000_000)).await
            }
            _ => Err(format!("unknown benchmark {cmd:?}").into()),
        }
    }
    .await;
    let code = match result {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("FAILED: a stream buffer held more than stream_buffer_maxsize");
            1
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    // The stalled agent never finishes, and a worker stop would wait for it
    // (drain timeouts): leave without running the runtime's shutdown.
    std::process::exit(code);
}
