//! Properties of a table-keeping app under random cluster schedules (joins,
//! graceful leaves, crashes, restarts with local stores, rebalances during
//! recovery, clock jumps), checked with the deterministic cluster simulator.
//!
//! The app: `input` (key: a word, value: the record's id) → agent `collect`
//! → table `seen` (word → the ids seen for it, in processing order). A table
//! of id lists is a stronger fold than a count: it shows which event was
//! applied twice, not only that one was.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use faustus_core::transport::Record;
use faustus_core::{App, AppBuilder, Result};
use faustus_testkit::sim::{self, Cluster, SimConfig, SimRng, Step, WorkerCtx};
use futures::StreamExt;
use proptest::prelude::*;

const WORDS: u64 = 10;

fn collect_app(ctx: &WorkerCtx, builder: AppBuilder) -> Result<App> {
    let app = builder.build()?;
    let input = app.topic::<String, u64>("input").build()?;
    let seen = app
        .table::<String, Vec<u64>>("seen")
        .with_default()
        .build()?;
    let recorder = ctx.recorder.clone();
    let me = format!("{}#{}", ctx.name, ctx.incarnation);
    app.agent::<String, u64>("collect")
        .on(&input)
        .build(move |stream| {
            let (seen, recorder, me) = (seen.clone(), recorder.clone(), me.clone());
            async move {
                let mut events = stream.events();
                while let Some(event) = events.next().await {
                    let word = event.key.clone().unwrap_or_default();
                    let id = event.value;
                    seen.update(&word, |ids| ids.push(id)).await?;
                    if let Some(m) = event.message() {
                        recorder.record(
                            &me,
                            format!("{word} <- {id} ({}[{}]@{})", m.topic, m.partition, m.offset),
                        );
                    }
                }
                Ok(())
            }
        })?;
    Ok(app)
}

fn feed(rng: &mut SimRng, i: u64) -> Record {
    let word = format!("word-{}", rng.below(WORDS));
    Record::new(
        "input",
        Some(Bytes::from(serde_json::to_vec(&word).unwrap())),
        Some(Bytes::from(serde_json::to_vec(&i).unwrap())),
    )
}

/// One input record as the broker holds it.
#[derive(Debug, Clone)]
struct Input {
    word: String,
    partition: u32,
    offset: i64,
}

/// The result of one simulated run.
struct Run {
    inputs: BTreeMap<u64, Input>,
    table: BTreeMap<String, Vec<u64>>,
    /// Per input partition: committed offsets at each expulsion of its owner.
    expulsions: Vec<(u32, i64)>,
    trace: Vec<String>,
    output: sim::Output,
}

