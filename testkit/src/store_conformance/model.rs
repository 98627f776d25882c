//! Model-based property test of a store against a `BTreeMap`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use faustus_core::store::{Store, TableSpec, WriteBatch};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestCaseResult, TestRunner};

use super::unique;

const MODEL_PARTITIONS: u32 = 3;

/// One step of the model check.
#[derive(Clone, Debug)]
enum Op {
    Put(u32, Vec<u8>, Vec<u8>),
    Delete(u32, Vec<u8>),
    Batch(u32, Vec<(Vec<u8>, Option<Vec<u8>>)>, Option<i64>),
    /// The same through `apply_replayed` (table recovery's write).
    Replayed(u32, Vec<(Vec<u8>, Option<Vec<u8>>)>, Option<i64>),
    DropPartition(u32),
    Reset,
    Reopen,
    Sync,
    Get(u32, Vec<u8>),
    Scan(u32, Option<Vec<u8>>, usize),
    Len(u32),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // A small key space (31 keys, the empty one included) so ops collide.
    let key = || prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 0x80, 0xff]), 0..=2);
    let value = || prop::collection::vec(any::<u8>(), 0..4);
    let partition = || 0..MODEL_PARTITIONS;
    let offset = || prop::option::of(0i64..1000);
    prop_oneof![
        4 => (partition(), key(), value()).prop_map(|(p, k, v)| Op::Put(p, k, v)),
        2 => (partition(), key()).prop_map(|(p, k)| Op::Delete(p, k)),
        4 => (
            partition(),
            prop::collection::vec((key(), prop::option::weighted(0.7, value())), 0..6),
            offset(),
        )
            .prop_map(|(p, ops, o)| Op::Batch(p, ops, o)),
        2 => (
            partition(),
            prop::collection::vec((key(), prop::option::weighted(0.7, value())), 0..6),
            offset(),
        )
            .prop_map(|(p, ops, o)| Op::Replayed(p, ops, o)),
        1 => partition().prop_map(Op::DropPartition),
        1 => Just(Op::Reset),
        1 => Just(Op::Reopen),
        1 => Just(Op::Sync),
        2 => (partition(), key()).prop_map(|(p, k)| Op::Get(p, k)),
        2 => (partition(), prop::option::of(key()), 0usize..5).prop_map(|(p, a, l)| Op::Scan(p, a, l)),
        1 => partition().prop_map(Op::Len),
    ]
}

#[derive(Clone, Debug, Default)]
struct ModelPartition {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    offset: Option<i64>,
}

fn fail(what: impl fmt::Display, e: impl fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {e}"))
}

