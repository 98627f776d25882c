//! Table benchmarks on redb (see the crate docs for what each measures).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use faustus::prelude::*;
use faustus::store::{Store, StoreContext, TableSpec, WriteBatch};
use faustus::transport::{ProducerConfig, ReaderConfig, Record, TopicPartition, TopicSpec};
use faustus_store_redb::{RedbConfig, RedbStore};

use crate::{encode, produce, rate, rss_mib, BenchResult, Row, COMMIT_INTERVAL, PARTITIONS};

/// The app, its `updates` topic and its `counts` table.
type CountingApp = (App, Topic<(), String>, Table<String, u64>);

fn temp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faustus-bench-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn key(i: u64) -> String {
    format!("key-{i:08}")
}

/// An app on `broker` with tables in redb at `dir`, a source topic `updates`
/// of `()` → key strings, and a `counts` table the agent increments.
fn counting_app(
    id: &str,
    broker: &str,
    dir: &Path,
    partitions: u32,
    cache: Option<usize>,
    commit_interval: Duration,
) -> BenchResult<CountingApp> {
    let app = faustus::app(id)
        .env(Default::default())
        .broker(broker)
        .store(format!("redb://{}?cache_mb=16", dir.display()))
        .topic_partitions(partitions)
        .broker_commit_interval(commit_interval)
        .build()?;
    let updates = app.topic::<(), String>("updates").build()?;
    let mut counts = app.table::<String, u64>("counts").with_default();
    if let Some(c) = cache {
        counts = counts.cache_capacity(c);
    }
    let counts = counts.build()?;
    app.agent::<(), String>("count").on(&updates).build({
        let counts = counts.clone();
        move |s| {
            let counts = counts.clone();
            async move {
                let mut values = s.items();
                while let Some((_, k)) = values.next().await {
                    counts.update(k.as_str(), |n| *n += 1).await?;
                }
                Ok(())
            }
        }
    })?;
    Ok((app, updates, counts))
}

/// The bytes the table stores for `key` in `partition`: partition (big
/// endian) + JSON key, JSON value — what store-redb writes.
fn redb_key(partition: u32, key: &str) -> Vec<u8> {
    let mut k = partition.to_be_bytes().to_vec();
    k.extend_from_slice(&encode(&key));
    k
}

/// (a) `Table.update` of N distinct keys through redb, committed, against raw
/// batched redb inserts of the same keys and values.
pub(crate) async fn redb_updates(n: u64) -> BenchResult<Row> {
    println!("table-redb: {n} distinct keys, {PARTITIONS} partitions, redb store");
    let dir = temp_dir("table-redb");
    let (app, updates, counts) = counting_app(
        "bench-table-redb",
        "memory://",
        &dir,
        PARTITIONS,
        None,
        // Each commit writes the keys changed since the last one to
        // redb, a transaction per partition (the default, 3 s, is slower
        // here: more changed keys stay pinned in the cache).
        COMMIT_INTERVAL,
    )?;
    let values: Vec<Bytes> = (0..n).map(|i| encode(&key(i))).collect();
    let last = produce(&updates, &values).await?;
    let t0 = Instant::now();
    let worker = app.start().await?;
    worker.ready().await?;
    for (p, &off) in last.iter().enumerate() {
        if off >= 0 {
            app.processed(&TopicPartition::new("updates", p as u32), off)
                .await;
        }
    }
    let processed = t0.elapsed();
    // The final commit sends the changelog and writes every key to redb.
    worker.stop().await?;
    println!("  faustus: every update processed and committed after {processed:.2?}");
    let ours = t0.elapsed();
    println!("  faustus: {ours:.2?} from start to stopped (every key in redb)");
    drop(counts);

    // Baseline: the same keys and values into a redb file, 10k per transaction.
    let base_dir = temp_dir("table-redb-raw");
    std::fs::create_dir_all(&base_dir)?;
    let t0 = Instant::now();
    let db = redb::Database::create(base_dir.join("raw.redb"))?;
    const DATA: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data");
    let one = encode(&1u64);
    let mut i = 0u64;
    while i < n {
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(DATA)?;
            for j in i..(i + 10_000).min(n) {
                let k = redb_key((j % u64::from(PARTITIONS)) as u32, &key(j));
                t.insert(k.as_slice(), one.as_ref())?;
            }
        }
        tx.commit()?;
        i += 10_000;
    }
    drop(db);
    let base = t0.elapsed();
    println!(
        "  raw redb: {base:.2?} ({} transactions)",
        n.div_ceil(10_000)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&base_dir);
    Ok(Row {
        workload: "table updates via redb vs raw",
        ours: rate(n, ours),
        baseline: rate(n, base),
        target: 0.5,
    })
}

