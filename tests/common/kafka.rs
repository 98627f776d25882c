//! What the real-broker tests of the word-count example share: running the
//! example binary as worker and producer processes against
//! `FAUSTUS_TEST_KAFKA` (each scenario with its own app id, posts topic and
//! log directory), reading topics back with a group-less reader, folding the
//! table's changelog, reading the group's committed offsets, and checking
//! that no committed offset ran ahead of what it depends on.
//!
//! Used by `tests/kafka_word_count.rs` and `tests/kafka_soak.rs`; both
//! declare `mod support;` and the example as `mod word_count;` at their root.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use faustus_core::transport::{
    Consumer, ConsumerConfig, Message, PartitionReader, ReaderConfig, TopicPartition, TopicSpec,
    Transport,
};
use faustus_core::DriverUrl;
use faustus_transport_kafka::KafkaTransport;

pub(crate) const PARTITIONS: u32 = 8;
/// Longest wait for one phase (joins, rebalances, processing) of a scenario.
pub(crate) const PHASE: Duration = Duration::from_secs(150);
/// Waits on the changelog give up when it has not grown for this long
/// (or after their overall deadline).
pub(crate) const STALL: Duration = Duration::from_secs(90);

pub(crate) type Counts = BTreeMap<String, u64>;

// ------------------------------------------------------------------ plumbing

/// The word_count example binary (see `crate::support::example_binary`).
pub(crate) fn example_binary() -> PathBuf {
    crate::support::example_binary("word_count")
}

pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The words of posts `start..start + n` of the demo's corpus, counted.
pub(crate) fn expected(start: u64, n: u64) -> Counts {
    let mut c = Counts::new();
    for i in start..start + n {
        for w in post_words(crate::word_count::POSTS[(i as usize) % crate::word_count::POSTS.len()])
        {
            *c.entry(w).or_default() += 1;
        }
    }
    c
}

pub(crate) fn post_words(post: &str) -> impl Iterator<Item = String> + '_ {
    post.split_whitespace().map(str::to_lowercase)
}

/// Words whose count in `got` is below `want` (word, got, want).
pub(crate) fn missing(got: &Counts, want: &Counts) -> Vec<(String, u64, u64)> {
    want.iter()
        .filter_map(|(w, &n)| {
            let g = got.get(w).copied().unwrap_or(0);
            (g < n).then(|| (w.clone(), g, n))
        })
        .collect()
}

/// A process of the example; killed (SIGKILL) when dropped.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: crate::support::ChildGuard,
    pub(crate) log: PathBuf,
}

impl Proc {
    pub(crate) fn pid(&self) -> String {
        self.child.0.id().to_string()
    }

    pub(crate) fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.pid()])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{sig} {} ({}) failed",
            self.pid(),
            self.name
        );
    }

    /// Wait for the process to exit, up to `within`.
    pub(crate) fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.0.try_wait().expect("wait for a child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}; its log:\n{}",
                self.name,
                tail(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    pub(crate) fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Events `agent` processed so far, from the worker's `/metrics` (its
    /// web address is in the banner of its log); `None` when the worker
    /// does not answer.
    pub(crate) async fn agent_events(&self, agent: &str) -> Option<u64> {
        let log = self.log_text();
        let web = log.lines().find(|l| l.contains("│ web"))?;
        let at = web.find("http://")? + "http://".len();
        let addr: std::net::SocketAddr = web[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect::<String>()
            .parse()
            .ok()?;
        let reply = faustus_testkit::web_conformance::get(addr, "/metrics")
            .await
            .ok()?;
        let series = format!("faustus_agent_events_total{{agent=\"{agent}\"}} ");
        reply
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()).map(str::to_string))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }
}

pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = strip_ansi(&std::fs::read_to_string(path).unwrap_or_default());
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One scenario's app: its id, topics, processes and a transport to inspect
/// the broker with.
pub(crate) struct Scenario {
    pub(crate) app_id: String,
    pub(crate) posts: String,
    pub(crate) url: String,
    pub(crate) dir: PathBuf,
    pub(crate) bin: PathBuf,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) procs: Vec<PathBuf>,
    pub(crate) started: Instant,
}

