//! `kafka-passthrough`: Faustus on the `kafka://` transport against bare
//! rdkafka, same broker, same run.
//!
//! * consume: N ~100-byte JSON values are pre-produced (bare producer,
//!   round-robin over 8 partitions) into one topic. A bare `StreamConsumer`
//!   and a bare `BaseConsumer` polled on a thread of its own (manual
//!   assignment of all partitions from the beginning, the fetch settings
//!   Faustus's consumers get by default) read and decode them; then a
//!   Faustus worker (group consumer, pass-through agent: decode, ack,
//!   periodic commit) reads the same topic. Rates are measured from the
//!   first message to the last one seen (the group join, ~5 s on tansu with
//!   the bench's 10 s session timeout, is reported separately), so every
//!   side is steady-state reading.
//! * produce: N values (keyed by device, murmur2 partitioning) sent with
//!   `topic.send_soon` from a task of a running app (encode + enqueue, all
//!   deliveries awaited at the end) against bare `FutureProducer::send_result`
//!   of the same values, encoded with the same `serde_json` call, into fresh
//!   8-partition topics.
//! * agent send: a pass-through agent that forwards every reading of the
//!   consume topic with `out.send(device, reading).await` (the natural code:
//!   it returns once the producer accepted the record), timed from its first
//!   event until all N are forwarded and delivered (`App::flush`), against
//!   the bare `FutureProducer` rate above. It also reads, so it is the
//!   harder of the two.
//!
//! `--brokers mock` runs librdkafka's in-process mock cluster (topics created
//! through the mock, which has no CreateTopics API); `--brokers host:port`
//! any Kafka-protocol broker (topics created with the admin API).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faustus::prelude::*;
use faustus::SendOptions;
use futures::StreamExt;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{rate, reading, BenchResult, Reading, Row, PARTITIONS};

/// The most values an 8-partition mock topic holds without dropping any
/// (the mock keeps ≤ 5 MiB per partition; a ~100-byte value takes ~120 bytes
/// in a record batch).
const MOCK_MAX: u64 = 320_000;

/// Where the topics live.
pub(crate) enum Broker {
    Mock(MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
    Real(String),
}

impl Broker {
    pub(crate) fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Real(b) => b.clone(),
        }
    }

    pub(crate) async fn create_topic(&self, name: &str) -> BenchResult<()> {
        match self {
            Broker::Mock(m) => m.create_topic(name, PARTITIONS as i32, 1)?,
            Broker::Real(b) => {
                let admin: AdminClient<DefaultClientContext> =
                    ClientConfig::new().set("bootstrap.servers", b).create()?;
                let topic = NewTopic::new(name, PARTITIONS as i32, TopicReplication::Fixed(1));
                for r in admin.create_topics([&topic], &AdminOptions::new()).await? {
                    r.map_err(|(t, e)| format!("create topic {t}: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

pub(crate) fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Pre-produce `values` round-robin over the partitions with a bare producer.
async fn preproduce(bootstrap: &str, topic: &str, values: &[Vec<u8>]) -> BenchResult<Duration> {
    let p: FutureProducer = client(bootstrap).create()?;
    let t0 = Instant::now();
    let mut pending = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let partition = (i as u32 % PARTITIONS) as i32;
        pending.push(
            send_retrying(
                &p,
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(v),
            )
            .await,
        );
    }
    for f in pending {
        f.await?.map_err(|(e, _)| format!("pre-produce: {e}"))?;
    }
    Ok(t0.elapsed())
}

/// `send_result`, waiting while the local queue is full.
pub(crate) async fn send_retrying<'a, K, P>(
    p: &FutureProducer,
    mut record: FutureRecord<'a, K, P>,
) -> rdkafka::producer::DeliveryFuture
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match p.send_result(record) {
            Ok(f) => return f,
            Err((_, r)) => {
                record = r;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// A bare consumer of its own group (never committing), with the fetch
/// settings Faustus's consumers get by default, so that the comparison is
/// of the code, not of the configuration.
fn bare_consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = client(bootstrap);
    for (k, v) in faustus_transport_kafka::CONSUMER_FETCH_DEFAULTS {
        c.set(k, v);
    }
    c.set("group.id", unique(group))
        .set("enable.auto.commit", "false");
    c
}

/// What a bare loop read: how many readings, their id sum, and when the
/// first came.
struct Tally {
    t0: Instant,
    seen: u64,
    sum: u64,
    first: Option<Instant>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            t0: Instant::now(),
            seen: 0,
            sum: 0,
            first: None,
        }
    }

    /// Decode and count one message's reading.
    fn add(&mut self, payload: Option<&[u8]>) -> BenchResult<()> {
        self.first.get_or_insert_with(Instant::now);
        let r: Reading = serde_json::from_slice(payload.ok_or("empty payload")?)?;
        self.sum += r.id;
        self.seen += 1;
        Ok(())
    }

    /// (first message → last, start → last), once the id sum is checked.
    fn finish(self, what: &str) -> BenchResult<(Duration, Duration)> {
        let end = Instant::now();
        if self.sum != (0..self.seen).sum::<u64>() {
            return Err(format!("{what}: wrong id sum").into());
        }
        let first = self.first.unwrap_or(end);
        Ok((end - first, end - self.t0))
    }
}

/// Assign every partition of `topic` from the beginning.
fn assign_all<C: ConsumerContext>(c: &impl Consumer<C>, topic: &str) -> BenchResult<()> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    Ok(())
}

/// The fastest bare loop: a `BaseConsumer` polled on a thread of its own,
/// all partitions assigned from the beginning, `n` messages read and
/// decoded. Returns (first message → last, start → last).
fn bare_base_consume(bootstrap: &str, topic: &str, n: u64) -> BenchResult<(Duration, Duration)> {
    let mut tally = Tally::new();
    let c: BaseConsumer = bare_consumer_config(bootstrap, "bench-bare-base").create()?;
    assign_all(&c, topic)?;
    let mut last_message = Instant::now();
    while tally.seen < n {
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            if last_message.elapsed() > Duration::from_secs(30) {
                let seen = tally.seen;
                return Err(format!(
                    "bare BaseConsumer: nothing for 30 s after {seen} of {n} messages"
                )
                .into());
            }
            continue;
        };
        let m = m?;
        last_message = Instant::now();
        tally.add(m.payload())?;
    }
    tally.finish("bare BaseConsumer")
}

/// Bare StreamConsumer: assign all partitions from the beginning, read and
/// decode `n` messages. Returns (first message → last, start → last).
async fn bare_consume(bootstrap: &str, topic: &str, n: u64) -> BenchResult<(Duration, Duration)> {
    let mut tally = Tally::new();
    let c: StreamConsumer = bare_consumer_config(bootstrap, "bench-bare").create()?;
    assign_all(&c, topic)?;
    let mut stream = c.stream();
    while tally.seen < n {
        let seen = tally.seen;
        let m = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .map_err(|_| format!("bare consumer: nothing for 30 s after {seen} of {n} messages"))?
            .ok_or("bare consumer stream ended")??;
        tally.add(m.payload())?;
    }
    tally.finish("bare consumer")
}

/// What an agent of a Kafka workload saw (the bench's instrumentation,
/// beside the user code).
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) count: AtomicU64,
    id_sum: AtomicU64,
    first: Mutex<Option<Instant>>,
    last: Mutex<Option<Instant>>,
}

