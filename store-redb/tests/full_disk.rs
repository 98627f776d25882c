//! A real redb file on a tiny filesystem that fills up: the commit that
//! finds no room fails with `No space left on device`, naming the table and
//! the file; once space is freed (a filler file deleted) the driver has
//! reopened the file and the retry of the failed batch succeeds; after a
//! reopen by a new store everything acknowledged is there, the failed batch
//! was never half-applied, and its retry is there exactly once.
//!
//! The filesystem is a 2 MiB tmpfs mounted for the test: directly when the
//! test may mount (root), else in a user and mount namespace of its own
//! (`unshare --user --map-root-user --mount`, the test binary run again as a
//! child filtered to [`full_disk_child`]). If neither is permitted the test
//! prints why and skips. The mount is undone in every case (a guard, and
//! a namespace's mounts go with its last process).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use faustus_core::store::{Store, StoreContext, TableSpec, TableStore, WriteBatch};
use faustus_core::DriverUrl;
use faustus_store_redb::{Recovery, RedbConfig, RedbError, RedbStore};

/// Set in the child: the directory to mount the tmpfs on.
const CHILD_ENV: &str = "FAUSTUS_REDB_FULL_DISK_DIR";
/// Printed by the child once mounted: failures after it are test failures.
const MOUNTED: &str = "full-disk: tmpfs mounted";
const SIZE: &str = "2m";
const KEYS: u64 = 16;
/// Room left after filling: a few batches fit.
const SLACK: u64 = 256 * 1024;

/// A tmpfs mounted on a directory, unmounted on drop.
struct TmpFs {
    dir: PathBuf,
}

impl TmpFs {
    fn mount(dir: &Path) -> Result<TmpFs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={SIZE},mode=0700")])
            .arg("faustus-redb-full-disk")
            .arg(dir)
            .output();
        let failed = match out {
            Err(e) => format!("running mount: {e}"),
            Ok(out) if !out.status.success() => format!(
                "mount -t tmpfs: {} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ),
            Ok(_) => {
                return Ok(TmpFs {
                    dir: dir.to_path_buf(),
                })
            }
        };
        let _ = std::fs::remove_dir(dir);
        Err(failed)
    }
}

impl Drop for TmpFs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a panic while a file was open): detach it.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn store(dir: &Path, options: &str) -> RedbStore {
    let url = DriverUrl::parse("store", &format!("redb://{}{options}", dir.display())).unwrap();
    RedbStore::new(RedbConfig::from_url(&url, &StoreContext::new("full", dir)).unwrap())
}

fn key(n: u64, i: u64) -> String {
    format!("b{n:05}-{i:02}")
}

/// Batch `n`: `KEYS` new keys of 1 KiB, the key `last` overwritten and
/// the first key of batch `n - 2` deleted, at offset `n`.
fn batch(n: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    for i in 0..KEYS {
        b.put(key(n, i), vec![(n % 251) as u8; 1024]);
    }
    b.put("last", n.to_string());
    if n >= 2 {
        b.delete(key(n - 2, 0));
    }
    b.offset = Some(n as i64);
    b
}

/// The keys partition `p` holds once `batches` (ascending) were applied.
fn expected(batches: &[u64]) -> Vec<String> {
    let mut keys = Vec::new();
    for (j, n) in batches.iter().enumerate() {
        for i in 0..KEYS {
            let deleted = i == 0 && batches[j + 1..].iter().any(|m| *m == n + 2);
            if !deleted {
                keys.push(key(*n, i));
            }
        }
    }
    if !batches.is_empty() {
        keys.push("last".into());
    }
    keys.sort();
    keys
}

async fn keys(t: &Arc<dyn TableStore>, p: u32) -> Vec<String> {
    t.scan(p, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
        .collect()
}

/// Write a filler file until the filesystem is full, then give `slack`
/// bytes back (a few batches fit before the disk is full); returns its
/// size.
fn fill(path: &Path, slack: u64) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 16 * 1024];
    let mut size = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => size += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let size = size.saturating_sub(slack);
    f.set_len(size).unwrap();
    let _ = f.sync_all();
    size
}

