//! A damaged table file (truncated, its header overwritten) is a clear error
//! when the table is opened — naming the table and the file, saying what to
//! do — never a panic, and it does not stop the store's other tables.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use faustus_core::store::{Store, StoreContext, TableSpec, WriteBatch};
use faustus_core::DriverUrl;
use faustus_store_redb::{RedbConfig, RedbStore};

fn store(dir: &Path) -> RedbStore {
    let url = DriverUrl::parse("store", &format!("redb://{}", dir.display())).unwrap();
    RedbStore::new(RedbConfig::from_url(&url, &StoreContext::new("damaged", dir)).unwrap())
}

/// A table file written by the driver: 50 batches over 2 partitions.
async fn write_table(dir: &Path) -> PathBuf {
    let s = store(dir);
    let t = s.open(&TableSpec::new("word_counts", 2)).await.unwrap();
    for n in 0..50u32 {
        let mut b = WriteBatch::new();
        for i in 0..20 {
            b.put(format!("k{n}-{i}"), vec![7u8; 300]);
        }
        b.offset = Some(i64::from(n));
        t.apply(n % 2, b).await.unwrap();
    }
    s.table_path("word_counts")
}

enum Damage {
    TruncateTo(u64),
    TruncateToHalf,
    ZeroFirst(usize),
}

fn damage(path: &Path, how: &Damage) {
    let len = std::fs::metadata(path).unwrap().len();
    match how {
        Damage::TruncateTo(n) => {
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.set_len(*n).unwrap();
        }
        Damage::TruncateToHalf => {
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.set_len(len / 2).unwrap();
        }
        Damage::ZeroFirst(n) => {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.write_all_at(&vec![0u8; *n], 0).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_table_file_is_an_error_naming_the_table_and_the_file() {
    let cases = [
        ("truncated to 100 bytes", Damage::TruncateTo(100)),
        ("truncated to 4 KiB", Damage::TruncateTo(4096)),
        ("truncated to half", Damage::TruncateToHalf),
        ("header zeroed", Damage::ZeroFirst(512)),
    ];
    for (i, (what, how)) in cases.iter().enumerate() {
        let dir =
            std::env::temp_dir().join(format!("faustus-redb-damaged-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = write_table(&dir).await;
        damage(&path, how);

        let s = store(&dir);
        let e = s
            .open(&TableSpec::new("word_counts", 2))
            .await
            .map(drop)
            .expect_err(what);
        let msg = e.to_string();
        println!("{what}: {msg}");
        assert!(
            msg.contains("\"word_counts\""),
            "{what}: names the table: {msg}"
        );
        assert!(
            msg.contains(&path.display().to_string()),
            "{what}: names the file: {msg}"
        );
        assert!(
            msg.contains("damaged or truncated") && msg.contains("move it away"),
            "{what}: says what is wrong and what to do: {msg}"
        );
        assert!(!msg.contains("blocking task"), "{what}: {msg}");
        assert!(
            !e.is_retryable(),
            "{what}: a retry does not mend a file: {msg}"
        );

        // The store still serves its other tables.
        let other: Arc<dyn faustus_core::store::TableStore> =
            s.open(&TableSpec::new("other", 1)).await.unwrap();
        let mut b = WriteBatch::new();
        b.put("k", "v");
        other.apply(0, b).await.unwrap();

        // Moving the file away, as the error says, gives an empty table
        // (which table recovery fills from the changelog).
        std::fs::rename(&path, path.with_extension("redb.damaged")).unwrap();
        let t = s.open(&TableSpec::new("word_counts", 2)).await.unwrap();
        assert_eq!(t.persisted_offset(0).await.unwrap(), None, "{what}");
        assert_eq!(t.len(0).await.unwrap(), 0, "{what}");
        drop((t, other, s));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
