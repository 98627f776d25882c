//! The check functions of the store contract, and their helpers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use faustus_core::store::{Store, TableSpec, TableStore, WriteBatch};
use faustus_core::Result;

use super::unique;

/// Unwrap a store result, naming the store and the operation on failure.
#[track_caller]
fn ok<T>(store: &dyn Store, what: impl fmt::Display, result: Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("store {:?}: {what} failed: {e}", store.name()),
    }
}

async fn open(store: &dyn Store, spec: &TableSpec) -> Arc<dyn TableStore> {
    ok(
        store,
        format_args!("open table {:?}", spec.name),
        store.open(spec).await,
    )
}

fn batch(ops: &[(&[u8], Option<&[u8]>)], offset: Option<i64>) -> WriteBatch {
    WriteBatch {
        ops: ops
            .iter()
            .map(|(k, v)| (Bytes::copy_from_slice(k), v.map(Bytes::copy_from_slice)))
            .collect(),
        offset,
    }
}

/// A store and one open table, with terse, self-describing operations.
struct T<'a> {
    store: &'a dyn Store,
    name: String,
    table: Arc<dyn TableStore>,
}

impl<'a> T<'a> {
    async fn open(store: &'a dyn Store, check: &str, partitions: u32) -> Self {
        Self::with_spec(store, &TableSpec::new(unique(check), partitions)).await
    }

    async fn with_spec(store: &'a dyn Store, spec: &TableSpec) -> Self {
        Self {
            store,
            name: spec.name.clone(),
            table: open(store, spec).await,
        }
    }

    async fn apply(&self, p: u32, b: WriteBatch) {
        let what = format!(
            "{}[{p}] apply of {} ops with offset {:?}",
            self.name,
            b.ops.len(),
            b.offset
        );
        ok(self.store, what, self.table.apply(p, b).await);
    }

    async fn apply_replayed(&self, p: u32, b: WriteBatch) {
        let what = format!(
            "{}[{p}] apply_replayed of {} ops with offset {:?}",
            self.name,
            b.ops.len(),
            b.offset
        );
        ok(self.store, what, self.table.apply_replayed(p, b).await);
    }

    async fn put(&self, p: u32, k: &[u8], v: &[u8]) {
        self.apply(p, batch(&[(k, Some(v))], None)).await;
    }

    async fn delete(&self, p: u32, k: &[u8]) {
        self.apply(p, batch(&[(k, None)], None)).await;
    }

    async fn get(&self, p: u32, k: &[u8]) -> Option<Vec<u8>> {
        let what = format_args!("{}[{p}] get {k:?}", self.name);
        ok(self.store, what, self.table.get(p, k).await).map(|v| v.to_vec())
    }

    async fn len(&self, p: u32) -> u64 {
        let what = format_args!("{}[{p}] len", self.name);
        ok(self.store, what, self.table.len(p).await)
    }

    async fn offset(&self, p: u32) -> Option<i64> {
        let what = format_args!("{}[{p}] persisted_offset", self.name);
        ok(self.store, what, self.table.persisted_offset(p).await)
    }