fn redb_error(e: &faustus_core::Error) -> &RedbError {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<RedbError>())
        .unwrap_or_else(|| panic!("not a RedbError: {e:?}"))
}

/// Write until the commit that finds no room; returns the batches
/// acknowledged (ascending) and the error of the one that failed.
async fn write_until_full(
    t: &Arc<dyn TableStore>,
    from: u64,
    both: bool,
) -> (Vec<u64>, u64, faustus_core::Error) {
    let mut acked = Vec::new();
    for n in from..from + 5000 {
        let r = if both {
            t.apply_partitions(vec![(0, batch(n)), (1, batch(n))]).await
        } else {
            t.apply(0, batch(n)).await
        };
        match r {
            Ok(()) => acked.push(n),
            Err(e) => return (acked, n, e),
        }
    }
    panic!("5000 batches fit on a {SIZE} filesystem");
}

/// The scenario with `durability=immediate` (the default) on `root`, a
/// small filesystem of its own.
fn heals(root: &Path) {
    let dir = root.join("tables");
    let filler = root.join("filler");
    runtime().block_on(async {
        let s = store(&dir, "");
        let path = s.table_path("word_counts");
        let t = s.open(&TableSpec::new("word_counts", 2)).await.unwrap();
        let mut acked: Vec<u64> = Vec::new();
        for n in 0..3 {
            t.apply_partitions(vec![(0, batch(n)), (1, batch(n))])
                .await
                .unwrap();
            acked.push(n);
        }
        let filled = fill(&filler, SLACK);
        println!("full-disk: filler of {filled} bytes");

        // Both partitions in one transaction, until one finds no room.
        let (more, failed, e) = write_until_full(&t, 3, true).await;
        acked.extend(more);
        let msg = e.to_string();
        println!("full-disk: batch {failed} failed: {msg}");
        assert!(msg.contains("\"word_counts\""), "names the table: {msg}");
        assert!(
            msg.contains(&path.display().to_string()),
            "names the file: {msg}"
        );
        assert!(msg.contains("No space left on device"), "{msg}");
        assert!(e.is_retryable(), "{msg}");
        assert_eq!(redb_error(&e).recovery(), Recovery::Reopen, "{msg}");
        assert_eq!(
            redb_error(&e).io_error().map(|e| e.kind()),
            Some(std::io::ErrorKind::StorageFull),
            "{msg}"
        );

        // Space freed. Before any write: the file (reopened) holds every
        // acknowledged batch and nothing of the failed one.
        std::fs::remove_file(&filler).unwrap();
        let last = *acked.last().unwrap();
        for p in 0..2 {
            assert_eq!(
                t.persisted_offset(p).await.unwrap(),
                Some(last as i64),
                "partition {p}: the offset of the last acknowledged batch"
            );
            assert_eq!(
                keys(&t, p).await,
                expected(&acked),
                "partition {p}: every acknowledged batch, nothing of batch {failed}"
            );
        }

        // The retry of the failed batch, then more.
        t.apply_partitions(vec![(0, batch(failed)), (1, batch(failed))])
            .await
            .unwrap();
        acked.push(failed);
        for n in failed + 1..failed + 4 {
            t.apply_partitions(vec![(0, batch(n)), (1, batch(n))])
                .await
                .unwrap();
            acked.push(n);
        }
        drop(t);
        drop(s);

        // A new store on the same file: all of it.
        let s = store(&dir, "");
        let t = s.open(&TableSpec::new("word_counts", 2)).await.unwrap();
        let last = *acked.last().unwrap();
        for p in 0..2 {
            assert_eq!(t.persisted_offset(p).await.unwrap(), Some(last as i64));
            let want = expected(&acked);
            assert_eq!(keys(&t, p).await, want, "partition {p} after reopen");
            assert_eq!(t.len(p).await.unwrap(), want.len() as u64);
            assert_eq!(
                t.get(p, b"last").await.unwrap().as_deref(),
                Some(last.to_string().as_bytes())
            );
        }
        println!(
            "full-disk: healed: {} batches, batch {failed} retried once",
            acked.len()
        );
        drop(t);
        drop(s);
    });
    // Room for the next scenario.
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With `durability=eventual` the failing commit takes the commits made
/// without fsync since the last durable one with it: the table refuses
/// calls, saying to restart; a new store finds an earlier point, consistent
/// with its offset.
fn eventual_falls_back(root: &Path) {
    let dir = root.join("eventual");
    let filler = root.join("filler-eventual");
    runtime().block_on(async {
        let s = store(&dir, "?durability=eventual");
        let t = s.open(&TableSpec::new("eventual_counts", 1)).await.unwrap();
        t.apply(0, batch(0)).await.unwrap();
        t.sync().await.unwrap();
        fill(&filler, SLACK);
        let (acked, failed, e) = write_until_full(&t, 1, false).await;
        println!("full-disk (eventual): batch {failed} failed: {e}");
        std::fs::remove_file(&filler).unwrap();
        let recovery = redb_error(&e).recovery();
        if recovery == Recovery::Restart {
            assert!(!e.is_retryable(), "{e}");
            let e = t.apply(0, batch(failed)).await.unwrap_err();
            assert_eq!(redb_error(&e).recovery(), Recovery::Restart, "{e}");
            assert!(e.to_string().contains("restart the worker"), "{e}");
        } else {
            // The last commit before the failure happened to be durable.
            assert_eq!(recovery, Recovery::Reopen, "{e}");
            t.apply(0, batch(failed)).await.unwrap();
        }
        drop(t);
        drop(s);
        let s = store(&dir, "");
        let t = s.open(&TableSpec::new("eventual_counts", 1)).await.unwrap();
        let stored = t.persisted_offset(0).await.unwrap().unwrap() as u64;
        let last_acked = acked.last().copied().unwrap_or(0);
        assert!(
            stored <= last_acked.max(failed),
            "stored {stored}, acknowledged up to {last_acked}"
        );
        let upto: Vec<u64> = (0..=stored).collect();
        assert_eq!(
            keys(&t, 0).await,
            expected(&upto),
            "every batch up to the stored offset {stored}, nothing later"
        );
        println!(
            "full-disk (eventual): {:?}; the file fell back to offset {stored} (acknowledged up to {last_acked})",
            recovery
        );
    });
}

fn scenario(root: &Path) {
    heals(root);
    eventual_falls_back(root);
}

fn temp_root(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("faustus-redb-full-{tag}-{}", std::process::id()))
}

