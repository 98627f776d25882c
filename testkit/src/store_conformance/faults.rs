//! The store contract under failing writes, through [`FaultyStore`].

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use faustus_core::store::{Store, TableSpec, TableStore, WriteBatch};
use faustus_core::Result;

use super::unique;
use crate::faults::FaultyStore;

const PARTITIONS: u32 = 3;

/// What a table holds: each partition's entries and offset.
type Snapshot = Vec<(Vec<(Bytes, Bytes)>, Option<i64>)>;

async fn snapshot(name: &str, t: &dyn TableStore) -> Snapshot {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let entries = t
            .scan(p, None, usize::MAX)
            .await
            .unwrap_or_else(|e| panic!("{name}[{p}] scan failed: {e}"));
        let offset = t
            .persisted_offset(p)
            .await
            .unwrap_or_else(|e| panic!("{name}[{p}] persisted_offset failed: {e}"));
        out.push((entries, offset));
    }
    out
}

/// A model of the table: the effect of applying `batches` once each, in
/// order, on `before`.
fn applied(before: &Snapshot, batches: &[(u32, &WriteBatch)]) -> Snapshot {
    let mut out = before.clone();
    for (p, b) in batches {
        let (entries, offset) = &mut out[*p as usize];
        let mut map: BTreeMap<Bytes, Bytes> = entries.drain(..).collect();
        for (k, v) in &b.ops {
            match v {
                Some(v) => {
                    map.insert(k.clone(), v.clone());
                }
                None => {
                    map.remove(k);
                }
            }
        }
        *entries = map.into_iter().collect();
        if b.offset.is_some() {
            *offset = b.offset;
        }
    }
    out
}

fn batch(ops: &[(&str, Option<&str>)], offset: Option<i64>) -> WriteBatch {
    WriteBatch {
        ops: ops
            .iter()
            .map(|(k, v)| {
                (
                    Bytes::copy_from_slice(k.as_bytes()),
                    v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                )
            })
            .collect(),
        offset,
    }
}

#[track_caller]
fn must_fail(store: &str, name: &str, call: &str, result: Result<()>) {
    match result {
        Ok(()) => panic!("store {store:?}: {name} {call} succeeded with a fault injected"),
        Err(e) => {
            assert!(
                e.is_retryable(),
                "store {store:?}: {name} {call}: the injected error is retryable: {e}"
            );
            assert!(
                e.to_string().contains(name),
                "store {store:?}: {name} {call}: the error names the table: {e}"
            );
        }
    }
}