    async fn scan(&self, p: u32, after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let what = format_args!("{}[{p}] scan after {after:?} limit {limit}", self.name);
        ok(self.store, what, self.table.scan(p, after, limit).await)
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    async fn all(&self, p: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.scan(p, None, usize::MAX).await
    }

    async fn drop_partition(&self, p: u32) {
        let what = format_args!("{}[{p}] drop_partition", self.name);
        ok(self.store, what, self.table.drop_partition(p).await);
    }

    async fn reset(&self) {
        let what = format_args!("{} reset", self.name);
        ok(self.store, what, self.table.reset().await);
    }

    async fn sync(&self) {
        let what = format_args!("{} sync", self.name);
        ok(self.store, what, self.table.sync().await);
    }
}

fn entries(pairs: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

// ---------------------------------------------------------------------------
// checks

/// Puts, overwrites, deletes, missing keys and empty values.
pub async fn get_put_delete(store: Arc<dyn Store>) {
    assert!(!store.name().is_empty(), "a store has a name");
    let t = T::open(&*store, "get-put-delete", 2).await;
    assert_eq!(t.get(0, b"k").await, None, "missing key");
    t.put(0, b"k", b"v1").await;
    assert_eq!(t.get(0, b"k").await.as_deref(), Some(&b"v1"[..]));
    t.put(0, b"k", b"v2").await;
    assert_eq!(
        t.get(0, b"k").await.as_deref(),
        Some(&b"v2"[..]),
        "put overwrites"
    );
    t.delete(0, b"k").await;
    assert_eq!(t.get(0, b"k").await, None, "delete removes");
    t.delete(0, b"never-there").await;
    assert_eq!(t.len(0).await, 0, "deleting a missing key is a no-op");

    t.put(0, b"empty", b"").await;
    assert_eq!(
        t.get(0, b"empty").await.as_deref(),
        Some(&b""[..]),
        "an empty value is a value"
    );
    let binary: &[u8] = &[0, 0xff, 0, 0x80];
    t.put(0, binary, &[0, 1, 2]).await;
    assert_eq!(t.get(0, binary).await.as_deref(), Some(&[0u8, 1, 2][..]));
    assert_eq!(
        t.get(0, &[0, 0xff, 0]).await,
        None,
        "keys match exactly, not by prefix"
    );
    let big = vec![0xabu8; 256 * 1024];
    t.put(0, b"big", &big).await;
    assert_eq!(
        t.get(0, b"big").await.as_deref(),
        Some(&big[..]),
        "large value"
    );
}

/// `apply_partitions` applies each partition's batch (ops in order, its
/// offset) and leaves the partitions it does not name alone.
pub async fn apply_partitions_applies_each(store: Arc<dyn Store>) {
    let t = T::open(&*store, "apply-partitions", 3).await;
    t.put(2, b"untouched", b"x").await;
    let batches = vec![
        (
            0,
            batch(
                &[(b"a", Some(b"1")), (b"a", Some(b"2")), (b"b", Some(b"3"))],
                Some(7),
            ),
        ),
        (1, batch(&[(b"a", Some(b"9")), (b"a", None)], None)),
    ];
    ok(
        t.store,
        format!("{} apply_partitions of partitions 0 and 1", t.name),
        t.table.apply_partitions(batches).await,
    );
    assert_eq!(
        t.all(0).await,
        entries(&[(b"a", b"2"), (b"b", b"3")]),
        "partition 0: its batch, later ops winning"
    );
    assert_eq!(
        t.offset(0).await,
        Some(7),
        "partition 0: its batch's offset"
    );
    assert_eq!(t.all(1).await, entries(&[]), "partition 1: put then delete");
    assert_eq!(
        t.offset(1).await,
        None,
        "partition 1: a batch without offset"
    );
    assert_eq!(
        t.all(2).await,
        entries(&[(b"untouched", b"x")]),
        "partition 2 is not in the call"
    );
    ok(
        t.store,
        format!("{} apply_partitions of nothing", t.name),
        t.table.apply_partitions(Vec::new()).await,
    );
    assert_eq!(t.offset(0).await, Some(7), "an empty call changes nothing");
}

/// Ops in one batch apply in order; later ops on a key win.
pub async fn batch_order(store: Arc<dyn Store>) {
    let t = T::open(&*store, "batch-order", 1).await;
    t.apply(
        0,
        batch(
            &[
                (b"a", Some(b"1")),
                (b"b", Some(b"2")),
                (b"a", None),
                (b"c", Some(b"3")),
                (b"b", Some(b"4")),
                (b"d", None),
                (b"e", None),
                (b"e", Some(b"5")),
            ],
            None,
        ),
    )
    .await;
    assert_eq!(
        t.all(0).await,
        entries(&[(b"b", b"4"), (b"c", b"3"), (b"e", b"5")]),
        "later ops in one batch win"
    );
    assert_eq!(t.len(0).await, 3);

    t.apply(0, WriteBatch::new()).await;
    assert_eq!(t.len(0).await, 3, "an empty batch changes nothing");
    assert_eq!(t.offset(0).await, None, "an empty batch sets no offset");

    t.apply(
        0,
        batch(
            &[(b"b", None), (b"c", None), (b"e", None), (b"f", Some(b"6"))],
            Some(3),
        ),
    )
    .await;
    assert_eq!(t.all(0).await, entries(&[(b"f", b"6")]));
    assert_eq!(t.offset(0).await, Some(3));
}

/// Offsets start as `None`, follow batches that carry one, and ignore the rest.
pub async fn offsets(store: Arc<dyn Store>) {
    let t = T::open(&*store, "offsets", 3).await;
    for p in 0..3 {
        assert_eq!(
            t.offset(p).await,
            None,
            "partition {p} starts without an offset"
        );
    }
    t.apply(0, batch(&[(b"k", Some(b"v"))], Some(5))).await;
    assert_eq!(t.offset(0).await, Some(5));
    t.apply(0, batch(&[(b"k", Some(b"w"))], None)).await;
    assert_eq!(
        t.offset(0).await,
        Some(5),
        "a batch without offset leaves it"
    );
    t.apply(0, batch(&[], Some(7))).await;
    assert_eq!(t.offset(0).await, Some(7), "an offset-only batch sets it");
    assert_eq!(t.get(0, b"k").await.as_deref(), Some(&b"w"[..]));
    t.apply(1, batch(&[], Some(0))).await;
    assert_eq!(t.offset(1).await, Some(0), "offset 0 is an offset");
    assert_eq!(t.offset(2).await, None, "other partitions keep theirs");
    assert_eq!(t.offset(0).await, Some(7));
    t.apply(2, batch(&[(b"x", None)], Some(i64::MAX))).await;
    assert_eq!(t.offset(2).await, Some(i64::MAX));
}

/// Keys used by the scan check: binary, the empty key, prefixes of each other.
fn scan_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0u16..300)
        .map(|i| i.wrapping_mul(0x9e37).to_be_bytes().to_vec())
        .collect();
    for k in [
        &b""[..],
        &[0],
        &[0, 0],
        &[0, 0, 0],
        &[0xff],
        &[0xff, 0xff],
        &[0xff, 0xff, 0xff, 0xff],
        b"a",
        b"ab",
        b"abc",
        b"b",
        &[0x7f],
        &[0x80],
    ] {
        keys.push(k.to_vec());
    }
    keys
}