async fn simulate(seed: u64, schedule: &[Step]) -> std::result::Result<Run, String> {
    let mut cluster = Cluster::new(SimConfig::new("collector", seed), collect_app);
    let fail = |cluster: &Cluster, what: String| -> String {
        let trace: Vec<String> = cluster.trace().iter().map(|e| e.to_string()).collect();
        format!(
            "seed {seed}, schedule {schedule:?}: {what}\n--- trace (last 60) ---\n{}",
            trace[trace.len().saturating_sub(60)..].join("\n")
        )
    };
    if let Err(e) = cluster.run(schedule, feed).await {
        return Err(fail(&cluster, format!("schedule failed: {e}")));
    }
    if let Err(e) = cluster.settle().await {
        return Err(fail(&cluster, e.to_string()));
    }
    // Every partition has exactly one active owner.
    if let Err(e) = cluster.check_one_owner_per_partition("input") {
        return Err(fail(&cluster, e.to_string()));
    }
    // Each owner's stored table equals the fold of the table's changelog.
    if let Err(e) = cluster.check_tables_match_changelogs().await {
        return Err(fail(&cluster, e.to_string()));
    }
    let broker = cluster.broker();
    let mut inputs = BTreeMap::new();
    for p in 0..broker.partition_count("input").unwrap_or(0) {
        for m in broker.messages("input", p) {
            let word: String = serde_json::from_slice(m.key.as_deref().unwrap()).unwrap();
            let id: u64 = serde_json::from_slice(m.value.as_deref().unwrap()).unwrap();
            inputs.insert(
                id,
                Input {
                    word,
                    partition: p,
                    offset: m.offset,
                },
            );
        }
    }
    if inputs.len() != cluster.acknowledged().len() {
        return Err(fail(
            &cluster,
            format!(
                "{} records acknowledged, {} on the broker",
                cluster.acknowledged().len(),
                inputs.len()
            ),
        ));
    }
    let changelog = cluster
        .app(
            cluster.live_workers()[0]
                .trim_start_matches('w')
                .parse()
                .unwrap(),
        )
        .unwrap()
        .tables()[0]
        .changelog
        .clone();
    let mut table = BTreeMap::new();
    for part in cluster.changelog_fold(&changelog).into_values() {
        for (k, v) in part {
            let word: String = serde_json::from_slice(&k).unwrap();
            let ids: Vec<u64> = serde_json::from_slice(&v).unwrap();
            table.insert(word, ids);
        }
    }
    let expulsions = broker
        .expulsions("collector")
        .into_iter()
        .flat_map(|x| x.owned)
        .filter(|(tp, _)| &*tp.topic == "input")
        .map(|(tp, c)| (tp.partition, c.unwrap_or(0)))
        .collect();
    let run = Run {
        inputs,
        table,
        expulsions,
        trace: cluster.trace().iter().map(|e| e.to_string()).collect(),
        output: cluster.output(),
    };
    cluster.shutdown().await.map_err(|e| e.to_string())?;
    Ok(run)
}

/// Every acknowledged input is in the table; nothing else is; an input is
/// applied more than once only when an owner of its partition was expelled
/// (crashed, or frozen past its session) before committing it — at most once
/// more per such expulsion; and without duplicates the table is exactly the
/// single-worker reference run's.
fn check_run(run: &Run, reference: &Run) -> std::result::Result<(), String> {
    let mut occurrences: BTreeMap<u64, usize> = BTreeMap::new();
    for (word, ids) in &run.table {
        for id in ids {
            let Some(input) = run.inputs.get(id) else {
                return Err(format!("table has id {id} under {word:?}, never sent"));
            };
            if &input.word != word {
                return Err(format!(
                    "id {id} is under {word:?}, it was sent for {:?}",
                    input.word
                ));
            }
            *occurrences.entry(*id).or_default() += 1;
        }
    }
    for (id, input) in &run.inputs {
        let n = occurrences.get(id).copied().unwrap_or(0);
        if n == 0 {
            return Err(format!("acknowledged input {id} ({input:?}) was lost"));
        }
        let allowed = run
            .expulsions
            .iter()
            .filter(|(p, committed)| *p == input.partition && *committed <= input.offset)
            .count();
        if n - 1 > allowed {
            return Err(format!(
                "input {id} ({input:?}) applied {n} times; expulsions that left it uncommitted: {allowed}"
            ));
        }
    }
    // Without the repeats, the same table as one worker alone.
    let deduped: BTreeMap<String, Vec<u64>> = run
        .table
        .iter()
        .map(|(w, ids)| {
            let mut seen = BTreeSet::new();
            let ids: Vec<u64> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
            (w.clone(), ids)
        })
        .collect();
    if deduped != reference.table {
        let diff: Vec<_> = deduped
            .iter()
            .filter(|(w, ids)| reference.table.get(*w) != Some(*ids))
            .take(3)
            .collect();
        return Err(format!(
            "deduplicated table differs from the single-worker run, e.g. {diff:?}"
        ));
    }
    Ok(())
}

fn sent(schedule: &[Step]) -> u16 {
    schedule
        .iter()
        .map(|s| match s {
            Step::Send(n) => *n,
            _ => 0,
        })
        .sum()
}

fn reference(seed: u64, total: u16) -> Run {
    sim::run_paused(simulate(seed, &[Step::Join(0), Step::Send(total)])).unwrap()
}

