//! One table's redb file: its `Database` while healthy, closed and opened
//! again after an I/O error, and the errors that name the table and the file.
//!
//! redb poisons a `Database` after any I/O error (a full disk, an EIO): every
//! later call fails with "Previous I/O error occurred. Please close and
//! re-open the database", even once the disk has room again. So a failure of
//! that kind marks the file broken, and the next call closes it and opens it
//! again (on the blocking pool) before it runs. What redb had committed
//! durably is all there after the reopen; the failed transaction is not (or,
//! if its commit failed only at the final fsync, it is there in full — a
//! retry of the same batch writes the same keys and offset again, so either
//! way the retry leaves the same state).
//!
//! Commits made without an fsync (`apply_replayed` before its `sync`,
//! `durability=eventual`) live only in that `Database`: redb drops them when
//! it reopens a file it could not close cleanly. When the file breaks with
//! such commits outstanding, the file has fallen back to an earlier
//! consistent point than the one the caller saw acknowledged, and carrying
//! on would leave a gap that no replay fills; so the table refuses every call
//! from then on with an error saying so (not retryable): a worker restart
//! opens the table again and recovery replays the changelog from the offsets
//! the file holds.
//!
//! Any panic inside redb (a damaged file trips its assertions) is caught and
//! reported like an error, with the table and the file.

use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use faustus_core::{Error, Result};
use parking_lot::Mutex;
use redb::backends::FileBackend;
use redb::{Database, ReadableTable, StorageBackend, TableDefinition};

pub(crate) const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
pub(crate) const OFFSETS: TableDefinition<u32, i64> = TableDefinition::new("offsets");
pub(crate) const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

/// How long a reopen waits for calls still running on the old `Database`
/// (they fail fast once redb is poisoned) before it gives up for this time.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Why a redb call failed, before it becomes an [`Error`] naming the file.
#[derive(Debug)]
pub(crate) enum Failure {
    /// redb's error during `op` (e.g. "commit").
    Redb(&'static str, redb::Error),
    /// A panic inside the blocking task (a damaged file trips redb's
    /// assertions).
    Panic(String),
    /// The blocking task did not run to its end (the runtime is shutting
    /// down).
    Cancelled,
    /// An error that already says everything (e.g. a partition count that
    /// does not match the file's).
    Done(Error),
}

/// The result of work on the blocking pool.
pub(crate) type Attempt<T> = std::result::Result<T, Failure>;

/// Name the operation of a redb result: `db.begin_write().op("begin a write")?`.
pub(crate) trait Op<T> {
    fn op(self, op: &'static str) -> Attempt<T>;
}

impl<T, E: Into<redb::Error>> Op<T> for std::result::Result<T, E> {
    fn op(self, op: &'static str) -> Attempt<T> {
        self.map_err(|e| Failure::Redb(op, e.into()))
    }
}

impl Failure {
    /// Whether the `Database` it happened on can no longer be used: redb's
    /// I/O errors (it refuses everything after one) and panics.
    fn poisons(&self) -> bool {
        match self {
            Failure::Redb(_, e) => matches!(
                e,
                redb::Error::Io(_)
                    | redb::Error::PreviousIo
                    | redb::Error::LockPoisoned(_)
                    | redb::Error::DatabaseClosed
            ),
            Failure::Panic(_) => true,
            Failure::Cancelled | Failure::Done(_) => false,
        }
    }
}

/// Run `f` on the blocking pool, a panic in it caught and reported.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Attempt<T> + Send + 'static,
) -> Attempt<T> {
    match tokio::task::spawn_blocking(move || catch_unwind(AssertUnwindSafe(f))).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(Failure::Panic(panic_message(panic.as_ref()))),
        Err(e) if e.is_panic() => Err(Failure::Panic(panic_message(e.into_panic().as_ref()))),
        Err(_) => Err(Failure::Cancelled),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// What the driver does after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Nothing: the call failed, the file is fine (or the failure is not
    /// one a reopen or a retry fixes).
    None,
    /// The file is closed and opened again before the next call on the
    /// table; retrying the call may succeed (once the disk has room again).
    Reopen,
    /// The file lost commits made without an fsync when it failed: the
    /// table refuses every call until the worker opens it again (a restart)
    /// and recovery replays the changelog from the offsets the file holds.
    Restart,
}

#[derive(Debug)]
enum Cause {
    Redb(redb::Error),
    Panic(String),
    Message(String),
}

/// A redb failure, naming the table and its file: the source of the
/// [`Error::Backend`] the `redb://` store returns.
///
/// Displayed like `table "word_counts" (/data/word_counts.redb): commit
/// failed: No space left on device (os error 28) (the file will be reopened
/// at the next call; retry)`. The error is
/// [retryable](Error::is_retryable) when [`recovery`](Self::recovery) is
/// [`Recovery::Reopen`].
#[derive(Debug)]
pub struct RedbError {
    table: String,
    path: PathBuf,
    what: String,
    cause: Cause,
    /// What the cause means for the user, after it.
    hint: Option<String>,
    recovery: Recovery,
}

impl RedbError {
    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the driver does about it.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// The I/O error underneath, if any (e.g. `ErrorKind::StorageFull`).
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.cause {
            Cause::Redb(redb::Error::Io(e)) => Some(e),
            _ => None,
        }
    }