/// Key order, `after` exclusive, `limit`, paging through many binary keys.
pub async fn scan_order_and_pagination(store: Arc<dyn Store>) {
    let t = T::open(&*store, "scan", 2).await;
    let mut expected = BTreeMap::new();
    for chunk in scan_keys().chunks(37) {
        let mut b = WriteBatch::new();
        for k in chunk {
            let v: Vec<u8> = k.iter().rev().copied().chain([0xee]).collect();
            expected.insert(k.clone(), v.clone());
            b.put(k.clone(), v);
        }
        t.apply(0, b).await;
    }
    // Noise in the other partition must not show up.
    t.put(1, b"a", b"other").await;
    t.put(1, &[0x00], b"other").await;

    let all: Vec<_> = expected.clone().into_iter().collect();
    assert_eq!(t.all(0).await, all, "full scan in byte order of the keys");
    assert_eq!(t.len(0).await, all.len() as u64);
    assert_eq!(t.scan(0, None, 0).await, vec![], "limit 0");
    assert_eq!(t.scan(0, None, 3).await, all[..3].to_vec(), "first page");
    assert_eq!(all[0].0, b"".to_vec(), "the empty key sorts first");
    assert_eq!(
        t.scan(0, Some(b""), 2).await,
        all[1..3].to_vec(),
        "after the empty key excludes it"
    );

    for limit in [1, 7, 64, 1000] {
        let mut seen = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = t.scan(0, after.as_deref(), limit).await;
            assert!(
                page.len() <= limit,
                "page of {} with limit {limit}",
                page.len()
            );
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            seen.extend(page);
            assert!(
                seen.len() <= all.len(),
                "paging with limit {limit} repeats entries"
            );
        }
        assert_eq!(
            seen, all,
            "paging with limit {limit} visits every entry once"
        );
    }

    // `after` need not be a stored key.
    for after in [
        &[0x00, 0x05, 0x80][..],
        b"aa",
        &[0xff, 0xff, 0xff],
        &[0xff; 8],
    ] {
        let want: Vec<_> = expected
            .range::<[u8], _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .take(5)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            t.scan(0, Some(after), 5).await,
            want,
            "scan after {after:?}"
        );
    }
    let last = all.last().map(|(k, _)| k.clone()).unwrap_or_default();
    assert_eq!(
        t.scan(0, Some(&last), 10).await,
        vec![],
        "nothing after the last key"
    );

    // Deleted keys disappear from scans.
    let mut b = WriteBatch::new();
    for k in expected.keys().step_by(3).cloned().collect::<Vec<_>>() {
        expected.remove(&k);
        b.delete(k);
    }
    t.apply(0, b).await;
    let all: Vec<_> = expected.into_iter().collect();
    assert_eq!(t.all(0).await, all, "scan after deletes");
    assert_eq!(
        t.all(1).await,
        entries(&[(&[0x00], b"other"), (b"a", b"other")]),
        "the other partition"
    );
}

