//! Crash test: a child process writing batches with their changelog offsets
//! is killed with SIGKILL in the middle of its writes; the store reopened
//! afterwards is consistent with the offsets it stored — every batch up to
//! the stored offset is there in full, nothing of a later batch is — and no
//! batch whose `apply` had returned is lost.
//!
//! The same with table recovery's writes (`apply_replayed`, not durable
//! until a `sync` every few batches): the reopened store falls back to a
//! consistent point at or after the last sync. And with
//! `durability=eventual` (durable at least once a second): consistent, though
//! the last batches may be lost.
//!
//! The child is this test binary itself, run with `FAUSTUS_REDB_CRASH_DIR`
//! set and filtered to [`child_writer`].
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use faustus_core::store::{Store, StoreContext, TableSpec, TableStore, WriteBatch};
use faustus_store_redb::{RedbConfig, RedbStore};

const DIR_ENV: &str = "FAUSTUS_REDB_CRASH_DIR";
/// How the child writes: `apply`, `replayed` (`apply_replayed` and a `sync`
/// every few batches) or `eventual` (`apply` with `durability=eventual`).
const MODE_ENV: &str = "FAUSTUS_REDB_CRASH_MODE";
/// In replayed mode, batches between two syncs.
const SYNC_EVERY: u64 = 4;
const KEYS_PER_BATCH: u64 = 40;
const PARTITIONS: u32 = 2;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn open(dir: &Path, options: &str) -> Arc<dyn TableStore> {
    let url =
        faustus_core::DriverUrl::parse("store", &format!("redb://{}{options}", dir.display()))
            .unwrap();
    let store =
        RedbStore::new(RedbConfig::from_url(&url, &StoreContext::new("crash", dir)).unwrap());
    store
        .open(&TableSpec::new("counts", PARTITIONS))
        .await
        .unwrap()
}

fn key(batch: u64, i: u64) -> Vec<u8> {
    format!("k{batch:08}-{i:03}").into_bytes()
}

/// Batch `n` of a partition: `KEYS_PER_BATCH` new keys, the `last` key
/// overwritten, and the key of batch `n - 3` deleted — all at offset `n`.
fn batch(n: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    for i in 0..KEYS_PER_BATCH {
        b.put(key(n, i), n.to_be_bytes().to_vec());
    }
    b.put(b"last".to_vec(), n.to_be_bytes().to_vec());
    if n >= 3 {
        b.delete(key(n - 3, 0));
    }
    b.offset = Some(n as i64);
    b
}

/// Not a test of its own: the child process's work when `DIR_ENV` is set.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let mode = std::env::var(MODE_ENV).unwrap_or_default();
    let replayed = mode == "replayed";
    let options = if mode == "eventual" {
        "?durability=eventual"
    } else {
        ""
    };
    runtime().block_on(async {
        let table = open(Path::new(&dir), options).await;
        // Each partition resumes after its own stored offset: a kill between
        // the two applies of one batch leaves them one apart.
        let mut starts = Vec::new();
        for p in 0..PARTITIONS {
            let stored = table.persisted_offset(p).await.unwrap();
            starts.push(stored.map_or(0, |o| o as u64 + 1));
        }
        let first = starts.iter().copied().min().unwrap_or(0);
        for n in first.. {
            for p in 0..PARTITIONS {
                if n >= starts[p as usize] {
                    if replayed {
                        table.apply_replayed(p, batch(n)).await.unwrap();
                    } else {
                        table.apply(p, batch(n)).await.unwrap();
                    }
                }
            }
            // Printed only once both applies are durable (or, eventual, done).
            if !replayed {
                println!("applied {n}");
            } else if n % SYNC_EVERY == SYNC_EVERY - 1 {
                table.sync().await.unwrap();
                println!("applied {n}");
            }
        }
    });
}