/// How long a bare group-less consumer takes to read the `n` records of
/// every partition of `changelog`.
async fn bare_read(
    transport: &std::sync::Arc<dyn faustus::transport::Transport>,
    changelog: &str,
    n: u64,
) -> BenchResult<Duration> {
    let t0 = Instant::now();
    let mut consumer = transport.reader(&ReaderConfig::new("bench-bare")).await?;
    let tps: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(changelog, p))
        .collect();
    consumer.assign(&tps).await?;
    for tp in &tps {
        consumer.seek(tp, 0).await?;
    }
    let mut read = 0u64;
    while read < n {
        read += consumer.poll(Duration::from_millis(200)).await?.len() as u64;
    }
    consumer.close().await?;
    Ok(t0.elapsed())
}

/// How long the recovery of the `counts` table took, from the monitor (from
/// the recovery's start, after the group join, to its end).
fn replay_time(app: &App) -> BenchResult<Duration> {
    app.monitor()
        .recovery_progress()
        .into_iter()
        .find(|p| p.table == "counts")
        .map(|p| p.elapsed)
        .ok_or_else(|| "no recovery figures for the counts table".into())
}

/// (c) Cold recovery of an N-record changelog into an empty redb store
/// (and into the memory store) against a bare group-less consumer reading
/// the same changelog, then (b) the restart of a worker on that store
/// (offsets persisted) against opening the store and reading its offsets.
/// On a named `memory://` broker, or with `brokers = Some("host:port")` on a
/// Kafka-protocol broker (`kafka://`, topics named per run). On a real
/// broker the worker's group join takes seconds, so the rates use the
/// replay time the monitor reports instead of the time to ready.
pub(crate) async fn recovery(n: u64, brokers: Option<&str>) -> BenchResult<Vec<Row>> {
    let run = std::process::id();
    let (url, what) = match brokers {
        None => (
            format!("memory://bench-recovery-{run}"),
            "memory://".to_string(),
        ),
        Some(b) => (format!("kafka://{b}"), format!("kafka://{b}")),
    };
    let app_id = match brokers {
        None => "bench-recovery".to_string(),
        Some(_) => format!("bench-recovery-{run}"),
    };
    println!("table-recovery: {n}-record changelog (distinct keys), {PARTITIONS} partitions, {what} transport, redb store");
    let transport = faustus::app("bench-recovery-transport")
        .env(Default::default())
        .broker(url.as_str())
        .build()?
        .transport()
        .await?;
    let changelog = format!("{app_id}-counts-changelog");
    let changelog = changelog.as_str();
    let mut spec = TopicSpec::new(changelog, PARTITIONS);
    spec.compacting = true;
    spec.deleting = false;
    transport.create_topic(&spec).await?;
    let producer = transport.producer(&ProducerConfig::new("bench")).await?;
    let t0 = Instant::now();
    let mut deliveries = Vec::new();
    for i in 0..n {
        let mut r = Record::new(changelog, Some(encode(&key(i))), Some(encode(&1u64)));
        r.partition = Some((i % u64::from(PARTITIONS)) as u32);
        deliveries.push(producer.send(r).await?);
        if deliveries.len() >= 10_000 {
            for d in deliveries.drain(..) {
                d.await?;
            }
        }
    }
    for d in deliveries.drain(..) {
        d.await?;
    }
    println!("  produced the changelog in {:.2?}", t0.elapsed());

    let bare = bare_read(&transport, changelog, n).await?;
    println!("  bare consumer: {bare:.2?}");

    // Cold recovery into the memory store: the recovery path without redb.
    let mem = {
        let app = faustus::app(app_id.as_str())
            .env(Default::default())
            .broker(url.as_str())
            .store("memory://")
            .topic_partitions(PARTITIONS)
            .build()?;
        let _counts = app.table::<String, u64>("counts").with_default().build()?;
        let updates = app.topic::<(), String>("updates").build()?;
        app.agent::<(), String>("count")
            .on(&updates)
            .build(|s| async move {
                let mut values = s.items();
                while values.next().await.is_some() {}
                Ok(())
            })?;
        let t0 = Instant::now();
        let worker = app.start().await?;
        worker.ready().await?;
        let ready = t0.elapsed();
        let replay = replay_time(&app)?;
        worker.stop().await?;
        println!("  faustus cold recovery into the memory store: {ready:.2?} to ready, {replay:.2?} replaying");
        if brokers.is_some() {
            replay
        } else {
            ready
        }
    };

    // Cold recovery: time to ready of a worker with an empty store.
    let dir = temp_dir("table-recovery");
    let (app, _updates, counts) =
        counting_app(&app_id, &url, &dir, PARTITIONS, None, COMMIT_INTERVAL)?;
    let t0 = Instant::now();
    let worker = app.start().await?;
    worker.ready().await?;
    let ready = t0.elapsed();
    let replay = replay_time(&app)?;
    println!("  faustus cold recovery into redb: {ready:.2?} to ready, {replay:.2?} replaying");
    let cold = if brokers.is_some() { replay } else { ready };
    if counts.get(&key(n - 1)).await? != Some(1) {
        return Err("the recovered table lacks the last key".into());
    }
    worker.stop().await?;
    drop((app, counts));

    // Restart baseline: open the store and read every partition's offset.
    let t0 = Instant::now();
    {
        let ctx = StoreContext::new(app_id.as_str(), &dir);
        let url =
            faustus::DriverUrl::parse("store", &format!("redb://{}?cache_mb=16", dir.display()))?;
        let store = RedbStore::new(RedbConfig::from_url(&url, &ctx)?);
        let t = store.open(&TableSpec::new("counts", PARTITIONS)).await?;
        for p in 0..PARTITIONS {
            if t.persisted_offset(p).await?.is_none() {
                return Err(format!("partition {p} has no stored offset").into());
            }
        }
    }
    let open = t0.elapsed();
    println!("  open the store and read its offsets: {open:.2?}");

    // Restart: a new worker on the same files.
    let (app, _updates, counts) =
        counting_app(&app_id, &url, &dir, PARTITIONS, None, COMMIT_INTERVAL)?;
    let before = app.monitor().snapshot().recovered_records;
    let t0 = Instant::now();
    let worker = app.start().await?;
    worker.ready().await?;
    let restart = t0.elapsed();
    let replayed = app.monitor().snapshot().recovered_records - before;
    println!("  faustus restart: {restart:.2?} to ready, {replayed} records replayed");
    if counts.get(&key(0)).await? != Some(1) {
        return Err("the restarted table lacks a key".into());
    }
    // The same read while a worker runs (on a real broker, the worker's
    // other clients share it): how much the figures move with the broker.
    let busy = bare_read(&transport, changelog, n).await?;
    println!("  bare consumer while the worker runs: {busy:.2?}");
    worker.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);

    // Reference: the same records written straight into an empty redb
    // store, the way recovery writes them (65,536 per batch, not durable,
    // one sync at the end) — what redb alone allows.
    let raw = {
        let dir = temp_dir("table-recovery-raw");
        let ctx = StoreContext::new(app_id.as_str(), &dir);
        let url =
            faustus::DriverUrl::parse("store", &format!("redb://{}?cache_mb=16", dir.display()))?;
        let store = RedbStore::new(RedbConfig::from_url(&url, &ctx)?);
        let t = store.open(&TableSpec::new("counts", PARTITIONS)).await?;
        let mut batches: Vec<WriteBatch> = (0..PARTITIONS).map(|_| WriteBatch::new()).collect();
        let value = encode(&1u64);
        let t0 = Instant::now();
        for i in 0..n {
            let p = (i % u64::from(PARTITIONS)) as u32;
            let b = &mut batches[p as usize];
            b.ops.push((encode(&key(i)), Some(value.clone())));
            b.offset = Some((i / u64::from(PARTITIONS)) as i64);
            if b.ops.len() >= 65_536 || i + u64::from(PARTITIONS) >= n {
                t.apply_replayed(p, std::mem::take(b)).await?;
            }
        }
        t.sync().await?;
        let raw = t0.elapsed();
        drop((t, store));
        let _ = std::fs::remove_dir_all(&dir);
        raw
    };
    println!("  the same records written straight into redb: {raw:.2?}");
    Ok(vec![
        Row {
            workload: "cold recovery vs raw redb writes",
            ours: rate(n, cold),
            baseline: rate(n, raw),
            target: 0.5,
        },
        Row {
            workload: "cold recovery, memory store",
            ours: rate(n, mem),
            baseline: rate(n, bare),
            target: 0.5,
        },
        Row {
            workload: "cold recovery vs bare consumer",
            ours: rate(n, cold),
            baseline: rate(n, bare),
            target: 0.5,
        },
        // As restarts per second: ours / baseline = open time / restart time.
        Row {
            workload: "restart vs open+offsets (1/s)",
            ours: 1.0 / restart.as_secs_f64(),
            baseline: 1.0 / open.as_secs_f64(),
            target: 0.5,
        },
    ])
}