/// `len` counts live keys: overwrites and missing deletes don't change it.
pub async fn len_counts_keys(store: Arc<dyn Store>) {
    let t = T::open(&*store, "len", 1).await;
    assert_eq!(t.len(0).await, 0);
    for i in 0u8..10 {
        t.put(0, &[i], b"v").await;
    }
    assert_eq!(t.len(0).await, 10);
    t.put(0, &[3], b"again").await;
    assert_eq!(t.len(0).await, 10, "an overwrite is not a new key");
    t.delete(0, &[3]).await;
    t.delete(0, &[42]).await;
    assert_eq!(t.len(0).await, 9);
    t.apply(0, batch(&[(b"n", Some(b"1")), (b"n", None)], None))
        .await;
    assert_eq!(t.len(0).await, 9, "put then delete in one batch");
    t.drop_partition(0).await;
    assert_eq!(t.len(0).await, 0);
}

/// Data and offsets of one partition never show in another.
pub async fn partitions_are_isolated(store: Arc<dyn Store>) {
    let t = T::open(&*store, "partitions", 3).await;
    for p in 0..3u32 {
        let v = format!("value-{p}");
        t.apply(
            p,
            batch(&[(b"k", Some(v.as_bytes()))], Some(i64::from(p) * 10)),
        )
        .await;
    }
    t.put(1, b"only-1", b"x").await;
    for p in 0..3u32 {
        let v = format!("value-{p}");
        assert_eq!(
            t.get(p, b"k").await.as_deref(),
            Some(v.as_bytes()),
            "partition {p}"
        );
        assert_eq!(
            t.offset(p).await,
            Some(i64::from(p) * 10),
            "offset of partition {p}"
        );
    }
    assert_eq!(t.get(0, b"only-1").await, None);
    assert_eq!(t.get(2, b"only-1").await, None);
    assert_eq!((t.len(0).await, t.len(1).await, t.len(2).await), (1, 2, 1));
    t.delete(1, b"k").await;
    assert_eq!(t.get(0, b"k").await.as_deref(), Some(&b"value-0"[..]));
    assert_eq!(t.get(2, b"k").await.as_deref(), Some(&b"value-2"[..]));
    assert_eq!(t.all(1).await, entries(&[(b"only-1", b"x")]));
}

/// Tables of one store never share data, offsets, drops or resets.
pub async fn tables_are_isolated(store: Arc<dyn Store>) {
    let a = T::open(&*store, "tables-a", 2).await;
    let b = T::open(&*store, "tables-b", 2).await;
    a.apply(0, batch(&[(b"k", Some(b"a"))], Some(1))).await;
    b.apply(
        0,
        batch(&[(b"k", Some(b"b")), (b"k2", Some(b"b"))], Some(2)),
    )
    .await;
    a.apply(1, batch(&[(b"k", Some(b"a1"))], Some(11))).await;
    b.apply(1, batch(&[(b"k", Some(b"b1"))], Some(12))).await;
    assert_eq!(a.get(0, b"k").await.as_deref(), Some(&b"a"[..]));
    assert_eq!(b.get(0, b"k").await.as_deref(), Some(&b"b"[..]));
    assert_eq!((a.len(0).await, b.len(0).await), (1, 2));
    assert_eq!((a.offset(0).await, b.offset(0).await), (Some(1), Some(2)));

    a.drop_partition(0).await;
    assert_eq!(
        b.all(0).await,
        entries(&[(b"k", b"b"), (b"k2", b"b")]),
        "drop in another table"
    );
    assert_eq!(b.offset(0).await, Some(2));
    b.reset().await;
    assert_eq!(
        a.get(1, b"k").await.as_deref(),
        Some(&b"a1"[..]),
        "reset of another table"
    );
    assert_eq!(a.offset(1).await, Some(11));
    assert_eq!(b.len(1).await, 0);
}