    fn into_error(self) -> Error {
        if self.recovery == Recovery::Reopen {
            Error::retryable("redb", self)
        } else {
            Error::backend("redb", self)
        }
    }
}

impl fmt::Display for RedbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table {:?} ({}): {}: ",
            self.table,
            self.path.display(),
            self.what
        )?;
        match &self.cause {
            Cause::Redb(redb::Error::Io(e)) => write!(f, "{e}")?,
            Cause::Redb(e) => write!(f, "{e}")?,
            Cause::Panic(m) => write!(f, "redb panicked: {m}")?,
            Cause::Message(m) => f.write_str(m)?,
        }
        if let Some(hint) = &self.hint {
            write!(f, " — {hint}")?;
        }
        match self.recovery {
            Recovery::None => Ok(()),
            Recovery::Reopen => f.write_str(" (the file will be reopened at the next call; retry)"),
            Recovery::Restart => f.write_str(
                " — commits made without fsync since the last durable one are lost, so the file \
                 holds an earlier point than the one acknowledged: the table refuses every call; \
                 restart the worker so that table recovery replays the changelog from the \
                 offsets the file holds",
            ),
        }
    }
}

impl std::error::Error for RedbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            Cause::Redb(redb::Error::Io(e)) => Some(e),
            Cause::Redb(e) => Some(e),
            _ => None,
        }
    }
}

enum State {
    /// In use. `unsynced`: a commit without fsync succeeded since the last
    /// durable one (lost if the file breaks now).
    Open { db: Arc<Database>, unsynced: bool },
    /// Failed with an I/O error: closed (once every call still running on
    /// it is done) and opened again before the next call.
    Broken { old: Weak<Database>, cause: String },
    /// Failed while commits without fsync were outstanding: refuses every
    /// call.
    FellBack { cause: String },
}

/// One table's file and its `Database`.
pub(crate) struct TableFile {
    pub(crate) table: String,
    pub(crate) path: PathBuf,
    cache: usize,
    partitions: u32,
    state: Mutex<State>,
    /// One reopen at a time.
    reopening: tokio::sync::Mutex<()>,
    /// When a durable commit last ended (`durability=eventual`).
    pub(crate) last_durable: Mutex<Instant>,
    faults: Option<Arc<DiskFaults>>,
}