impl Seen {
    /// Count one event of `n`, noting when the first and the `n`-th came.
    pub(crate) fn tick(&self, n: u64) {
        let c = self.count.fetch_add(1, Ordering::Relaxed);
        if c == 0 {
            *self.first.lock() = Some(Instant::now());
        }
        if c + 1 == n {
            *self.last.lock() = Some(Instant::now());
        }
    }

    /// When the first and the `n`-th event came, once both did.
    pub(crate) fn window(&self) -> Option<(Instant, Instant)> {
        Some(((*self.first.lock())?, (*self.last.lock())?))
    }

    /// Wait (up to 600 s) until `n` events were seen.
    async fn wait_for(&self, n: u64, what: &str) -> BenchResult<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.count.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline {
                let got = self.count.load(Ordering::Relaxed);
                return Err(format!("{what}: {got} of {n} events in 600 s").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// A Faustus worker with a pass-through agent on `topic`, until it saw `n`.
/// Returns (first message → last, start → last, commits).
async fn faustus_consume(
    bootstrap: &str,
    topic: &str,
    n: u64,
) -> BenchResult<(Duration, Duration, u64)> {
    // A short session timeout: tansu's group join waits half of it.
    let mut url =
        format!("kafka://{bootstrap}?session.timeout.ms=10000&heartbeat.interval.ms=1000");
    if let Ok(extra) = std::env::var("FAUSTUS_BENCH_KAFKA_QUERY") {
        // Extra client settings to try, e.g. `fetch.wait.max.ms=10`.
        url.push('&');
        url.push_str(&extra);
    }
    let app = faustus::app(unique("bench-kafka-pt"))
        .broker(url)
        .store("memory://")
        .web_enabled(false)
        .broker_commit_interval(Duration::from_secs(1))
        .build()?;
    // No partition count: the topic is used as it exists (the mock broker
    // cannot create topics through the admin API).
    let readings = app.topic::<(), Reading>(topic).build()?;
    let seen = Arc::new(Seen::default());
    {
        let seen = seen.clone();
        app.agent::<(), Reading>("passthrough")
            .on(&readings)
            .build(move |mut readings| {
                let seen = seen.clone();
                async move {
                    while let Some(r) = readings.next().await {
                        seen.id_sum.fetch_add(r.id, Ordering::Relaxed);
                        seen.tick(n);
                    }
                    Ok(())
                }
            })?;
    }
    let t0 = Instant::now();
    let worker = app.start().await?;
    worker.ready().await?;
    seen.wait_for(n, "faustus consumer").await?;
    let commits = app.monitor().snapshot().commits;
    worker.stop().await?;
    if seen.id_sum.load(Ordering::Relaxed) != (0..n).sum::<u64>() {
        return Err("faustus consumer: wrong id sum".into());
    }
    let Some((first, last)) = seen.window() else {
        return Err("faustus consumer: no timestamps".into());
    };
    Ok((last - first, last - t0, commits))
}

/// An agent forwarding every reading of `topic` to `out` with the natural
/// `out.send(key, value).await` (returns once the producer accepted the
/// record). Returns (first event → every record forwarded and delivered:
/// `App::flush`).
async fn faustus_forward(bootstrap: &str, topic: &str, out: &str, n: u64) -> BenchResult<Duration> {
    let app = faustus::app(unique("bench-kafka-fwd"))
        .broker(format!(
            "kafka://{bootstrap}?session.timeout.ms=10000&heartbeat.interval.ms=1000"
        ))
        .store("memory://")
        .web_enabled(false)
        .build()?;
    let readings = app.topic::<(), Reading>(topic).build()?;
    let forwarded = app.topic::<String, Reading>(out).build()?;
    let seen = Arc::new(Seen::default());
    {
        let seen = seen.clone();
        app.agent::<(), Reading>("forward")
            .on(&readings)
            .build(move |mut readings| {
                let (seen, forwarded) = (seen.clone(), forwarded.clone());
                async move {
                    while let Some(r) = readings.next().await {
                        if seen.count.load(Ordering::Relaxed) == 0 {
                            *seen.first.lock() = Some(Instant::now());
                        }
                        forwarded.send(r.device.clone(), r).await?;
                        seen.count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
            })?;
    }
    let worker = app.start().await?;
    worker.ready().await?;
    seen.wait_for(n, "faustus forward").await?;
    app.flush().await?;
    let end = Instant::now();
    worker.stop().await?;
    let first = (*seen.first.lock()).ok_or("faustus forward: no first event")?;
    Ok(end - first)
}

/// Bare FutureProducer: encode and send every reading, await all deliveries.
async fn bare_produce(bootstrap: &str, topic: &str, values: &[Reading]) -> BenchResult<Duration> {
    let p: FutureProducer = client(bootstrap)
        .set("partitioner", "murmur2_random")
        .create()?;
    let t0 = Instant::now();
    let mut pending = Vec::with_capacity(values.len());
    for r in values {
        let key = serde_json::to_vec(&r.device)?;
        let value = serde_json::to_vec(r)?;
        pending.push(send_retrying(&p, FutureRecord::to(topic).key(&key).payload(&value)).await);
    }
    for f in pending {
        f.await?.map_err(|(e, _)| format!("bare produce: {e}"))?;
    }
    Ok(t0.elapsed())
}

/// `topic.send_soon` from a task of a running app; all deliveries awaited.
async fn faustus_produce(
    bootstrap: &str,
    topic: &str,
    values: Arc<Vec<Reading>>,
) -> BenchResult<Duration> {
    let app = faustus::app(unique("bench-kafka-produce"))
        .broker(format!("kafka://{bootstrap}"))
        .store("memory://")
        .web_enabled(false)
        .build()?;
    let out = app.topic::<String, Reading>(topic).build()?;
    let worker = app.start().await?;
    worker.ready().await?;
    // Warm up: the first send declares the topic and creates the producer.
    let warm = values[0].clone();
    out.send_soon(Some(&warm.device), &warm, SendOptions::default())
        .await?
        .await?;
    let t0 = Instant::now();
    let task = tokio::spawn({
        let out = out.clone();
        async move {
            let mut pending = Vec::with_capacity(values.len());
            for r in values.iter().skip(1) {
                pending.push(
                    out.send_soon(Some(&r.device), r, SendOptions::default())
                        .await?,
                );
            }
            for d in pending {
                d.await?;
            }
            Ok::<_, faustus::Error>(())
        }
    });
    task.await??;
    let took = t0.elapsed();
    worker.stop().await?;
    Ok(took)
}

/// Only the Faustus pass-through worker, on an existing topic of `n`
/// readings (`bench/compare/peers/produce.py --kind readings`): nothing
/// else in the process, so its peak RSS is the worker's.
pub(crate) async fn kafka_passthrough_worker(
    brokers: &str,
    topic: &str,
    n: u64,
) -> BenchResult<()> {
    let before = crate::rss_mib().1;
    let (run, total, commits) = faustus_consume(brokers, topic, n).await?;
    let (peak, now) = crate::rss_mib();
    println!(
        "  faustus worker: {run:.3?} first→last event ({total:.3?} from app.start(), incl. the group join), {commits} commits"
    );
    println!(
        "  {:.1}k events/s; RSS {before:.0} MiB before the app, peak {peak:.0} MiB, {now:.0} MiB at the end",
        n as f64 / run.as_secs_f64() / 1000.0
    );
    Ok(())
}

/// Run both comparisons on `brokers` (`mock` or `host:port`).
pub(crate) async fn kafka_passthrough(brokers: &str, mut n: u64) -> BenchResult<Vec<Row>> {
    if brokers == "mock" && n > MOCK_MAX {
        println!(
            "note: librdkafka's mock broker keeps at most 5 MiB (and 100k messages) per partition \
             and drops older records, so N is capped at {MOCK_MAX} on the mock ({} per partition)",
            MOCK_MAX / u64::from(PARTITIONS)
        );
        n = MOCK_MAX;
    }
    let broker = if brokers == "mock" {
        Broker::Mock(MockCluster::new(1)?)
    } else {
        Broker::Real(brokers.to_string())
    };
    let bootstrap = broker.bootstrap();
    let label = if brokers == "mock" { "mock" } else { "broker" };
    let mut rng = StdRng::seed_from_u64(42);
    let readings: Vec<Reading> = (0..n).map(|i| reading(i, &mut rng)).collect();
    let values: Vec<Vec<u8>> = readings
        .iter()
        .map(serde_json::to_vec)
        .collect::<Result<_, _>>()?;
    let bytes: usize = values.iter().map(Vec::len).sum();
    println!(
        "kafka-passthrough on {brokers} ({bootstrap}): {n} values, {:.1} bytes each on average, {PARTITIONS} partitions",
        bytes as f64 / n as f64
    );

    // ---- consume
    let topic = unique("bench-consume");
    broker.create_topic(&topic).await?;
    let took = preproduce(&bootstrap, &topic, &values).await?;
    println!("  pre-produced in {took:.2?}");
    let (bare_run, bare_total) = bare_consume(&bootstrap, &topic, n).await?;
    println!(
        "  bare StreamConsumer: {bare_run:.3?} first→last message ({bare_total:.3?} from creating the consumer)"
    );
    let (base_run, base_total) = {
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            bare_base_consume(&bootstrap, &topic, n).map_err(|e| e.to_string())
        })
        .await??
    };
    println!(
        "  bare BaseConsumer: {base_run:.3?} first→last message ({base_total:.3?} from creating the consumer)"
    );
    let (ours_run, ours_total, commits) = faustus_consume(&bootstrap, &topic, n).await?;
    println!(
        "  faustus worker: {ours_run:.3?} first→last event ({ours_total:.3?} from app.start(), incl. the group join), {commits} commits"
    );

    // ---- produce
    let readings = Arc::new(readings);
    let bare_topic = unique("bench-produce-bare");
    let ours_topic = unique("bench-produce-faustus");
    broker.create_topic(&bare_topic).await?;
    broker.create_topic(&ours_topic).await?;
    let bare_p = bare_produce(&bootstrap, &bare_topic, &readings).await?;
    println!("  bare FutureProducer: {bare_p:.3?}");
    let ours_p = faustus_produce(&bootstrap, &ours_topic, readings.clone()).await?;
    println!(
        "  faustus topic.send_soon: {ours_p:.3?} ({} records)",
        n - 1
    );
    let fwd_topic = unique("bench-forward");
    broker.create_topic(&fwd_topic).await?;
    let fwd = faustus_forward(&bootstrap, &topic, &fwd_topic, n).await?;
    println!("  faustus agent send().await: {fwd:.3?} ({n} records read and forwarded)");

    let consume_name: &'static str = if label == "mock" {
        "kafka consume (mock cluster)"
    } else {
        "kafka consume (real broker)"
    };
    let produce_name: &'static str = if label == "mock" {
        "kafka produce (mock cluster)"
    } else {
        "kafka produce (real broker)"
    };
    let forward_name: &'static str = if label == "mock" {
        "kafka agent send (mock cluster)"
    } else {
        "kafka agent send (real broker)"
    };
    drop(broker);
    Ok(vec![
        Row {
            workload: consume_name,
            ours: rate(n, ours_run),
            // The faster of the two bare loops.
            baseline: rate(n, bare_run.min(base_run)),
            target: 1.0,
        },
        Row {
            workload: produce_name,
            ours: rate(n - 1, ours_p),
            baseline: rate(n, bare_p),
            target: 0.7,
        },
        Row {
            workload: forward_name,
            ours: rate(n, fwd),
            baseline: rate(n, bare_p),
            target: 0.7,
        },
    ])
}