/// (d) RSS of a worker whose 1-partition redb table holds N keys, after it
/// read every key once, with the table's cache bounded to `cache` keys.
pub(crate) async fn rss(n: u64, cache: usize) -> BenchResult<()> {
    let dir = temp_dir("table-rss");
    // Fill the store directly (no changelog: nothing to recover).
    {
        let ctx = StoreContext::new("bench-rss", &dir);
        let url =
            faustus::DriverUrl::parse("store", &format!("redb://{}?cache_mb=16", dir.display()))?;
        let store = RedbStore::new(RedbConfig::from_url(&url, &ctx)?);
        let t = store.open(&TableSpec::new("counts", 1)).await?;
        let one = encode(&1u64);
        let mut i = 0;
        while i < n {
            let mut b = WriteBatch::new();
            for j in i..(i + 50_000).min(n) {
                b.put(encode(&key(j)), one.clone());
            }
            t.apply(0, b).await?;
            i += 50_000;
        }
    }
    let (_, rss_before) = rss_mib();
    let (app, _updates, counts) = counting_app(
        "bench-rss",
        "memory://",
        &dir,
        1,
        Some(cache),
        COMMIT_INTERVAL,
    )?;
    let worker = app.start().await?;
    worker.ready().await?;
    let t0 = Instant::now();
    for i in 0..n {
        if counts.get(&key(i)).await? != Some(1) {
            return Err(format!("key {i} missing").into());
        }
    }
    let read = t0.elapsed();
    let (hwm, rss_after) = rss_mib();
    println!(
        "table-rss: {n} keys in redb (page cache 16 MiB), table cache {cache} keys: \
         read all in {read:.2?} ({}); cached now {}; RSS before worker {rss_before:.0} MiB, \
         after reading every key {rss_after:.0} MiB (+{:.0} MiB), peak {hwm:.0} MiB",
        crate::human(rate(n, read)),
        counts.cached_keys(),
        rss_after - rss_before
    );
    worker.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