impl TableFile {
    /// Open (or create) the file of `table` in `dir`, on the blocking pool.
    pub(crate) async fn open(
        dir: PathBuf,
        path: PathBuf,
        cache: usize,
        table: String,
        partitions: u32,
        faults: Option<Arc<DiskFaults>>,
    ) -> Result<Arc<TableFile>> {
        let (p, t, f) = (path.clone(), table.clone(), faults.clone());
        let opened = blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Failure::Done(Error::Io {
                    context: format!(
                        "redb table {t:?}: creating the table directory {}",
                        dir.display()
                    ),
                    source: e,
                })
            })?;
            open_db(&p, cache, &t, partitions, f)
        })
        .await;
        match opened {
            Ok(db) => Ok(Arc::new(TableFile {
                table,
                path,
                cache,
                partitions,
                state: Mutex::new(State::Open {
                    db: Arc::new(db),
                    unsynced: false,
                }),
                reopening: tokio::sync::Mutex::new(()),
                last_durable: Mutex::new(Instant::now()),
                faults,
            })),
            Err(failure) => Err(open_error(&table, &path, "cannot open the file", failure)),
        }
    }

    /// An error of this file.
    fn error(&self, what: impl Into<String>, cause: Cause, recovery: Recovery) -> Error {
        file_error(&self.table, &self.path, what, cause, recovery)
    }

    /// The `Database` to run a call on: the open one, or the file opened
    /// again after a failure.
    async fn db(self: &Arc<Self>) -> Result<Arc<Database>> {
        if let Some(db) = self.current()? {
            return Ok(db);
        }
        let _one = self.reopening.lock().await;
        let (old, cause) = match &*self.state.lock() {
            State::Open { db, .. } => return Ok(db.clone()),
            State::FellBack { cause } => return Err(self.fell_back(cause)),
            State::Broken { old, cause } => (old.clone(), cause.clone()),
        };
        let (path, cache, table, partitions, faults) = (
            self.path.clone(),
            self.cache,
            self.table.clone(),
            self.partitions,
            self.faults.clone(),
        );
        let reopened = blocking(move || {
            // Calls still running on the old `Database` fail fast (redb is
            // poisoned); the file's lock goes with its last handle.
            let deadline = Instant::now() + CLOSE_WAIT;
            while old.strong_count() > 0 {
                if Instant::now() >= deadline {
                    return Err(Failure::Done(Error::State(format!(
                        "redb table {table:?} ({}): calls on the file are still running {}s after it \
                         failed; it will be reopened once they end",
                        path.display(),
                        CLOSE_WAIT.as_secs()
                    ))));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            open_db(&path, cache, &table, partitions, faults)
        })
        .await;
        match reopened {
            Ok(db) => {
                let db = Arc::new(db);
                *self.state.lock() = State::Open {
                    db: db.clone(),
                    unsynced: false,
                };
                *self.last_durable.lock() = Instant::now();
                Ok(db)
            }
            Err(failure) => {
                let what = format!("reopening the file (after: {cause})");
                Err(match failure {
                    // Still no room (redb repairs the file when it opens it):
                    // stay broken, try again at the next call.
                    Failure::Redb(_, redb::Error::Io(e)) => {
                        self.error(what, Cause::Redb(redb::Error::Io(e)), Recovery::Reopen)
                    }
                    other => open_error(&self.table, &self.path, &what, other),
                })
            }
        }
    }

    /// The open `Database`, `None` when broken.
    fn current(&self) -> Result<Option<Arc<Database>>> {
        match &*self.state.lock() {
            State::Open { db, .. } => Ok(Some(db.clone())),
            State::Broken { .. } => Ok(None),
            State::FellBack { cause } => Err(self.fell_back(cause)),
        }
    }

    fn fell_back(&self, cause: &str) -> Error {
        self.error(
            "the file failed earlier",
            Cause::Message(cause.to_string()),
            Recovery::Restart,
        )
    }

    /// Run `f` on the `Database` on the blocking pool (`what`, e.g. "write",
    /// names the call in errors). A failure that poisons the `Database`
    /// marks the file for reopening (or, with commits without fsync
    /// outstanding, makes it refuse every call).
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        what: &'static str,
        f: impl FnOnce(&Database) -> Attempt<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db().await?;
        let used = Arc::downgrade(&db);
        // The `Database` handle moves into the task, so that if it is the
        // last one its close (a flush) happens on the blocking pool.
        match blocking(move || f(&db)).await {
            Ok(v) => Ok(v),
            Err(failure) => Err(self.failed(&used, what, failure)),
        }
    }

    /// After a commit on `db` succeeded: whether it was durable.
    pub(crate) fn committed(&self, db: &Database, durable: bool) {
        if let State::Open {
            db: current,
            unsynced,
        } = &mut *self.state.lock()
        {
            if std::ptr::eq(Arc::as_ptr(current), db) {
                *unsynced = !durable;
            }
        }
        if durable {
            *self.last_durable.lock() = Instant::now();
        }
    }

    fn failed(&self, used: &Weak<Database>, what: &str, failure: Failure) -> Error {
        let poisons = failure.poisons();
        let (what, cause) = match failure {
            Failure::Done(e) => return e,
            Failure::Cancelled => (
                format!("{what} failed"),
                Cause::Message("the runtime is shutting down".into()),
            ),
            Failure::Redb(op, e) => (format!("{what} failed ({op})"), Cause::Redb(e)),
            Failure::Panic(m) => (format!("{what} failed"), Cause::Panic(m)),
        };
        if poisons {
            self.poisoned(used, &what, cause)
        } else {
            self.error(what, cause, Recovery::None)
        }
    }

    /// The `Database` `used` can no longer be used: mark the file.
    fn poisoned(&self, used: &Weak<Database>, what: &str, cause: Cause) -> Error {
        let summary = match &cause {
            Cause::Redb(redb::Error::Io(e)) => format!("{what}: {e}"),
            Cause::Redb(e) => format!("{what}: {e}"),
            Cause::Panic(m) => format!("{what}: redb panicked: {m}"),
            Cause::Message(m) => format!("{what}: {m}"),
        };
        let mut state = self.state.lock();
        let recovery = match &*state {
            State::Open { db, unsynced } if std::ptr::eq(Arc::as_ptr(db), used.as_ptr()) => {
                if *unsynced {
                    *state = State::FellBack { cause: summary };
                    Recovery::Restart
                } else {
                    *state = State::Broken {
                        old: used.clone(),
                        cause: summary,
                    };
                    Recovery::Reopen
                }
            }
            // Already marked by another call, or already reopened.
            State::Open { .. } | State::Broken { .. } => Recovery::Reopen,
            State::FellBack { .. } => Recovery::Restart,
        };
        drop(state);
        self.error(what, cause, recovery)
    }
}