/// `drop_partition` forgets one partition's data and offset, nothing else.
pub async fn drop_partition_clears_one(store: Arc<dyn Store>) {
    let t = T::open(&*store, "drop-partition", 2).await;
    t.apply(0, batch(&[(b"a", Some(b"1")), (b"b", Some(b"2"))], Some(4)))
        .await;
    t.apply(1, batch(&[(b"a", Some(b"x"))], Some(9))).await;
    t.drop_partition(0).await;
    assert_eq!(t.get(0, b"a").await, None);
    assert_eq!(t.len(0).await, 0);
    assert_eq!(t.all(0).await, vec![]);
    assert_eq!(t.offset(0).await, None, "the offset goes with the data");
    assert_eq!(
        t.all(1).await,
        entries(&[(b"a", b"x")]),
        "the other partition stays"
    );
    assert_eq!(t.offset(1).await, Some(9));

    t.drop_partition(0).await; // dropping an empty partition is fine
    t.apply(0, batch(&[(b"c", Some(b"3"))], Some(1))).await;
    assert_eq!(
        t.all(0).await,
        entries(&[(b"c", b"3")]),
        "usable after a drop"
    );
    assert_eq!(t.offset(0).await, Some(1));
}

/// `reset` forgets every partition of the table; the table stays usable.
pub async fn reset_clears_all(store: Arc<dyn Store>) {
    let t = T::open(&*store, "reset", 3).await;
    for p in 0..3u32 {
        t.apply(
            p,
            batch(
                &[(b"a", Some(b"1")), (&[0xff], Some(b"2"))],
                Some(i64::from(p)),
            ),
        )
        .await;
    }
    t.reset().await;
    for p in 0..3u32 {
        assert_eq!(t.len(p).await, 0, "partition {p} after reset");
        assert_eq!(t.all(p).await, vec![], "partition {p} after reset");
        assert_eq!(t.get(p, b"a").await, None);
        assert_eq!(
            t.offset(p).await,
            None,
            "offset of partition {p} after reset"
        );
    }
    t.reset().await; // resetting an empty table is fine
    t.apply(2, batch(&[(b"z", Some(b"9"))], Some(100))).await;
    assert_eq!(
        t.all(2).await,
        entries(&[(b"z", b"9")]),
        "usable after reset"
    );
    assert_eq!(t.offset(2).await, Some(100));
}

/// Opening a table name again on the same store gives the same state.
pub async fn reopen_returns_same_state(store: Arc<dyn Store>) {
    let first = T::open(&*store, "reopen", 2).await;
    let spec = TableSpec::new(first.name.clone(), 2);
    first.apply(1, batch(&[(b"k", Some(b"v"))], Some(3))).await;

    let second = T::with_spec(&*store, &spec).await;
    assert_eq!(
        second.get(1, b"k").await.as_deref(),
        Some(&b"v"[..]),
        "seen by a second handle"
    );
    assert_eq!(second.offset(1).await, Some(3));
    second.apply(0, batch(&[(b"j", Some(b"w"))], Some(8))).await;
    assert_eq!(
        first.get(0, b"j").await.as_deref(),
        Some(&b"w"[..]),
        "writes go both ways"
    );
    assert_eq!(first.offset(0).await, Some(8));

    drop(first);
    drop(second);
    let third = T::with_spec(&*store, &spec).await;
    assert_eq!(
        third.all(1).await,
        entries(&[(b"k", b"v")]),
        "after every handle was dropped"
    );
    assert_eq!(third.offset(0).await, Some(8));
}

/// A partition `>= spec.partitions` is an error naming the table, never a panic.
pub async fn out_of_range_partition_is_error(store: Arc<dyn Store>) {
    let t = T::open(&*store, "out-of-range", 3).await;
    t.put(2, b"k", b"v").await;
    for p in [3, 4, u32::MAX] {
        let table = &t.table;
        let results: Vec<(&str, Result<()>)> = vec![
            ("get", table.get(p, b"k").await.map(drop)),
            (
                "apply",
                table.apply(p, batch(&[(b"k", Some(b"v"))], Some(1))).await,
            ),
            ("scan", table.scan(p, None, 10).await.map(drop)),
            ("len", table.len(p).await.map(drop)),
            (
                "persisted_offset",
                table.persisted_offset(p).await.map(drop),
            ),
            ("drop_partition", table.drop_partition(p).await),
        ];
        for (op, result) in results {
            match result {
                Ok(()) => panic!(
                    "store {:?}: {op} on partition {p} of a 3-partition table succeeded",
                    store.name()
                ),
                Err(e) => assert!(
                    e.to_string().contains(&t.name),
                    "store {:?}: the error of {op} on partition {p} should name table {:?}: {e}",
                    store.name(),
                    t.name
                ),
            }
        }
    }
    assert_eq!(t.all(2).await, entries(&[(b"k", b"v")]), "table unharmed");
    assert_eq!(t.offset(2).await, None, "the failed apply set no offset");
}