#[test]
fn a_redb_file_on_a_full_filesystem_heals_once_space_is_freed() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let root = temp_root("direct");
    let direct = match TmpFs::mount(&root) {
        Ok(fs) => {
            println!("{MOUNTED} on {} (size {SIZE})", fs.dir.display());
            scenario(&fs.dir);
            return;
        }
        Err(why) => why,
    };
    // Not allowed to mount here: in a user and mount namespace of our own.
    let root = temp_root("userns");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount"])
        .arg(&exe)
        .args([
            "--exact",
            "full_disk_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &root)
        .output();
    let _ = std::fs::remove_dir(&root);
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            println!(
                "SKIPPED: cannot mount a small filesystem: {direct}; and cannot run unshare: {e}"
            );
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stdout.contains(MOUNTED) {
        println!(
            "SKIPPED: cannot mount a small filesystem: {direct}; nor in a user namespace: {} {}",
            out.status,
            stderr.trim()
        );
        return;
    }
    print!("{stdout}");
    assert!(
        out.status.success(),
        "the scenario failed in the namespace:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("full-disk: healed"), "{stdout}");
}

/// Not a test of its own: the scenario inside `unshare`, when `CHILD_ENV`
/// is set.
#[test]
fn full_disk_child() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let fs = match TmpFs::mount(Path::new(&root)) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("{why}");
            std::process::exit(3);
        }
    };
    println!("{MOUNTED} on {} in a user namespace", fs.dir.display());
    scenario(&fs.dir);
}