/// An error of the file `path` of `table`.
fn file_error(
    table: &str,
    path: &Path,
    what: impl Into<String>,
    cause: Cause,
    recovery: Recovery,
) -> Error {
    RedbError {
        table: table.to_string(),
        path: path.to_path_buf(),
        what: what.into(),
        cause,
        hint: None,
        recovery,
    }
    .into_error()
}

/// The error of a failed open or reopen: retryable when the disk may fix it
/// (an I/O error other than a file too short or not redb's), with a hint
/// when the file is damaged.
fn open_error(table: &str, path: &Path, what: &str, failure: Failure) -> Error {
    let damaged = |cause| {
        let size = match std::fs::metadata(path) {
            Ok(m) => format!(" (it has {} bytes)", m.len()),
            Err(_) => String::new(),
        };
        RedbError {
            table: table.to_string(),
            path: path.to_path_buf(),
            what: what.to_string(),
            cause,
            hint: Some(format!(
                "the file is damaged or truncated{size}; move it away to rebuild the table \
                 from its changelog"
            )),
            recovery: Recovery::None,
        }
        .into_error()
    };
    match failure {
        Failure::Done(e) => e,
        Failure::Cancelled => file_error(
            table,
            path,
            what,
            Cause::Message("the runtime is shutting down".into()),
            Recovery::None,
        ),
        Failure::Redb(_, redb::Error::Io(e))
            if !matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            file_error(
                table,
                path,
                what,
                Cause::Redb(redb::Error::Io(e)),
                Recovery::Reopen,
            )
        }
        Failure::Redb(_, redb::Error::DatabaseAlreadyOpen) => file_error(
            table,
            path,
            what,
            Cause::Message(
                "the file is already open (another store in this or another process holds it)"
                    .into(),
            ),
            Recovery::None,
        ),
        Failure::Redb(_, e @ (redb::Error::Io(_) | redb::Error::Corrupted(_))) => {
            damaged(Cause::Redb(e))
        }
        Failure::Redb(_, e) => file_error(table, path, what, Cause::Redb(e), Recovery::None),
        Failure::Panic(m) => damaged(Cause::Panic(m)),
    }
}

/// Open (or create) the file and its tables; check its partition count.
fn open_db(
    path: &Path,
    cache: usize,
    name: &str,
    partitions: u32,
    faults: Option<Arc<DiskFaults>>,
) -> Attempt<Database> {
    // What `Builder::create` does, with the file wrapped (see `Backend`).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .op("open")?;
    let file = FileBackend::new(file).op("lock")?;
    let db = Database::builder()
        .set_cache_size(cache)
        .create_with_backend(Backend { file, faults })
        .op("open")?;
    let txn = db.begin_write().op("begin a write")?;
    {
        txn.open_table(DATA).op("open the data table")?;
        txn.open_table(OFFSETS).op("open the offsets table")?;
        let mut meta = txn.open_table(META).op("open the meta table")?;
        let stored = meta
            .get("partitions")
            .op("read the partition count")?
            .map(|g| g.value());
        match stored {
            Some(p) if p != partitions => {
                return Err(Failure::Done(Error::State(format!(
                    "redb table {name:?} ({}) has {p} partitions, the app asks for {partitions}: reset the table's local state",
                    path.display()
                ))))
            }
            Some(_) => {}
            None => {
                meta.insert("partitions", partitions)
                    .op("write the partition count")?;
            }
        }
    }
    txn.commit().op("commit")?;
    Ok(db)
}

/// Disk faults the crate's unit tests inject (never set otherwise): while
/// `full`, every write to the file fails as on a full disk.
#[derive(Debug, Default)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct DiskFaults {
    pub(crate) full: AtomicBool,
    /// The next fsync fails (what was written before it may be on disk).
    pub(crate) fail_next_sync: AtomicBool,
}

/// redb's file backend, with the unit tests' [`DiskFaults`].
#[derive(Debug)]
struct Backend {
    file: FileBackend,
    faults: Option<Arc<DiskFaults>>,
}

impl Backend {
    fn check(&self) -> io::Result<()> {
        match &self.faults {
            Some(f) if f.full.load(Ordering::Acquire) => Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (injected by a test)",
            )),
            _ => Ok(()),
        }
    }
}

impl StorageBackend for Backend {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        if let Some(f) = &self.faults {
            if f.fail_next_sync.swap(false, Ordering::AcqRel) {
                return Err(io::Error::other("fsync failed (injected by a test)"));
            }
        }
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.file.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }
}
