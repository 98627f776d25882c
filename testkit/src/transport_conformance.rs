//! The contract of the [`Transport`] driver trait, as runnable checks.
//!
//! Every transport driver runs this suite in its own tests, in one line:
//!
//! ```ignore
//! // tests/conformance.rs of a transport crate (needs tokio as a dev-dependency
//! // with the `macros` and `rt-multi-thread` features)
//! use std::sync::Arc;
//! use faustus_core::transport::Transport;
//!
//! faustus_testkit::transport_conformance!(
//!     Arc::new(my_transport::MyTransport::new()) as Arc<dyn Transport>
//! );
//! ```
//!
//! The checks are also public `async fn`s taking an `Arc<dyn Transport>`, so
//! a wrapper can run them by hand. Each check uses its own uniquely named
//! topics and groups ([`unique_name`]), so they can run in parallel against
//! one shared real broker. Where a real broker is slow (group joins take tens
//! of seconds on some), checks poll until the expected event arrives or
//! [`DEADLINE`] passes; they never sleep a fixed time. The only bounded waits
//! are the ones that check that something does *not* happen (a paused
//! partition stays silent for [`QUIET`]).
//!
//! (One file of about a thousand lines on purpose: the checks are
//! independent, one per clause of the contract below, and this header is
//! the contract; the helpers they share are at the end.)
//!
//! What the contract says, check by check:
//!
//! - [`check_create_topic`]: creating a topic is idempotent with the same
//!   partition count and an error naming the topic and both counts with
//!   another; `partition_count` is `None` for a missing topic.
//! - [`check_round_trip`]: key, value (tombstones too), headers (repeated
//!   names too) and explicit timestamps survive; records without a timestamp
//!   get one; offsets are contiguous from 0 and order is kept per partition;
//!   the delivery reports where the record landed.
//! - [`check_keyed_partitioning`]: a keyed record without a partition lands on
//!   [`partition_for_key`] (Kafka's Java murmur2).
//! - [`check_explicit_partition`]: an explicit partition wins over the key; a
//!   partition out of range fails (at send or at delivery).
//! - [`check_single_member_gets_all`]: a lone group member is assigned every
//!   partition and reads everything from offset 0 (nothing committed), also
//!   what is produced afterwards.
//! - [`check_two_members_split`]: two members split the partitions disjointly
//!   and completely; two topics with equal partition counts are
//!   copartitioned (range assignment); when one member closes, the other
//!   ends up with everything.
//! - [`check_commit_resume`]: committed offsets are reported by `committed`,
//!   and a new member of the group resumes exactly at them (no auto-commit).
//! - [`check_rebalance_revokes_first`]: when a second member joins, the first
//!   gets `Revoked` before anyone is assigned the new generation; committing
//!   the revoked partitions right then succeeds; afterwards every partition is
//!   read from the committed offset, so nothing committed is read twice.
//! - [`check_pause_resume`]: a paused partition of a group member delivers
//!   nothing while others do; after `resume` it delivers again.
//!
//! The [`PartitionReader`] (group-less) side:
//!
//! - [`check_reader_assign_seek`]: a reader reads assigned partitions from 0
//!   or from a `seek` position, reports its assignment, and `high_watermark`
//!   is the next offset to be written.
//! - [`check_reader_outside_group`]: a reader of partitions a group member
//!   owns reads them from 0 (not from the group's commits), returns an empty
//!   poll when nothing arrives, and neither disturbs the group (no
//!   rebalance) nor moves its committed offsets.
//!
//! The producer side, checked through a reader:
//!
//! - [`check_flush`]: after `flush`, every delivery of an earlier send has
//!   resolved successfully.
//! - [`check_send_batch`]: `send_batch` keeps the batch's order (deliveries,
//!   offsets and what is read back); a record for a missing partition fails
//!   and the records before it are sent.
//!
//! A driver must not commit on its own (no auto-commit), and a group
//! consumer with no committed offset starts at the beginning of a partition
//! (Kafka `auto.offset.reset=earliest`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use faustus_core::partitioner::partition_for_key;
use faustus_core::transport::{
    Consumer, ConsumerConfig, ConsumerEvent, Message, PartitionReader, Producer, ProducerConfig,
    ReaderConfig, Record, RecordMetadata, TopicPartition, TopicSpec, Transport,
};
use faustus_core::Result;
use tokio::time::Instant;

#[doc(hidden)]
pub use faustus_core::transport::Transport as __Transport;

/// How long a check waits for an expected event before failing.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// How long a check watches for something that must *not* arrive.
pub const QUIET: Duration = Duration::from_secs(1);

/// The timeout of each individual poll in the checks.
const POLL: Duration = Duration::from_millis(200);