/// Data and offsets applied and synced survive reopening the store.
///
/// `open` must open a *new instance* of the store on the same location each
/// time it is called (for a file store: the same directory). Every handle of
/// one instance is dropped before the next is opened.
pub async fn durability<F>(open_store: F)
where
    F: Fn() -> Arc<dyn Store>,
{
    let spec = TableSpec::new(unique("durability"), 3);
    let other = TableSpec::new(unique("durability-other"), 1);
    let replayed = TableSpec::new(unique("durability-replayed"), 2);

    {
        let store = open_store();
        let t = T::with_spec(&*store, &spec).await;
        t.apply(
            0,
            batch(&[(b"a", Some(b"1")), (b"b", Some(b"2"))], Some(10)),
        )
        .await;
        t.apply(0, batch(&[(b"b", None), (b"c", Some(b"3"))], Some(11)))
            .await;
        t.apply(1, batch(&[(&[0, 0xff], Some(&[1, 2, 3]))], Some(20)))
            .await;
        t.apply(1, batch(&[(b"no-offset", Some(b"x"))], None)).await;
        let o = T::with_spec(&*store, &other).await;
        o.apply(0, batch(&[(b"o", Some(b"other"))], Some(5))).await;
        // Replayed batches (not durable yet), mixed with an ordinary apply,
        // then a sync: all of them are durable.
        let r = T::with_spec(&*store, &replayed).await;
        r.apply_replayed(0, batch(&[(b"x", Some(b"1")), (b"y", Some(b"2"))], Some(7)))
            .await;
        assert_eq!(
            r.get(0, b"x").await.as_deref(),
            Some(&b"1"[..]),
            "a replayed batch is visible at once"
        );
        r.apply_replayed(0, batch(&[(b"x", None)], Some(8))).await;
        r.apply(1, batch(&[(b"z", Some(b"3"))], Some(4))).await;
        r.apply_replayed(1, batch(&[(b"w", Some(b"4"))], Some(5)))
            .await;
        t.sync().await;
        o.sync().await;
        r.sync().await;
    }
    {
        let store = open_store();
        let t = T::with_spec(&*store, &spec).await;
        assert_eq!(
            t.all(0).await,
            entries(&[(b"a", b"1"), (b"c", b"3")]),
            "partition 0 after reopen"
        );
        assert_eq!(
            t.offset(0).await,
            Some(11),
            "offset of partition 0 after reopen"
        );
        assert_eq!(
            t.all(1).await,
            entries(&[(&[0, 0xff], &[1, 2, 3]), (b"no-offset", b"x")]),
            "partition 1 after reopen"
        );
        assert_eq!(
            t.offset(1).await,
            Some(20),
            "offset of partition 1 after reopen"
        );
        assert_eq!(
            (t.len(2).await, t.offset(2).await),
            (0, None),
            "untouched partition"
        );
        let o = T::with_spec(&*store, &other).await;
        assert_eq!(
            o.all(0).await,
            entries(&[(b"o", b"other")]),
            "another table"
        );
        assert_eq!(o.offset(0).await, Some(5));
        let r = T::with_spec(&*store, &replayed).await;
        assert_eq!(
            (r.all(0).await, r.offset(0).await),
            (entries(&[(b"y", b"2")]), Some(8)),
            "replayed batches after sync and reopen"
        );
        assert_eq!(
            (r.all(1).await, r.offset(1).await),
            (entries(&[(b"w", b"4"), (b"z", b"3")]), Some(5)),
            "replayed and ordinary batches after sync and reopen"
        );

        t.drop_partition(1).await;
        t.apply(0, batch(&[(b"a", None)], Some(12))).await;
        t.sync().await;
    }
    {
        let store = open_store();
        let t = T::with_spec(&*store, &spec).await;
        assert_eq!(
            t.all(0).await,
            entries(&[(b"c", b"3")]),
            "partition 0 after 2nd reopen"
        );
        assert_eq!(t.offset(0).await, Some(12));
        assert_eq!(
            (t.all(1).await, t.offset(1).await),
            (vec![], None),
            "dropped partition"
        );
        t.reset().await;
        t.sync().await;
    }
    {
        let store = open_store();
        let t = T::with_spec(&*store, &spec).await;
        for p in 0..3 {
            assert_eq!(
                (t.len(p).await, t.offset(p).await),
                (0, None),
                "reset, partition {p}"
            );
        }
        let o = T::with_spec(&*store, &other).await;
        assert_eq!(
            o.all(0).await,
            entries(&[(b"o", b"other")]),
            "reset of another table"
        );
    }
}