fn check_schedule(seed: u64, schedule: &[Step]) -> std::result::Result<(), String> {
    let run = sim::run_paused(simulate(seed, schedule))?;
    let reference = reference(seed, sent(schedule));
    check_run(&run, &reference).map_err(|e| {
        format!(
            "seed {seed}, schedule {schedule:?}: {e}\n--- trace (last 60) ---\n{}",
            run.trace[run.trace.len().saturating_sub(60)..].join("\n")
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// No acknowledged input lost, one owner per partition, tables equal to
    /// their changelogs' fold and to a single-worker run (up to repeats that
    /// expulsions account for), over random schedules of three workers.
    #[test]
    fn tables_survive_random_cluster_schedules(
        seed in any::<u64>(),
        schedule in sim::strategy::schedule(3, 20),
    ) {
        if let Err(e) = check_schedule(seed, &schedule) {
            prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn the_same_seed_and_schedule_reproduce_the_same_run() {
    for seed in [7, 42, 1234, 99, 2024, 5, 31337, 8] {
        let schedule = sim::random_schedule(seed, 3, 20);
        let a = sim::run_paused(simulate(seed, &schedule)).unwrap();
        let b = sim::run_paused(simulate(seed, &schedule)).unwrap();
        let first = a.trace.iter().zip(&b.trace).find(|(x, y)| x != y);
        assert_eq!(first, None, "seed {seed}: traces differ");
        assert_eq!(a.trace.len(), b.trace.len(), "seed {seed}: traces differ");
        let first = a
            .output
            .records
            .iter()
            .zip(&b.output.records)
            .find(|(x, y)| x != y);
        assert_eq!(first, None, "seed {seed}: broker contents differ");
        assert_eq!(a.output, b.output, "seed {seed}: broker contents differ");
        assert_eq!(a.table, b.table);
    }
}

#[test]
fn random_schedules_from_seeds_hold_the_properties() {
    for seed in 0..12 {
        let schedule = sim::random_schedule(seed, 3, 16);
        check_schedule(seed, &schedule).unwrap();
    }
}

#[test]
fn a_crash_with_uncommitted_work_is_repeated_only_from_the_committed_offset() {
    // Worker 0 processes 60 records and commits them, processes 40 more and
    // crashes before its next commit; worker 1 (already a member) takes the
    // partitions over after the session timeout.
    let schedule = [
        Step::Join(0),
        Step::Join(1),
        Step::Run(3_000),
        Step::Send(60),
        Step::Run(2_500),
        Step::Send(40),
        Step::Run(300),
        Step::Crash(0),
        Step::Crash(1),
        Step::Run(1_000),
        Step::Join(1),
    ];
    check_schedule(9, &schedule).unwrap();
    let run = sim::run_paused(simulate(9, &schedule)).unwrap();
    assert!(
        run.expulsions.len() >= 2,
        "both crashed members were expelled: {:?}",
        run.expulsions
    );
}

#[test]
fn a_rebalance_in_the_middle_of_recovery_is_handled() {
    let schedule = [
        Step::Join(0),
        Step::Send(200),
        Step::Run(3_000),
        Step::Leave(0),
        Step::JoinWhileRecovering(1, 2),
        Step::Send(20),
        Step::Run(500),
        Step::JoinWhileRecovering(0, 1),
    ];
    let run = sim::run_paused(simulate(3, &schedule)).unwrap();
    assert!(
        run.trace.iter().any(|l| l.contains("w1 recovering: true")),
        "the second worker joined while the first was recovering:\n{}",
        run.trace.join("\n")
    );
    check_schedule(3, &schedule).unwrap();
}

/// Found by the property test: a worker that crashed and was restarted at
/// once is a new group member; the cluster is not settled while the crashed
/// incarnation is still a member.
#[test]
fn a_restarted_worker_is_not_mistaken_for_its_crashed_incarnation() {
    let schedule = [
        Step::Join(0),
        Step::Join(1),
        Step::Run(1),
        Step::Crash(1),
        Step::Join(1),
        Step::Run(1),
        Step::Leave(1),
        Step::Crash(0),
    ];
    check_schedule(0, &schedule).unwrap();
}

/// Changelog records replayed by worker `n` so far.
fn recovered(cluster: &Cluster, n: u8) -> u64 {
    cluster
        .app(n)
        .map_or(0, |a| a.monitor().snapshot().recovered_records)
}

/// Two workers, each the standby of the other's table partitions; worker 0
/// crashes (or leaves) and worker 1 takes its partitions over. With standbys
/// it replays at most what its standby copy had not read when worker 0 went
/// away; without, the whole changelog of those partitions. Returns (records
/// replayed by worker 1, that bound, the partitions' whole changelog).
async fn promotion(
    seed: u64,
    sends: u16,
    before_crash_ms: u32,
    standbys: u32,
    graceful: bool,
) -> (u64, u64, u64) {
    let mut config = SimConfig::new("collector", seed);
    config.standby_replicas = standbys;
    // Slow changelog reads: a standby lags its owner by up to this much.
    config.fetch_delay = std::time::Duration::from_millis(400);
    let mut cluster = Cluster::new(config, collect_app);
    cluster
        .run(
            &[
                Step::Join(0),
                Step::Join(1),
                Step::Run(3_000),
                Step::Send(sends),
                // At least one commit, so the changelog has records; worker 0
                // may go before its standby read all of it.
                Step::Run(1_100 + before_crash_ms),
            ],
            |_: &mut SimRng, i: u64| {
                // A key per record: a changelog as long as the input.
                Record::new(
                    "input",
                    Some(Bytes::from(
                        serde_json::to_vec(&format!("key-{i}")).unwrap(),
                    )),
                    Some(Bytes::from(serde_json::to_vec(&i).unwrap())),
                )
            },
        )
        .await
        .unwrap();
    let taken: Vec<u32> = cluster
        .owners("input")
        .into_iter()
        .filter(|(_, o)| o == &["w0".to_string()])
        .map(|(p, _)| p)
        .collect();
    assert!(!taken.is_empty(), "worker 0 owns partitions");
    let changelog = cluster.app(0).unwrap().tables()[0].changelog.clone();
    let before = recovered(&cluster, 1);
    // The standby's position can only grow from here.
    let mut positions = Vec::new();
    for p in &taken {
        let (_, stored) = cluster.stored("w1", "seen", 4, *p).await.unwrap();
        positions.push(stored.map_or(0, |o| o as u64 + 1));
    }
    if graceful {
        cluster.leave(0).await.unwrap();
    } else {
        cluster.crash(0);
    }
    // Worker 0 wrote its last changelog records; nobody else writes these
    // partitions before worker 1 recovered them.
    let mut full = 0;
    let mut tail_bound = 0;
    for (p, position) in taken.iter().zip(positions) {
        let end = cluster
            .broker()
            .end_offset(&faustus_core::TopicPartition::new(changelog.clone(), *p))
            as u64;
        full += end;
        tail_bound += end - position.min(end);
    }
    cluster.settle().await.unwrap();
    cluster.check_one_owner_per_partition("input").unwrap();
    cluster.check_tables_match_changelogs().await.unwrap();
    let replayed = recovered(&cluster, 1) - before;
    cluster.shutdown().await.unwrap();
    (replayed, tail_bound, full)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A standby promoted to active replays only the tail its copy lacked.
    #[test]
    fn standby_promotion_replays_only_the_tail(
        seed in any::<u64>(),
        sends in 40u16..300,
        before_crash_ms in 0u32..2_000,
        graceful in any::<bool>(),
    ) {
        let (replayed, tail_bound, full) =
            sim::run_paused(promotion(seed, sends, before_crash_ms, 1, graceful));
        prop_assert!(full > 0, "worker 0's changelog partitions have records");
        prop_assert!(
            replayed <= tail_bound,
            "replayed {} records, the standby lacked {} (of {})", replayed, tail_bound, full
        );
        let (replayed, _, full) =
            sim::run_paused(promotion(seed, sends, before_crash_ms, 0, graceful));
        prop_assert_eq!(replayed, full, "without standbys the whole changelog is replayed");
    }
}