/// A topic or group name unique to this process, check and moment, safe to
/// use on a broker shared with other test runs.
pub fn unique_name(check: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "faustus-conformance-{check}-{}-{micros}-{n}",
        std::process::id()
    )
}

fn must<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn tps(topic: &str, partitions: u32) -> Vec<TopicPartition> {
    (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect()
}

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {DEADLINE:?}: {what}"),
    }
}

/// Create a topic and wait until the transport reports its partition count.
async fn topic(t: &Arc<dyn Transport>, check: &str, partitions: u32) -> String {
    let name = unique_name(check);
    must(
        t.create_topic(&TopicSpec::new(&name, partitions)).await,
        &format!("create topic {name}"),
    );
    wait_partition_count(t, &name, partitions).await;
    name
}

async fn wait_partition_count(t: &Arc<dyn Transport>, name: &str, partitions: u32) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let count = must(t.partition_count(name).await, "partition_count");
        if count == Some(partitions) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {name} should have {partitions} partitions, transport says {count:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn producer(t: &Arc<dyn Transport>) -> Arc<dyn Producer> {
    must(
        t.producer(&ProducerConfig::new(unique_name("producer")))
            .await,
        "create producer",
    )
}

async fn group_consumer(t: &Arc<dyn Transport>, group: &str, client: &str) -> Box<dyn Consumer> {
    must(
        t.consumer(&ConsumerConfig::group(group, client)).await,
        "create group consumer",
    )
}

async fn reader(t: &Arc<dyn Transport>) -> Box<dyn PartitionReader> {
    must(
        t.reader(&ReaderConfig::new(unique_name("reader"))).await,
        "create partition reader",
    )
}

/// Send and wait for the delivery.
async fn send(p: &Arc<dyn Producer>, record: Record) -> RecordMetadata {
    let delivery = must(p.send(record).await, "send");
    must(within("delivery", delivery).await, "delivery")
}

/// Send `n` keyless records with value `{tag}-{i}` to one partition.
async fn fill(p: &Arc<dyn Producer>, topic: &str, partition: u32, n: usize, tag: &str) {
    for i in 0..n {
        let mut r = Record::new(topic, None, Some(Bytes::from(format!("{tag}-{i}"))));
        r.partition = Some(partition);
        send(p, r).await;
    }
}

/// Poll until `want` messages arrived (other events are ignored).
async fn read(c: &mut Box<dyn Consumer>, want: usize, what: &str) -> Vec<Message> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < want {
        assert!(
            Instant::now() < deadline,
            "{what}: got {} of {want} messages within {DEADLINE:?}: {:?}",
            out.len(),
            out.iter().map(Message::coordinates).collect::<Vec<_>>()
        );
        if let ConsumerEvent::Messages(batch) = must(c.poll(POLL).await, "poll") {
            out.extend(batch);
        }
    }
    out
}

/// Poll a reader until `want` messages arrived.
async fn read_from(r: &mut Box<dyn PartitionReader>, want: usize, what: &str) -> Vec<Message> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < want {
        assert!(
            Instant::now() < deadline,
            "{what}: got {} of {want} messages within {DEADLINE:?}: {:?}",
            out.len(),
            out.iter().map(Message::coordinates).collect::<Vec<_>>()
        );
        out.extend(must(r.poll(POLL).await, "poll"));
    }
    out
}

/// Poll until an `Assigned` event satisfies `ok`; messages polled meanwhile are returned.
async fn assigned(
    c: &mut Box<dyn Consumer>,
    what: &str,
    ok: impl Fn(&[TopicPartition]) -> bool,
) -> Vec<Message> {
    let deadline = Instant::now() + DEADLINE;
    let mut messages = Vec::new();
    let mut events = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "{what}: no matching assignment within {DEADLINE:?}; events: {events:?}"
        );
        match must(c.poll(POLL).await, "poll") {
            ConsumerEvent::Assigned(tps) => {
                if ok(&tps) {
                    return messages;
                }
                events.push(ConsumerEvent::Assigned(tps));
            }
            ConsumerEvent::Messages(batch) => messages.extend(batch),
            ConsumerEvent::Idle => {}
            other => events.push(other),
        }
    }
}

fn sorted(v: &[TopicPartition]) -> Vec<TopicPartition> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Offsets per partition, in delivery order.
fn offsets_by_partition(messages: &[Message]) -> BTreeMap<TopicPartition, Vec<i64>> {
    let mut out: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    for m in messages {
        out.entry(m.tp()).or_default().push(m.offset);
    }
    out
}

