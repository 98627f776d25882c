//! A table's file failing its writes (a full disk, injected under redb's
//! file backend) and healing once the disk has room again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use faustus_core::store::{Store, StoreContext, TableSpec, TableStore, WriteBatch};
use faustus_core::DriverUrl;

use crate::file::DiskFaults;
use crate::{Recovery, RedbConfig, RedbError, RedbStore};

struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "faustus-redb-heal-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        Dir(d)
    }

    fn config(&self, options: &str) -> RedbConfig {
        let url =
            DriverUrl::parse("store", &format!("redb://{}{options}", self.0.display())).unwrap();
        RedbConfig::from_url(&url, &StoreContext::new("heal", &self.0)).unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn batch(n: u64, keys: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    for i in 0..keys {
        b.put(format!("b{n}-{i}"), vec![n as u8; 100]);
    }
    b.put("last", n.to_string());
    b.offset = Some(n as i64);
    b
}

/// The `RedbError` inside a store error.
fn redb_error(e: &faustus_core::Error) -> &RedbError {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<RedbError>())
        .unwrap_or_else(|| panic!("not a RedbError: {e:?}"))
}

async fn keys(t: &Arc<dyn TableStore>, p: u32) -> Vec<String> {
    t.scan(p, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
        .collect()
}

fn expected(batches: &[u64], keys: u64) -> Vec<String> {
    let mut v: Vec<String> = batches
        .iter()
        .flat_map(|n| (0..keys).map(move |i| format!("b{n}-{i}")))
        .collect();
    if !batches.is_empty() {
        v.push("last".into());
    }
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_write_naming_the_file_and_the_retry_after_space_is_freed_applies_it()
{
    let dir = Dir::new();
    let faults = Arc::new(DiskFaults::default());
    let store = RedbStore::with_faults(dir.config(""), faults.clone());
    let path = store.table_path("word_counts");
    let t = store.open(&TableSpec::new("word_counts", 2)).await.unwrap();
    for n in 0..3 {
        t.apply(0, batch(n, 20)).await.unwrap();
    }

    faults.full.store(true, Ordering::Release);
    let e = t.apply(0, batch(3, 20)).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("\"word_counts\""), "names the table: {msg}");
    assert!(
        msg.contains(&path.display().to_string()),
        "names the file: {msg}"
    );
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(msg.contains("reopened"), "says what happens next: {msg}");
    assert!(e.is_retryable(), "{msg}");
    let r = redb_error(&e);
    assert_eq!(r.recovery(), Recovery::Reopen);
    assert_eq!(r.table(), "word_counts");
    assert_eq!(r.path(), path);
    assert_eq!(
        r.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::StorageFull)
    );
    // A batch over both partitions that fails and is never retried.
    println!("{e}");
    let e = t
        .apply_partitions(vec![(0, batch(100, 5)), (1, batch(101, 5))])
        .await
        .unwrap_err();
    println!("{e}");
    assert!(e.is_retryable(), "still full: {e}");
    assert!(
        e.to_string().contains(&path.display().to_string()),
        "still names the file: {e}"
    );

    // Room again: the caller's retry of the failed batch goes through.
    faults.full.store(false, Ordering::Release);
    t.apply(0, batch(3, 20)).await.unwrap();
    t.apply(0, batch(4, 20)).await.unwrap();
    assert_eq!(keys(&t, 0).await, expected(&[0, 1, 2, 3, 4], 20));
    assert_eq!(t.persisted_offset(0).await.unwrap(), Some(4));
    assert_eq!(keys(&t, 1).await, Vec::<String>::new());
    assert_eq!(t.persisted_offset(1).await.unwrap(), None);
    drop(t);
    drop(store);

    // All of it on disk; nothing of the batch that was never retried.
    let store = RedbStore::new(dir.config(""));
    let t = store.open(&TableSpec::new("word_counts", 2)).await.unwrap();
    assert_eq!(keys(&t, 0).await, expected(&[0, 1, 2, 3, 4], 20));
    assert_eq!(t.persisted_offset(0).await.unwrap(), Some(4));
    assert_eq!(
        (keys(&t, 1).await, t.persisted_offset(1).await.unwrap()),
        (Vec::new(), None),
        "nothing of the failed two-partition batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_running_when_the_file_fails_do_not_keep_it_from_healing() {
    let dir = Dir::new();
    let faults = Arc::new(DiskFaults::default());
    let store = RedbStore::with_faults(dir.config(""), faults.clone());
    let t = store.open(&TableSpec::new("busy", 1)).await.unwrap();
    t.apply(0, batch(0, 200)).await.unwrap();
    faults.full.store(true, Ordering::Release);
    let mut readers = Vec::new();
    for _ in 0..8 {
        let t = t.clone();
        readers.push(tokio::spawn(async move {
            for _ in 0..20 {
                // Reads may fail while the file is being reopened; they
                // must not panic or hang.
                let _ = t.scan(0, None, usize::MAX).await;
            }
        }));
    }
    for n in 1..5 {
        assert!(t.apply(0, batch(n, 10)).await.is_err());
    }
    faults.full.store(false, Ordering::Release);
    for r in readers {
        r.await.unwrap();
    }
    t.apply(0, batch(5, 10)).await.unwrap();
    let mut want = expected(&[0], 200);
    want.extend((0..10).map(|i| format!("b5-{i}")));
    want.sort();
    assert_eq!(keys(&t, 0).await, want);
    assert_eq!(t.persisted_offset(0).await.unwrap(), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_fsync_failed_may_be_on_disk_and_its_retry_leaves_the_same_state() {
    let dir = Dir::new();
    let faults = Arc::new(DiskFaults::default());
    let store = RedbStore::with_faults(dir.config(""), faults.clone());
    let t = store.open(&TableSpec::new("fsync", 1)).await.unwrap();
    t.apply(0, batch(0, 10)).await.unwrap();
    let mut b = batch(1, 10);
    b.delete("b0-0");
    faults.fail_next_sync.store(true, Ordering::Release);
    let e = t.apply(0, b.clone()).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    t.apply(0, b).await.unwrap();
    let mut want = expected(&[0, 1], 10);
    want.retain(|k| k != "b0-0");
    assert_eq!(keys(&t, 0).await, want);
    assert_eq!(t.len(0).await.unwrap(), want.len() as u64);
    assert_eq!(t.persisted_offset(0).await.unwrap(), Some(1));
    assert_eq!(t.get(0, b"last").await.unwrap().as_deref(), Some(&b"1"[..]));
}

/// Writes made without fsync are lost when the file fails: the table says
/// so and refuses every call, and the file reopened by a new store holds
/// the last durable point, consistent with its offsets.
async fn unsynced_writes_then_failure(options: &str, replayed: bool) {
    let dir = Dir::new();
    let faults = Arc::new(DiskFaults::default());
    let store = RedbStore::with_faults(dir.config(options), faults.clone());
    let t = store.open(&TableSpec::new("unsynced", 1)).await.unwrap();
    t.apply(0, batch(0, 10)).await.unwrap();
    t.sync().await.unwrap();
    if replayed {
        t.apply_replayed(0, batch(1, 10)).await.unwrap();
    } else {
        // `durability=eventual`: less than a second after the sync, not
        // durable.
        t.apply(0, batch(1, 10)).await.unwrap();
    }
    assert_eq!(t.persisted_offset(0).await.unwrap(), Some(1));
    faults.full.store(true, Ordering::Release);
    let e = if replayed {
        t.sync().await.unwrap_err()
    } else {
        t.apply(0, batch(2, 10)).await.unwrap_err()
    };
    println!("{e}");
    assert!(!e.is_retryable(), "a retry cannot help: {e}");
    assert_eq!(redb_error(&e).recovery(), Recovery::Restart, "{e}");
    assert!(e.to_string().contains("restart the worker"), "{e}");
    faults.full.store(false, Ordering::Release);
    for e in [
        t.apply(0, batch(2, 10)).await.unwrap_err(),
        t.get(0, b"last").await.map(drop).unwrap_err(),
        t.persisted_offset(0).await.map(drop).unwrap_err(),
    ] {
        assert_eq!(redb_error(&e).recovery(), Recovery::Restart, "{e}");
        assert!(e.to_string().contains("\"unsynced\""), "{e}");
    }
    drop(t);
    drop(store);
    let store = RedbStore::new(dir.config(""));
    let t = store.open(&TableSpec::new("unsynced", 1)).await.unwrap();
    assert_eq!(t.persisted_offset(0).await.unwrap(), Some(0));
    assert_eq!(keys(&t, 0).await, expected(&[0], 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventual_table_that_fails_refuses_calls_and_falls_back_consistently() {
    unsynced_writes_then_failure("?durability=eventual", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovering_table_that_fails_before_its_sync_refuses_calls_and_falls_back_consistently() {
    unsynced_writes_then_failure("", true).await;
}

#[tokio::test]
async fn a_panic_inside_a_blocking_task_is_an_error() {
    let e = crate::file::blocking(|| -> crate::file::Attempt<()> { panic!("boom") })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, crate::file::Failure::Panic(m) if m == "boom"),
        "{e:?}"
    );
}