fn pairs(v: Vec<(Bytes, Bytes)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    v.into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

async fn run_model(store: Arc<dyn Store>, ops: Vec<Op>) -> TestCaseResult {
    let spec = TableSpec::new(unique("model"), MODEL_PARTITIONS);
    let mut table = store.open(&spec).await.map_err(|e| fail("open", e))?;
    let mut model = vec![ModelPartition::default(); MODEL_PARTITIONS as usize];

    for (step, op) in ops.into_iter().enumerate() {
        let at = format!("step {step} {op:?}");
        let replayed = matches!(op, Op::Replayed(..));
        match op {
            Op::Put(p, k, v) => {
                let mut b = WriteBatch::new();
                b.put(k.clone(), v.clone());
                table.apply(p, b).await.map_err(|e| fail(&at, e))?;
                model[p as usize].data.insert(k, v);
            }
            Op::Delete(p, k) => {
                let mut b = WriteBatch::new();
                b.delete(k.clone());
                table.apply(p, b).await.map_err(|e| fail(&at, e))?;
                model[p as usize].data.remove(&k);
            }
            Op::Batch(p, ops, offset) | Op::Replayed(p, ops, offset) => {
                let b = WriteBatch {
                    ops: ops
                        .iter()
                        .map(|(k, v)| (Bytes::from(k.clone()), v.clone().map(Bytes::from)))
                        .collect(),
                    offset,
                };
                if replayed {
                    table.apply_replayed(p, b).await
                } else {
                    table.apply(p, b).await
                }
                .map_err(|e| fail(&at, e))?;
                let m = &mut model[p as usize];
                for (k, v) in ops {
                    match v {
                        Some(v) => m.data.insert(k, v),
                        None => m.data.remove(&k),
                    };
                }
                if offset.is_some() {
                    m.offset = offset;
                }
            }
            Op::DropPartition(p) => {
                table.drop_partition(p).await.map_err(|e| fail(&at, e))?;
                model[p as usize] = ModelPartition::default();
            }
            Op::Reset => {
                table.reset().await.map_err(|e| fail(&at, e))?;
                model
                    .iter_mut()
                    .for_each(|m| *m = ModelPartition::default());
            }
            Op::Reopen => {
                table = store.open(&spec).await.map_err(|e| fail(&at, e))?;
            }
            Op::Sync => table.sync().await.map_err(|e| fail(&at, e))?,
            Op::Get(p, k) => {
                let got = table.get(p, &k).await.map_err(|e| fail(&at, e))?;
                prop_assert_eq!(
                    got.map(|v| v.to_vec()),
                    model[p as usize].data.get(&k).cloned(),
                    "{}",
                    at
                );
            }
            Op::Scan(p, after, limit) => {
                let got = table
                    .scan(p, after.as_deref(), limit)
                    .await
                    .map_err(|e| fail(&at, e))?;
                let start = match &after {
                    Some(a) => std::ops::Bound::Excluded(a.clone()),
                    None => std::ops::Bound::Unbounded,
                };
                let want: Vec<_> = model[p as usize]
                    .data
                    .range((start, std::ops::Bound::Unbounded))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(pairs(got), want, "{}", at);
            }
            Op::Len(p) => {
                let got = table.len(p).await.map_err(|e| fail(&at, e))?;
                prop_assert_eq!(got, model[p as usize].data.len() as u64, "{}", at);
            }
        }

        // After every step the whole table agrees with the model.
        for (p, m) in (0u32..).zip(&model) {
            let all = table
                .scan(p, None, usize::MAX)
                .await
                .map_err(|e| fail(format!("{at}, then scan {p}"), e))?;
            let want: Vec<_> = m.data.clone().into_iter().collect();
            prop_assert_eq!(pairs(all), want, "partition {} after {}", p, at);
            let len = table.len(p).await.map_err(|e| fail(&at, e))?;
            prop_assert_eq!(
                len,
                m.data.len() as u64,
                "len of partition {} after {}",
                p,
                at
            );
            let offset = table.persisted_offset(p).await.map_err(|e| fail(&at, e))?;
            prop_assert_eq!(offset, m.offset, "offset of partition {} after {}", p, at);
        }
    }
    Ok(())
}

/// Model-based property test: random sequences of puts, deletes, batches
/// with and without offsets, drops, resets, reopens, syncs, gets, scans and
/// lens over three partitions and a small key space, applied both to a
/// table of a store from `make` and to a `BTreeMap` model; after every
/// step, every partition's entries, length and offset must agree.
///
/// `make` is called once per generated case (and per shrinking step), so
/// it should return a fresh store. Runs 64 cases, or `PROPTEST_CASES` when
/// set, on a current-thread tokio runtime it creates, so it can be called
/// from a plain `#[test]`. Failures are shrunk to a minimal sequence and
/// reported by panicking; nothing is persisted to disk.
///
/// # Panics
///
/// When the store and the model disagree, or a store call fails.
pub fn store_model_check(make: impl Fn() -> Arc<dyn Store>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("store conformance: cannot build a tokio runtime");
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    let mut runner = TestRunner::new(config);
    let strategy = prop::collection::vec(op_strategy(), 1..48);
    let result = runner.run(&strategy, |ops| {
        runtime.block_on(async {
            let store = make();
            run_model(store, ops).await
        })
    });
    if let Err(e) = result {
        panic!("store model check failed: {e}");
    }
}