/// Creating a topic is idempotent; a different partition count is an error
/// naming the topic and both counts.
pub async fn check_create_topic(t: Arc<dyn Transport>) {
    let name = unique_name("create");
    assert_eq!(
        must(t.partition_count(&name).await, "partition_count"),
        None,
        "a topic that was never created has no partition count"
    );
    must(
        t.create_topic(&TopicSpec::new(&name, 3)).await,
        "create topic",
    );
    wait_partition_count(&t, &name, 3).await;
    must(
        t.create_topic(&TopicSpec::new(&name, 3)).await,
        "creating an existing topic with the same partition count must succeed",
    );
    let err = match t.create_topic(&TopicSpec::new(&name, 5)).await {
        Ok(()) => panic!("creating {name} with 5 partitions when it has 3 must fail"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&name) && err.contains('3') && err.contains('5'),
        "the error must name the topic and both partition counts: {err}"
    );
    wait_partition_count(&t, &name, 3).await;
}

/// Key, value, headers, timestamps, offsets and per-partition order survive a round trip.
pub async fn check_round_trip(t: Arc<dyn Transport>) {
    let name = topic(&t, "round-trip", 3).await;
    let p = producer(&t).await;
    let before = now_ms();
    let mut records = Vec::new();
    for i in 0..30u32 {
        let mut r = Record::new(
            name.as_str(),
            Some(Bytes::from(format!("key-{i}"))),
            Some(Bytes::from(format!("value-{i}"))),
        );
        r.partition = Some(i % 3);
        if i == 7 {
            r.value = None; // tombstone
        }
        if i == 8 {
            r.key = None;
        }
        if i % 2 == 0 {
            r.timestamp_ms = Some(1_600_000_000_000 + i64::from(i));
            r.headers = vec![
                ("n".to_string(), Bytes::from(i.to_string())),
                ("n".to_string(), Bytes::from_static(b"again")),
                ("empty".to_string(), Bytes::new()),
            ];
        }
        let meta = send(&p, r.clone()).await;
        assert_eq!(meta.topic.as_ref(), name.as_str(), "delivery topic");
        assert_eq!(meta.partition, i % 3, "delivery partition of record {i}");
        assert_eq!(
            meta.offset,
            i64::from(i / 3),
            "offsets are contiguous from 0 per partition (record {i})"
        );
        records.push(r);
    }
    let after = now_ms();

    let mut c = reader(&t).await;
    must(c.assign(&tps(&name, 3)).await, "assign");
    let got = read_from(&mut c, 30, "round trip").await;
    assert_eq!(got.len(), 30, "no message is delivered twice");
    for (tp, offsets) in offsets_by_partition(&got) {
        assert_eq!(
            offsets,
            (0..10).collect::<Vec<i64>>(),
            "{tp}: offsets from 0, contiguous, in order"
        );
    }
    for m in &got {
        let i = (m.offset as u32) * 3 + m.partition;
        let r = &records[i as usize];
        assert_eq!(m.topic.as_ref(), name.as_str());
        assert_eq!(m.key, r.key, "key of record {i}");
        assert_eq!(m.value, r.value, "value of record {i}");
        assert_eq!(m.headers, r.headers, "headers of record {i}");
        match r.timestamp_ms {
            Some(ts) => assert_eq!(m.timestamp_ms, Some(ts), "timestamp of record {i}"),
            None => {
                let ts = m.timestamp_ms.unwrap_or_else(|| {
                    panic!("record {i} was sent without a timestamp and must get one")
                });
                assert!(
                    ts >= before - 60_000 && ts <= after + 60_000,
                    "stamped timestamp {ts} of record {i} is not about now ({before}..{after})"
                );
            }
        }
    }
    must(c.close().await, "close");
}

/// Keyed records without a partition land on Kafka's murmur2 partition.
pub async fn check_keyed_partitioning(t: Arc<dyn Transport>) {
    let n = 6;
    let name = topic(&t, "keyed", n).await;
    let p = producer(&t).await;
    for i in 0..60 {
        let key = format!("user-{i}");
        let want = partition_for_key(key.as_bytes(), n);
        let meta = send(
            &p,
            Record::new(
                name.as_str(),
                Some(Bytes::from(key.clone())),
                Some(Bytes::from_static(b"v")),
            ),
        )
        .await;
        assert_eq!(meta.partition, want, "partition of key {key:?}");
    }
    let mut c = reader(&t).await;
    must(c.assign(&tps(&name, n)).await, "assign");
    for m in read_from(&mut c, 60, "keyed records").await {
        let key = m.key.clone().unwrap_or_default();
        assert_eq!(m.partition, partition_for_key(&key, n), "{m:?}");
    }
    must(c.close().await, "close");
}