impl Scenario {
    pub(crate) async fn new(name: &str) -> Option<Scenario> {
        let url = crate::support::kafka_url()?;
        let bin = example_binary();
        let app_id = unique(&format!("kwc-{name}"));
        let posts = format!("{app_id}-posts");
        let dir = std::env::temp_dir().join(&app_id);
        std::fs::create_dir_all(&dir).expect("create the scenario's directory");
        let transport: Arc<dyn Transport> = Arc::new(
            KafkaTransport::from_url(
                &DriverUrl::parse("broker", &url).expect("FAUSTUS_TEST_KAFKA"),
            )
            .expect("FAUSTUS_TEST_KAFKA"),
        );
        // The test owns the source topic: the workers find it as it is.
        transport
            .create_topic(&TopicSpec::new(&posts, PARTITIONS))
            .await
            .expect("create the posts topic");
        eprintln!("[{app_id}] broker {url}, logs in {}", dir.display());
        Some(Scenario {
            app_id,
            posts,
            url,
            dir,
            bin,
            transport,
            procs: Vec::new(),
            started: Instant::now(),
        })
    }

    /// The broker URL given to the processes: the demo awaits every send
    /// (`count_words.send(..).await`), so librdkafka's default linger of 5 ms
    /// would bound it to ~200 words/s; the kill scenario also needs the dead
    /// member to leave the group soon.
    pub(crate) fn worker_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}linger.ms=0&session.timeout.ms=10000&heartbeat.interval.ms=1000",
            self.url
        )
    }

    pub(crate) fn changelog(&self) -> String {
        format!("{}-word_counts-changelog", self.app_id)
    }

    pub(crate) fn agent_topic(&self) -> String {
        format!("{}-count_words", self.app_id)
    }

    pub(crate) fn note(&self, what: &str) {
        eprintln!(
            "[{}] {:>6.1}s {what}",
            self.app_id,
            self.started.elapsed().as_secs_f64()
        );
    }

    pub(crate) fn spawn(&mut self, name: &str, args: &[&str]) -> Proc {
        self.spawn_in(name, name, args)
    }

    /// [`Scenario::spawn`] with the data directory `datadir` (under the
    /// scenario's directory), e.g. a restarted worker's old one.
    pub(crate) fn spawn_in(&mut self, name: &str, datadir: &str, args: &[&str]) -> Proc {
        let log = self.dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create a log file");
        let err = out.try_clone().expect("clone a log file");
        let child = Command::new(&self.bin)
            .args(args)
            .current_dir(&self.dir)
            .env("FAUSTUS_BROKER", self.worker_url())
            .env("FAUSTUS_ID", &self.app_id)
            .env("FAUSTUS_DEMO_FEED", "0")
            .env("FAUSTUS_DEMO_POSTS_TOPIC", &self.posts)
            .env("FAUSTUS_BROKER_COMMIT_INTERVAL", "500ms")
            .env("FAUSTUS_DATADIR", self.dir.join(datadir))
            .env("FAUSTUS_WEB_PORT", "0")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {} {args:?}: {e}", self.bin.display()));
        self.procs.push(log.clone());
        self.note(&format!("started {name} (pid {})", child.id()));
        Proc {
            name: name.to_string(),
            child: crate::support::ChildGuard(child),
            log,
        }
    }

    pub(crate) fn worker(&mut self, name: &str) -> Proc {
        self.spawn(name, &["worker", "-l", "info"])
    }

    /// Start the `produce` command for posts `start..start + n`.
    pub(crate) fn producer(&mut self, start: u64, n: u64) -> Proc {
        let name = format!("produce-{start}");
        let (start, n) = (start.to_string(), n.to_string());
        self.spawn(&name, &["produce", "--max-messages", &n, "--start", &start])
    }

    /// Produce posts `start..start + n` and wait until the command is done.
    pub(crate) fn produce(&mut self, start: u64, n: u64) {
        let mut p = self.producer(start, n);
        finish_producer(self, &mut p);
    }

    /// A changelog fold, reading from the beginning (once a worker has
    /// created the changelog).
    pub(crate) async fn fold(&self) -> Fold {
        let changelog = self.changelog();
        let deadline = Instant::now() + PHASE;
        loop {
            let n = self
                .transport
                .partition_count(&changelog)
                .await
                .expect("partition count of the changelog");
            match n {
                Some(n) => {
                    assert_eq!(n, PARTITIONS, "partitions of {changelog}");
                    break;
                }
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "no worker created {changelog} within {PHASE:?}; logs:\n{}",
                        self.procs
                            .iter()
                            .map(|l| tail(l, 20))
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        self.note(&format!("{changelog} exists"));
        Fold::new(self.transport.clone(), &changelog).await
    }

    /// The group's committed offsets of `topic` (0 where none).
    pub(crate) async fn committed(&self, topic: &str) -> Vec<i64> {
        let mut c = self
            .transport
            .consumer(&ConsumerConfig::group(&self.app_id, unique("kwc-offsets")))
            .await
            .expect("a consumer to read committed offsets");
        let tps = tps(topic);
        let got = c.committed(&tps).await.expect("committed offsets");
        c.close().await.expect("close");
        got.into_iter().map(|o| o.unwrap_or(0)).collect()
    }

    /// The end (high-water mark) of each partition of `topic`, as of now.
    pub(crate) async fn ends(&self, topic: &str) -> Vec<i64> {
        let mut r = Reader::new(self.transport.clone(), topic).await;
        let mut ends = Vec::new();
        for tp in tps(topic) {
            ends.push(
                r.consumer
                    .high_watermark(&tp)
                    .await
                    .expect("high-water mark"),
            );
        }
        ends
    }

    /// Every message of `topic` up to its current end.
    pub(crate) async fn read_all(&self, topic: &str) -> Vec<Message> {
        let mut f = Reader::new(self.transport.clone(), topic).await;
        f.catch_up().await;
        f.messages
    }

    /// Check that no committed offset ran ahead of what it depends on (see
    /// the module docs); returns a description of the state.
    pub(crate) async fn check_commits_not_ahead(&self) -> String {
        // Committed offsets first: the topics read afterwards only grow.
        let posts_committed = self.committed(&self.posts).await;
        let words_committed = self.committed(&self.agent_topic()).await;

        let posts = self.read_all(&self.posts).await;
        let words = self.read_all(&self.agent_topic()).await;
        let mut changelog = Fold::new(self.transport.clone(), &self.changelog()).await;
        changelog.catch_up().await;

        // (a) posts below the committed offsets → their words in the agent topic.
        let mut committed_post_words = Counts::new();
        let mut committed_posts = 0;
        for m in &posts {
            if m.offset < posts_committed[m.partition as usize] {
                committed_posts += 1;
                let body: String = serde_json::from_slice(m.value.as_deref().expect("a post"))
                    .expect("a JSON post");
                for w in post_words(&body) {
                    *committed_post_words.entry(w).or_default() += 1;
                }
            }
        }
        let mut sent_words = Counts::new();
        let mut committed_words = Counts::new();
        for m in &words {
            let w: String = serde_json::from_slice(m.key.as_deref().expect("a word key"))
                .expect("a JSON word key");
            if m.offset < words_committed[m.partition as usize] {
                *committed_words.entry(w.clone()).or_default() += 1;
            }
            *sent_words.entry(w).or_default() += 1;
        }
        let behind = missing(&sent_words, &committed_post_words);
        assert!(
            behind.is_empty(),
            "the committed offsets of {} ({posts_committed:?}) ran ahead of the words sent to \
             {}: (word, sent, in committed posts) {behind:?}",
            self.posts,
            self.agent_topic()
        );
        // (b) word records below the committed offsets → reflected in the changelog.
        let behind = missing(&changelog.counts, &committed_words);
        assert!(
            behind.is_empty(),
            "the committed offsets of {} ({words_committed:?}) ran ahead of the changelog: \
             (word, changelog, committed records) {behind:?}",
            self.agent_topic()
        );
        format!(
            "{committed_posts} of {} posts and {} of {} word records committed; changelog holds {} increments",
            posts.len(),
            committed_words.values().sum::<u64>(),
            words.len(),
            changelog.counts.values().sum::<u64>()
        )
    }

    /// Wait until the workers' logs show that they share the posts topic's
    /// partitions (each has some, together all, none twice).
    /// Start workers `a` and `b`, wait until they share the partitions,
    /// produce posts `0..n` and wait until counting has begun.
    pub(crate) async fn two_workers_counting(&mut self, n: u64) -> (Proc, Proc, Fold) {
        let mut a = self.worker("a");
        let mut b = self.worker("b");
        let mut fold = self.fold().await;
        self.wait_until_shared(&mut [&mut a, &mut b]);
        self.produce(0, n);
        fold.wait_for(self, "workers are counting", PHASE, |c| {
            c.values().sum::<u64>() > 0
        })
        .await;
        (a, b, fold)
    }

    pub(crate) fn wait_until_shared(&self, workers: &mut [&mut Proc]) {
        let deadline = Instant::now() + PHASE;
        loop {
            for w in workers.iter_mut() {
                assert!(
                    w.running(),
                    "{} exited; its log:\n{}",
                    w.name,
                    tail(&w.log, 40)
                );
            }
            let sets: Vec<BTreeSet<u32>> = workers
                .iter()
                .map(|w| assigned(&w.log_text(), &self.posts))
                .collect();
            let total: usize = sets.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<u32> = sets.iter().flatten().copied().collect();
            if sets.iter().all(|s| !s.is_empty())
                && union.len() == PARTITIONS as usize
                && total == PARTITIONS as usize
            {
                self.note(&format!("posts partitions shared: {sets:?}"));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the workers did not share the partitions within {PHASE:?} (last seen {sets:?}); logs:\n{}",
                workers
                    .iter()
                    .map(|w| format!("--- {}\n{}", w.name, tail(&w.log, 30)))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.procs {
                eprintln!("--- {} (last lines)\n{}", log.display(), tail(log, 25));
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub(crate) fn finish_producer(s: &Scenario, p: &mut Proc) {
    let status = p.wait(PHASE);
    assert!(
        status.success(),
        "{} failed ({status}); its log:\n{}",
        p.name,
        tail(&p.log, 40)
    );
    s.note(&format!("{} done", p.name));
}

/// The posts partitions of the worker's current assignment, from its log
/// (`partitions assigned partitions=[topic[0], …]`; a revocation empties it).
pub(crate) fn assigned(log: &str, posts: &str) -> BTreeSet<u32> {
    let mut current = BTreeSet::new();
    let needle = format!("{posts}[");
    for line in log.lines() {
        if line.contains("partitions revoked") {
            current.clear();
        } else if line.contains("partitions assigned") {
            current.clear();
            let mut rest = line;
            while let Some(i) = rest.find(&needle) {
                rest = &rest[i + needle.len()..];
                let end = rest.find(']').unwrap_or(rest.len());
                if let Ok(p) = rest[..end].parse() {
                    current.insert(p);
                }
            }
        }
    }
    current
}

pub(crate) fn tps(topic: &str) -> Vec<TopicPartition> {
    (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect()
}

/// A group-less reader of all partitions of a topic, from the beginning.
pub(crate) struct Reader {
    pub(crate) consumer: Box<dyn PartitionReader>,
    pub(crate) topic: String,
    pub(crate) next: HashMap<u32, i64>,
    pub(crate) messages: Vec<Message>,
}

impl Reader {
    pub(crate) async fn new(t: Arc<dyn Transport>, topic: &str) -> Reader {
        let mut consumer = t
            .reader(&ReaderConfig::new(unique("kwc-reader")))
            .await
            .expect("a partition reader");
        let tps = tps(topic);
        consumer.assign(&tps).await.expect("assign");
        for tp in &tps {
            consumer.seek(tp, 0).await.expect("seek to 0");
        }
        Reader {
            consumer,
            topic: topic.to_string(),
            next: HashMap::new(),
            messages: Vec::new(),
        }
    }

    /// Read what arrives within `within`; returns how many messages came.
    pub(crate) async fn poll(&mut self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        let mut got = 0;
        while Instant::now() < deadline {
            let batch = self
                .consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("poll");
            if batch.is_empty() {
                break;
            }
            for m in batch {
                self.next.insert(m.partition, m.offset + 1);
                self.messages.push(m);
                got += 1;
            }
        }
        got
    }

    /// Read every partition up to its high-water mark as of now.
    pub(crate) async fn catch_up(&mut self) {
        let mut ends = Vec::new();
        for tp in tps(&self.topic) {
            let hw = self
                .consumer
                .high_watermark(&tp)
                .await
                .expect("high-water mark");
            ends.push((tp.partition, hw));
        }
        let deadline = Instant::now() + PHASE;
        while ends
            .iter()
            .any(|(p, hw)| self.next.get(p).copied().unwrap_or(0) < *hw)
        {
            assert!(
                Instant::now() < deadline,
                "could not read {} to its end {ends:?} (at {:?})",
                self.topic,
                self.next
            );
            self.poll(Duration::from_millis(500)).await;
        }
    }
}

/// The table as of the changelog read so far: the last value per key.
pub(crate) struct Fold {
    pub(crate) reader: Reader,
    pub(crate) counts: Counts,
}

impl Fold {
    pub(crate) async fn new(t: Arc<dyn Transport>, changelog: &str) -> Fold {
        Fold {
            reader: Reader::new(t, changelog).await,
            counts: Counts::new(),
        }
    }

    pub(crate) fn apply(&mut self) {
        for m in self.reader.messages.drain(..) {
            let key: String = serde_json::from_slice(m.key.as_deref().expect("a changelog key"))
                .expect("a JSON changelog key");
            match m.value.as_deref() {
                Some(v) => {
                    let n: u64 = serde_json::from_slice(v).expect("a JSON count");
                    self.counts.insert(key, n);
                }
                None => {
                    self.counts.remove(&key);
                }
            }
        }
    }

    pub(crate) async fn poll(&mut self, within: Duration) {
        self.reader.poll(within).await;
        self.apply();
    }

    pub(crate) async fn catch_up(&mut self) {
        self.reader.catch_up().await;
        self.apply();
    }

    pub(crate) fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Poll until `done(counts)` holds; panics with `what` after `within`,
    /// or earlier when the changelog has not grown for [`STALL`].
    pub(crate) async fn wait_for(
        &mut self,
        s: &Scenario,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&Counts) -> bool,
    ) {
        let deadline = Instant::now() + within;
        let (mut last_total, mut last_growth) = (self.total(), Instant::now());
        loop {
            self.poll(Duration::from_millis(500)).await;
            if done(&self.counts) {
                s.note(&format!("{what} (changelog total {})", self.total()));
                return;
            }
            if self.total() != last_total {
                (last_total, last_growth) = (self.total(), Instant::now());
            }
            assert!(
                Instant::now() < deadline && last_growth.elapsed() < STALL,
                "gave up waiting for {what} (deadline {within:?}, no growth for {:?}); the \
                 changelog holds {} increments: {:?}",
                last_growth.elapsed(),
                self.total(),
                self.counts
            );
        }
    }

    /// Wait until the fold equals `want`, then read to the end and check it
    /// still does (nothing counted twice).
    pub(crate) async fn expect_exact(&mut self, s: &Scenario, want: &Counts) {
        let total: u64 = want.values().sum();
        self.wait_for(s, "changelog equals the expected counts", PHASE * 2, |c| {
            c == want || c.values().sum::<u64>() > total
        })
        .await;
        self.catch_up().await;
        assert_eq!(
            &self.counts, want,
            "the folded changelog differs from the expected counts"
        );
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