/// What the reopened store must hold for partition `p`, given its offset.
async fn check_consistent(table: &Arc<dyn TableStore>, p: u32, acknowledged: Option<u64>) -> u64 {
    let stored = table.persisted_offset(p).await.unwrap();
    let Some(stored) = stored.map(|o| o as u64) else {
        assert!(
            acknowledged.is_none(),
            "partition {p}: acknowledged batches but no offset"
        );
        assert_eq!(table.len(p).await.unwrap(), 0);
        return 0;
    };
    if let Some(a) = acknowledged {
        assert!(
            stored >= a,
            "partition {p}: batch {a} was acknowledged, the store holds only up to {stored}"
        );
    }
    let last = table.get(p, b"last").await.unwrap().unwrap();
    assert_eq!(
        last.as_ref(),
        stored.to_be_bytes(),
        "partition {p}: `last` is of the stored offset's batch"
    );
    for n in 0..=stored {
        for i in 0..KEYS_PER_BATCH {
            let got = table.get(p, &key(n, i)).await.unwrap();
            let deleted = i == 0 && n + 3 <= stored;
            if deleted {
                assert_eq!(
                    got,
                    None,
                    "partition {p}: key {i} of batch {n} was deleted by batch {}",
                    n + 3
                );
            } else {
                assert_eq!(
                    got.as_deref(),
                    Some(n.to_be_bytes().as_slice()),
                    "partition {p}: batch {n} (≤ stored offset {stored}) is in full"
                );
            }
        }
    }
    // Nothing of a later batch: every key is of a batch ≤ the stored offset.
    let all = table.scan(p, None, usize::MAX).await.unwrap();
    let expected = (stored + 1) * KEYS_PER_BATCH + 1 - (stored + 1).saturating_sub(3);
    assert_eq!(
        all.len() as u64,
        expected,
        "partition {p}: no key beyond batch {stored}"
    );
    stored
}

#[test]
fn a_writer_killed_mid_writes_reopens_consistent_with_its_offsets() {
    kill_rounds("apply");
}

#[test]
fn a_replaying_writer_killed_mid_writes_falls_back_to_a_consistent_synced_point() {
    kill_rounds("replayed");
}

#[test]
fn an_eventually_durable_writer_killed_mid_writes_reopens_consistent() {
    kill_rounds("eventual");
}

/// Start, kill and check a child writer (writing in `mode`) several times on
/// one directory.
fn kill_rounds(mode: &str) {
    let dir =
        std::env::temp_dir().join(format!("faustus-redb-crash-{mode}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut previous = 0;
    // Several crashes, each at a different point; each child resumes after
    // the last stored offset, as a recovering worker would.
    for (round, kill_after) in [3u64, 17, 40, 9].into_iter().enumerate() {
        let mut command = Command::new(&exe);
        command
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(DIR_ENV, &dir)
            .env(MODE_ENV, mode);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acknowledged = None;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("applied ") {
                acknowledged = Some(n.trim().parse::<u64>().unwrap());
                seen += 1;
                if seen == kill_after {
                    // SIGKILL while the child keeps writing.
                    child.kill().unwrap();
                    break;
                }
            }
        }
        child.wait().unwrap();
        assert!(
            acknowledged.is_some(),
            "round {round}: the child wrote nothing"
        );
        // An eventual writer's acknowledged batches may be lost; what the
        // store holds must still be consistent.
        let durable = if mode == "eventual" {
            None
        } else {
            acknowledged
        };
        let stored = runtime().block_on(async {
            let table = open(&dir, "").await;
            let mut stored = Vec::new();
            for p in 0..PARTITIONS {
                stored.push(check_consistent(&table, p, durable).await);
            }
            stored
        });
        assert!(
            stored[0] >= previous,
            "round {round}: offsets only move forward"
        );
        previous = stored[0];
    }
    // Give the OS a moment to release the last child's file lock before cleanup.
    std::thread::sleep(Duration::from_millis(50));
    let _ = std::fs::remove_dir_all(&dir);
}