/// An explicit partition wins over the key; one out of range fails.
pub async fn check_explicit_partition(t: Arc<dyn Transport>) {
    let name = topic(&t, "explicit", 4).await;
    let p = producer(&t).await;
    for key in ["a", "b", "c", "d", "e"] {
        let mut r = Record::new(name.as_str(), Some(Bytes::from(key)), None);
        r.partition = Some(2);
        assert_eq!(
            send(&p, r).await.partition,
            2,
            "explicit partition of key {key}"
        );
    }
    let mut r = Record::new(name.as_str(), None, Some(Bytes::from_static(b"v")));
    r.partition = Some(4);
    let failed = match p.send(r).await {
        Err(_) => true,
        Ok(delivery) => within("delivery to a missing partition", delivery)
            .await
            .is_err(),
    };
    assert!(
        failed,
        "sending to partition 4 of a 4-partition topic must fail"
    );
    let mut c = reader(&t).await;
    assert_eq!(
        must(
            c.high_watermark(&TopicPartition::new(name.as_str(), 2))
                .await,
            "high_watermark"
        ),
        5
    );
    must(c.close().await, "close");
}

/// A lone member is assigned every partition and reads everything from 0.
pub async fn check_single_member_gets_all(t: Arc<dyn Transport>) {
    let name = topic(&t, "single", 4).await;
    let p = producer(&t).await;
    for part in 0..4 {
        fill(&p, &name, part, 5, "before").await;
    }
    let all = tps(&name, 4);
    let mut c = group_consumer(&t, &unique_name("group"), "single-1").await;
    must(c.subscribe(std::slice::from_ref(&name)).await, "subscribe");
    let mut got = assigned(&mut c, "lone member", |a| sorted(a) == all).await;
    assert_eq!(sorted(&c.assignment()), all, "assignment() after Assigned");
    for part in 0..4 {
        fill(&p, &name, part, 5, "after").await;
    }
    let rest = 40 - got.len();
    got.extend(read(&mut c, rest, "lone member reads everything").await);
    for (tp, offsets) in offsets_by_partition(&got) {
        assert_eq!(
            offsets,
            (0..10).collect::<Vec<i64>>(),
            "{tp}: read from 0 in order, once"
        );
    }
    must(c.close().await, "close");
}

/// One member of a group during the two-member checks.
struct Member {
    name: &'static str,
    consumer: Box<dyn Consumer>,
    /// What it was last assigned (emptied by `Revoked`).
    owned: BTreeSet<TopicPartition>,
    /// Whether it got `Assigned` since its last `Revoked` (or ever).
    settled: bool,
    revoked_once: bool,
    messages: Vec<Message>,
}

impl Member {
    async fn join(
        t: &Arc<dyn Transport>,
        group: &str,
        name: &'static str,
        topics: &[String],
    ) -> Self {
        let mut consumer = group_consumer(t, group, name).await;
        must(consumer.subscribe(topics).await, "subscribe");
        Member {
            name,
            consumer,
            owned: BTreeSet::new(),
            settled: false,
            revoked_once: false,
            messages: Vec::new(),
        }
    }

    /// One poll; returns the event for callers that react to it.
    async fn poll(&mut self) -> ConsumerEvent {
        let event = must(self.consumer.poll(POLL).await, self.name);
        match &event {
            ConsumerEvent::Assigned(tps) => {
                self.owned = tps.iter().cloned().collect();
                self.settled = true;
                assert_eq!(
                    self.consumer
                        .assignment()
                        .into_iter()
                        .collect::<BTreeSet<_>>(),
                    self.owned,
                    "{}: assignment() after Assigned",
                    self.name
                );
            }
            ConsumerEvent::Revoked(_) => {
                self.owned.clear();
                self.settled = false;
                self.revoked_once = true;
            }
            ConsumerEvent::Messages(batch) => {
                for m in batch {
                    assert!(
                        self.owned.contains(&m.tp()),
                        "{} got a message of {} which it does not own ({:?})",
                        self.name,
                        m.tp(),
                        self.owned
                    );
                }
                self.messages.extend(batch.iter().cloned());
            }
            _ => {}
        }
        event
    }
}

fn split_ok(a: &Member, b: &Member, all: &BTreeSet<TopicPartition>) -> bool {
    a.settled
        && b.settled
        && !a.owned.is_empty()
        && !b.owned.is_empty()
        && a.owned.is_disjoint(&b.owned)
        && a.owned.union(&b.owned).cloned().collect::<BTreeSet<_>>() == *all
}