/// A write that fails leaves the table as it was before the call — every
/// kind of write — and retrying it once the fault clears applies it exactly
/// once; a write that failed *after* being applied (a commit whose fsync
/// failed) and is retried leaves the same state as one application.
///
/// The store is wrapped in a [`FaultyStore`]; what this checks of the store
/// itself is that a retried batch (same ops, same offset) is idempotent.
pub async fn failed_writes_leave_the_store_and_retries_apply_once(store: Arc<dyn Store>) {
    let sname = store.name().to_string();
    let faulty = FaultyStore::new(store.clone());
    let name = unique("faults");
    let spec = TableSpec::new(name.clone(), PARTITIONS);
    let t = faulty
        .open(&spec)
        .await
        .unwrap_or_else(|e| panic!("store {sname:?}: open {name:?} failed: {e}"));
    let ok = |call: &str, r: Result<()>| {
        if let Err(e) = r {
            panic!("store {sname:?}: {name} {call} failed with no fault injected: {e}")
        }
    };

    ok(
        "apply",
        t.apply(0, batch(&[("a", Some("1")), ("b", Some("2"))], Some(5)))
            .await,
    );
    ok(
        "apply",
        t.apply(1, batch(&[("x", Some("1"))], Some(2))).await,
    );
    let before = snapshot(&name, &*t).await;

    let b = batch(
        &[
            ("a", Some("10")),
            ("b", None),
            ("c", Some("3")),
            ("c", None),
            ("c", Some("4")),
        ],
        Some(6),
    );
    let c = batch(&[("x", None), ("y", Some("2"))], Some(3));

    // Every kind of write, failing: nothing changes.
    let unchanged = |call: &'static str, result: Result<()>| {
        let (t, sname, name, before) = (&t, &sname, &name, &before);
        async move {
            must_fail(sname, name, call, result);
            assert_eq!(
                &snapshot(name, &**t).await,
                before,
                "store {sname:?}: {name}: a failed {call} leaves the table as it was"
            );
        }
    };
    faulty.fail_next_writes(1);
    unchanged("apply", t.apply(0, b.clone()).await).await;
    faulty.fail_next_writes(1);
    let both = vec![(0, b.clone()), (1, c.clone())];
    unchanged("apply_partitions", t.apply_partitions(both).await).await;
    faulty.fail_next_writes(1);
    unchanged("apply_replayed", t.apply_replayed(0, b.clone()).await).await;
    faulty.fail_next_writes(1);
    unchanged("drop_partition", t.drop_partition(0).await).await;
    faulty.fail_next_writes(1);
    unchanged("reset", t.reset().await).await;
    // Seen by a handle on the store itself too.
    let direct = store
        .open(&spec)
        .await
        .unwrap_or_else(|e| panic!("store {sname:?}: open {name:?} again failed: {e}"));
    assert_eq!(snapshot(&name, &*direct).await, before);
    assert_eq!(faulty.failed_writes(), 5);
    assert_eq!(faulty.writes(), 2, "only the two first applies got through");

    // The fault cleared, the retry applies once.
    ok(
        "apply_partitions (retry)",
        t.apply_partitions(vec![(0, b.clone()), (1, c.clone())])
            .await,
    );
    let once = applied(&before, &[(0, &b), (1, &c)]);
    assert_eq!(
        snapshot(&name, &*t).await,
        once,
        "store {sname:?}: {name}: the retried batches, applied once"
    );

    // Failed after it was applied (a commit whose fsync failed): the caller
    // retries; the state is that of one application.
    let d = batch(&[("a", None), ("d", Some("5")), ("d", Some("6"))], Some(7));
    let e = batch(&[("z", Some("9"))], Some(1));
    faulty.fail_after_applying(true);
    faulty.fail_next_writes(1);
    must_fail(
        &sname,
        &name,
        "apply_partitions (failing after applying)",
        t.apply_partitions(vec![(0, d.clone()), (2, e.clone())])
            .await,
    );
    faulty.fail_after_applying(false);
    let after_d = applied(&once, &[(0, &d), (2, &e)]);
    assert_eq!(
        snapshot(&name, &*t).await,
        after_d,
        "store {sname:?}: {name}: a write failed after applying is applied"
    );
    ok(
        "apply_partitions (retry)",
        t.apply_partitions(vec![(0, d.clone()), (2, e.clone())])
            .await,
    );
    ok("apply (retry)", t.apply(0, d.clone()).await);
    assert_eq!(
        snapshot(&name, &*t).await,
        after_d,
        "store {sname:?}: {name}: a batch applied again leaves the state of one application"
    );
    for p in 0..PARTITIONS {
        let len = t
            .len(p)
            .await
            .unwrap_or_else(|e| panic!("store {sname:?}: {name}[{p}] len failed: {e}"));
        assert_eq!(
            len,
            after_d[p as usize].0.len() as u64,
            "store {sname:?}: {name}[{p}]: len after retries"
        );
    }

    // While writes fail, every one fails; afterwards they go through.
    faulty.fail_writes(true);
    must_fail(&sname, &name, "sync", t.sync().await);
    must_fail(&sname, &name, "apply", t.apply(1, c.clone()).await);
    faulty.fail_writes(false);
    ok("sync", t.sync().await);
    assert_eq!(snapshot(&name, &*t).await, after_d);
}