/// Two members split the partitions; equal topics are copartitioned; after
/// one leaves, the other gets everything.
pub async fn check_two_members_split(t: Arc<dyn Transport>) {
    let ta = topic(&t, "split-a", 4).await;
    let tb = topic(&t, "split-b", 4).await;
    let topics = vec![ta.clone(), tb.clone()];
    let all: BTreeSet<TopicPartition> = tps(&ta, 4).into_iter().chain(tps(&tb, 4)).collect();
    let group = unique_name("group");

    let mut a = Member::join(&t, &group, "member-a", &topics).await;
    let deadline = Instant::now() + DEADLINE;
    while !(a.settled && a.owned == all) {
        assert!(
            Instant::now() < deadline,
            "member-a never got all partitions: {:?}",
            a.owned
        );
        a.poll().await;
    }

    let mut b = Member::join(&t, &group, "member-b", &topics).await;
    let deadline = Instant::now() + DEADLINE;
    while !split_ok(&a, &b, &all) {
        assert!(
            Instant::now() < deadline,
            "the two members never split the partitions: a={:?} b={:?}",
            a.owned,
            b.owned
        );
        a.poll().await;
        b.poll().await;
    }
    for m in [&a, &b] {
        let pa: BTreeSet<u32> = m
            .owned
            .iter()
            .filter(|tp| *tp.topic == *ta)
            .map(|tp| tp.partition)
            .collect();
        let pb: BTreeSet<u32> = m
            .owned
            .iter()
            .filter(|tp| *tp.topic == *tb)
            .map(|tp| tp.partition)
            .collect();
        assert_eq!(
            pa, pb,
            "{}: equally partitioned topics must be copartitioned (range assignment)",
            m.name
        );
    }

    must(b.consumer.close().await, "close member-b");
    let deadline = Instant::now() + DEADLINE;
    while !(a.settled && a.owned == all) {
        assert!(
            Instant::now() < deadline,
            "after member-b left, member-a never got all partitions back: {:?}",
            a.owned
        );
        a.poll().await;
    }
    must(a.consumer.close().await, "close member-a");
}

/// Committed offsets are reported and a new member resumes exactly there.
pub async fn check_commit_resume(t: Arc<dyn Transport>) {
    let name = topic(&t, "commit", 2).await;
    let p = producer(&t).await;
    fill(&p, &name, 0, 10, "p0").await;
    fill(&p, &name, 1, 10, "p1").await;
    let group = unique_name("group");
    let all = tps(&name, 2);
    let (p0, p1) = (all[0].clone(), all[1].clone());

    let mut c1 = group_consumer(&t, &group, "commit-1").await;
    must(c1.subscribe(std::slice::from_ref(&name)).await, "subscribe");
    let mut got = assigned(&mut c1, "first member", |a| sorted(a) == all).await;
    let rest = 20 - got.len();
    got.extend(read(&mut c1, rest, "first member").await);
    must(
        c1.commit(&[(p0.clone(), 4), (p1.clone(), 7)]).await,
        "commit owned partitions",
    );
    assert_eq!(
        must(c1.committed(&all).await, "committed"),
        vec![Some(4), Some(7)]
    );
    must(c1.close().await, "close");

    let mut c2 = group_consumer(&t, &group, "commit-2").await;
    must(c2.subscribe(std::slice::from_ref(&name)).await, "subscribe");
    let mut got = assigned(&mut c2, "second member", |a| sorted(a) == all).await;
    let rest = 9usize.saturating_sub(got.len());
    got.extend(read(&mut c2, rest, "second member").await);
    let by = offsets_by_partition(&got);
    assert_eq!(
        by.get(&p0),
        Some(&(4..10).collect()),
        "p0 resumes at the committed 4"
    );
    assert_eq!(
        by.get(&p1),
        Some(&(7..10).collect()),
        "p1 resumes at the committed 7"
    );
    assert_eq!(
        must(c2.committed(&all).await, "committed"),
        vec![Some(4), Some(7)]
    );
    must(c2.close().await, "close");
}

/// A joining member makes the first one give up its partitions (and commit)
/// before the new generation is handed out; reading resumes at the commits.
pub async fn check_rebalance_revokes_first(t: Arc<dyn Transport>) {
    let name = topic(&t, "revoke", 2).await;
    let p = producer(&t).await;
    fill(&p, &name, 0, 10, "p0").await;
    fill(&p, &name, 1, 10, "p1").await;
    let group = unique_name("group");
    let all = tps(&name, 2);
    let allset: BTreeSet<TopicPartition> = all.iter().cloned().collect();
    let topics = vec![name.clone()];
    // p0 is fully processed, p1 only up to offset 6.
    let commits: BTreeMap<TopicPartition, i64> = [(all[0].clone(), 10), (all[1].clone(), 6)].into();

    let mut a = Member::join(&t, &group, "member-a", &topics).await;
    let deadline = Instant::now() + DEADLINE;
    while !(a.settled && a.owned == allset && a.messages.len() >= 20) {
        assert!(
            Instant::now() < deadline,
            "member-a did not get and read both partitions: {:?}, {} messages",
            a.owned,
            a.messages.len()
        );
        a.poll().await;
    }
    a.messages.clear();

    let mut b = Member::join(&t, &group, "member-b", &topics).await;
    let deadline = Instant::now() + DEADLINE;
    while !split_ok(&a, &b, &allset) {
        assert!(
            Instant::now() < deadline,
            "the rebalance never completed: a={:?} b={:?}",
            a.owned,
            b.owned
        );
        if let ConsumerEvent::Revoked(revoked) = a.poll().await {
            let offsets: Vec<(TopicPartition, i64)> = revoked
                .iter()
                .filter_map(|tp| commits.get(tp).map(|o| (tp.clone(), *o)))
                .collect();
            must(
                a.consumer.commit(&offsets).await,
                "committing revoked partitions before the next poll",
            );
        }
        let was_settled = b.settled;
        b.poll().await;
        if b.settled && !was_settled {
            assert!(
                a.revoked_once,
                "member-b was assigned {:?} before member-a was told its partitions were revoked",
                b.owned
            );
        }
    }

    fill(&p, &name, 0, 5, "p0-more").await;
    fill(&p, &name, 1, 5, "p1-more").await;
    // p0: 10..15, p1: 6..15
    let want = 5 + 9;
    let deadline = Instant::now() + DEADLINE;
    while a.messages.len() + b.messages.len() < want {
        assert!(
            Instant::now() < deadline,
            "after the rebalance only {} of {want} messages were read",
            a.messages.len() + b.messages.len()
        );
        a.poll().await;
        b.poll().await;
    }
    let mut after: Vec<Message> = a.messages.clone();
    after.extend(b.messages.iter().cloned());
    let by = offsets_by_partition(&after);
    assert_eq!(
        by.get(&all[0]),
        Some(&(10..15).collect()),
        "p0 is read from its committed offset, once"
    );
    assert_eq!(
        by.get(&all[1]),
        Some(&(6..15).collect()),
        "p1 is read from its committed offset, once"
    );
    must(a.consumer.close().await, "close member-a");
    must(b.consumer.close().await, "close member-b");
}

/// A paused partition of a group member stays silent while others deliver;
/// resume restarts it.
pub async fn check_pause_resume(t: Arc<dyn Transport>) {
    let name = topic(&t, "pause", 2).await;
    let p = producer(&t).await;
    let all = tps(&name, 2);
    let mut c = group_consumer(&t, &unique_name("group"), "pause-1").await;
    must(c.subscribe(std::slice::from_ref(&name)).await, "subscribe");
    let early = assigned(&mut c, "lone member", |a| sorted(a) == all).await;
    assert!(early.is_empty(), "nothing was produced yet: {early:?}");
    must(c.pause(&all[..1]).await, "pause");
    fill(&p, &name, 0, 3, "p0").await;
    fill(&p, &name, 1, 3, "p1").await;
    let got = read(&mut c, 3, "the unpaused partition").await;
    assert!(
        got.iter().all(|m| m.partition == 1),
        "a paused partition delivered: {:?}",
        got.iter().map(Message::coordinates).collect::<Vec<_>>()
    );
    let quiet_until = Instant::now() + QUIET;
    while Instant::now() < quiet_until {
        if let ConsumerEvent::Messages(batch) = must(c.poll(POLL).await, "poll") {
            panic!(
                "nothing may arrive while the only readable partition is drained and the other paused: {:?}",
                batch.iter().map(Message::coordinates).collect::<Vec<_>>()
            );
        }
    }
    must(c.resume(&all[..1]).await, "resume");
    let got = read(&mut c, 3, "the resumed partition").await;
    assert_eq!(
        got.iter()
            .map(|m| (m.partition, m.offset))
            .collect::<Vec<_>>(),
        vec![(0, 0), (0, 1), (0, 2)]
    );
    must(c.close().await, "close");
}

/// A group member's seek moves its position in an assigned partition: the
/// next messages of that partition start at the offset sought, already
/// read ones included (the conductor fetches again what a poll skipped).
pub async fn check_member_seek(t: Arc<dyn Transport>) {
    let name = topic(&t, "member-seek", 1).await;
    let p = producer(&t).await;
    let all = tps(&name, 1);
    let mut c = group_consumer(&t, &unique_name("group"), "seek-1").await;
    must(c.subscribe(std::slice::from_ref(&name)).await, "subscribe");
    assigned(&mut c, "lone member", |a| sorted(a) == all).await;
    fill(&p, &name, 0, 6, "s").await;
    let got = read(&mut c, 6, "the partition").await;
    assert_eq!(
        got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    must(c.seek(&all[0], 2).await, "seek back to 2");
    let again = read(&mut c, 4, "the partition from offset 2").await;
    assert_eq!(
        again.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![2, 3, 4, 5],
        "after the seek the member reads from offset 2"
    );
    must(c.close().await, "close");
}

/// Partition readers: assign from 0, seek, high-water mark.
pub async fn check_reader_assign_seek(t: Arc<dyn Transport>) {
    let name = topic(&t, "reader", 2).await;
    let p = producer(&t).await;
    fill(&p, &name, 0, 10, "p0").await;
    let all = tps(&name, 2);
    let (p0, p1) = (all[0].clone(), all[1].clone());
    let mut c = reader(&t).await;
    assert_eq!(must(c.high_watermark(&p0).await, "high_watermark"), 10);
    assert_eq!(must(c.high_watermark(&p1).await, "high_watermark"), 0);

    must(c.assign(std::slice::from_ref(&p0)).await, "assign");
    assert_eq!(c.assignment(), vec![p0.clone()]);
    let got = read_from(&mut c, 10, "assigned partition from 0").await;
    assert_eq!(
        got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    must(c.seek(&p0, 5).await, "seek");
    let got = read_from(&mut c, 5, "after seek").await;
    assert_eq!(
        got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (5..10).collect::<Vec<_>>()
    );

    must(c.assign(&all).await, "re-assign");
    assert_eq!(sorted(&c.assignment()), all);
    fill(&p, &name, 1, 2, "p1").await;
    assert_eq!(must(c.high_watermark(&p1).await, "high_watermark"), 2);
    must(c.seek(&p0, 9).await, "seek");
    let got = read_from(&mut c, 3, "both partitions").await;
    let by = offsets_by_partition(&got);
    assert_eq!(by.get(&p0), Some(&vec![9]));
    assert_eq!(by.get(&p1), Some(&vec![0, 1]));
    must(c.close().await, "close");
}

/// A reader is in no group: it reads what a group member owns from 0 (not
/// from the group's committed offsets), an empty poll means nothing arrived,
/// and the group neither rebalances nor loses its commits because of it.
pub async fn check_reader_outside_group(t: Arc<dyn Transport>) {
    let name = topic(&t, "outside", 2).await;
    let p = producer(&t).await;
    fill(&p, &name, 0, 5, "p0").await;
    fill(&p, &name, 1, 5, "p1").await;
    let group = unique_name("group");
    let all = tps(&name, 2);

    let mut member = group_consumer(&t, &group, "outside-1").await;
    must(
        member.subscribe(std::slice::from_ref(&name)).await,
        "subscribe",
    );
    let mut got = assigned(&mut member, "lone member", |a| sorted(a) == all).await;
    let rest = 10 - got.len();
    got.extend(read(&mut member, rest, "lone member").await);
    must(
        member
            .commit(&[(all[0].clone(), 3), (all[1].clone(), 4)])
            .await,
        "commit",
    );

    let mut r = reader(&t).await;
    must(r.assign(&all).await, "assign");
    let got = read_from(&mut r, 10, "a reader of the member's partitions").await;
    for (tp, offsets) in offsets_by_partition(&got) {
        assert_eq!(
            offsets,
            (0..5).collect::<Vec<i64>>(),
            "{tp}: a reader starts at 0, whatever the group committed"
        );
    }
    let quiet_until = Instant::now() + QUIET;
    while Instant::now() < quiet_until {
        let batch = must(r.poll(POLL).await, "poll");
        assert!(
            batch.is_empty(),
            "a reader that read everything polls nothing: {:?}",
            batch.iter().map(Message::coordinates).collect::<Vec<_>>()
        );
        match must(member.poll(POLL).await, "poll") {
            ConsumerEvent::Idle => {}
            other => panic!("a reader must not disturb the group; the member got {other:?}"),
        }
    }
    assert_eq!(
        sorted(&member.assignment()),
        all,
        "the member keeps its partitions"
    );
    assert_eq!(
        must(member.committed(&all).await, "committed"),
        vec![Some(3), Some(4)],
        "a reader moves no committed offset"
    );
    must(r.close().await, "close reader");
    must(member.close().await, "close member");
}

/// `send_batch` sends in order: one delivery per record, in the batch's
/// order, each partition's records at consecutive offsets and read back in
/// that order. A record for a missing partition fails (the call or its
/// delivery); the records before it are sent.
pub async fn check_send_batch(t: Arc<dyn Transport>) {
    let name = topic(&t, "batch", 3).await;
    let p = producer(&t).await;
    let plan: [(u32, &str); 7] = [
        (0, "a"),
        (0, "b"),
        (2, "c"),
        (0, "d"),
        (2, "e"),
        (1, "f"),
        (1, "g"),
    ];
    let records = plan
        .iter()
        .map(|(partition, v)| {
            let mut r = Record::new(name.as_str(), None, Some(Bytes::from(*v)));
            r.partition = Some(*partition);
            r
        })
        .collect();
    let deliveries = must(p.send_batch(records).await, "send_batch");
    assert_eq!(deliveries.len(), plan.len(), "one delivery per record");
    let mut next = [0i64; 3];
    for (d, (partition, v)) in deliveries.into_iter().zip(plan) {
        let md = must(within("batch delivery", d).await, "batch delivery");
        assert_eq!(
            (md.partition, md.offset),
            (partition, next[partition as usize]),
            "delivery of {v:?}"
        );
        next[partition as usize] += 1;
    }
    let mut c = reader(&t).await;
    must(c.assign(&tps(&name, 3)).await, "assign");
    let got = read_from(&mut c, plan.len(), "the batch").await;
    for partition in 0..3u32 {
        let values: Vec<&[u8]> = got
            .iter()
            .filter(|m| m.partition == partition)
            .map(|m| m.value.as_deref().unwrap_or_default())
            .collect();
        let want: Vec<&[u8]> = plan
            .iter()
            .filter(|(q, _)| *q == partition)
            .map(|(_, v)| v.as_bytes())
            .collect();
        assert_eq!(values, want, "partition {partition} in batch order");
    }

    let mut ok = Record::new(name.as_str(), None, Some(Bytes::from_static(b"before")));
    ok.partition = Some(1);
    let mut bad = Record::new(name.as_str(), None, Some(Bytes::from_static(b"bad")));
    bad.partition = Some(3);
    let failed = match p.send_batch(vec![ok, bad]).await {
        Err(_) => true,
        Ok(deliveries) => {
            let mut failed = false;
            for d in deliveries {
                failed |= within("delivery to a missing partition", d).await.is_err();
            }
            failed
        }
    };
    assert!(failed, "a batch sending to partition 3 of 3 must fail");
    let p1 = TopicPartition::new(name.as_str(), 1);
    assert_eq!(
        must(c.high_watermark(&p1).await, "high_watermark"),
        3,
        "the record before the failing one is sent"
    );
    must(c.close().await, "close");
}

/// After `flush`, every earlier delivery has succeeded.
pub async fn check_flush(t: Arc<dyn Transport>) {
    let name = topic(&t, "flush", 1).await;
    let p = producer(&t).await;
    let mut deliveries = Vec::new();
    for i in 0..20 {
        let r = Record::new(name.as_str(), None, Some(Bytes::from(format!("v{i}"))));
        deliveries.push(must(p.send(r).await, "send"));
    }
    must(within("flush", p.flush()).await, "flush");
    let mut offsets = Vec::new();
    for d in deliveries {
        offsets.push(must(within("delivery after flush", d).await, "delivery").offset);
    }
    assert_eq!(offsets, (0..20).collect::<Vec<i64>>());
    let mut c = reader(&t).await;
    assert_eq!(
        must(
            c.high_watermark(&TopicPartition::new(name.as_str(), 0))
                .await,
            "high_watermark"
        ),
        20
    );
    must(c.close().await, "close");
}

/// Expand the transport conformance suite into one test per check.
///
/// `$make` is an expression of type `Arc<dyn Transport>`. It is pasted into
/// the body of each generated `async` test, so it may `.await` (build the
/// transport asynchronously) and may `return` to skip a test (for example
/// when the environment variable naming an external broker is unset; print
/// why, so the skip is loud). It is evaluated once per test, so each test
/// may get a fresh transport.
///
/// The tests are named after the checks (`check_round_trip`, …), so invoke
/// the macro once per module. Each is a
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`, so the
/// calling crate needs `tokio` (features `macros`, `rt-multi-thread`) as a
/// dev-dependency.
///
/// ```ignore
/// use std::sync::Arc;
/// use faustus_core::transport::Transport;
///
/// faustus_testkit::transport_conformance!(
///     Arc::new(faustus_transport_memory::MemoryTransport::new()) as Arc<dyn Transport>
/// );
///
/// // Or, against an optional external broker:
/// mod kafka {
///     faustus_testkit::transport_conformance!(match std::env::var("KAFKA_URL") {
///         Ok(url) => my_kafka::connect(&url).await.unwrap(),
///         Err(_) => {
///             eprintln!("SKIPPED: set KAFKA_URL to run the Kafka conformance suite");
///             return;
///         }
///     });
/// }
/// ```
#[macro_export]
macro_rules! transport_conformance {
    (@each $make:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let transport: ::std::sync::Arc<
                    dyn $crate::transport_conformance::__Transport,
                > = $make;
                $crate::transport_conformance::$check(transport).await;
            }
        )+
    };
    ($make:expr) => {
        $crate::transport_conformance!(@each $make;
            check_create_topic,
            check_round_trip,
            check_keyed_partitioning,
            check_explicit_partition,
            check_single_member_gets_all,
            check_two_members_split,
            check_commit_resume,
            check_rebalance_revokes_first,
            check_pause_resume,
            check_member_seek,
            check_reader_assign_seek,
            check_reader_outside_group,
            check_flush,
            check_send_batch,
        );
    };
}
