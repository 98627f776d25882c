//! The contract of the [`Store`](faustus_core::store::Store) driver trait, as runnable checks.
//!
//! Every store driver runs this suite in its own tests, in one line:
//!
//! ```ignore
//! // tests/conformance.rs of a store crate
//! use std::sync::Arc;
//! use faustus_core::store::Store;
//!
//! fn fresh() -> Arc<dyn Store> {
//!     Arc::new(my_store::MyStore::new())
//! }
//!
//! faustus_testkit::store_conformance!(fresh);
//! ```
//!
//! The checks are also public `async fn`s taking an `Arc<dyn Store>`, so a
//! wrapper (a caching or metrics store) can run them by hand. Each check opens
//! its own uniquely named tables, so several checks may share one store.
//!
//! What the contract says, check by check:
//!
//! - [`get_put_delete`]: a put is visible to `get`, a later put overwrites,
//!   a delete removes; deleting a missing key is not an error; an empty
//!   value is a value, not an absence.
//! - [`batch_order`]: a batch applies its ops in order, later ops on the
//!   same key win; an empty batch changes nothing.
//! - [`apply_partitions_applies_each`]: one call with several partitions'
//!   batches applies each (ops and offset), and no other partition.
//! - [`offsets`]: a partition's offset is `None` until a batch carrying one
//!   is applied, is then exactly that batch's offset, and batches without an
//!   offset leave it alone.
//! - [`scan_order_and_pagination`]: `scan` yields entries in byte order of
//!   the keys, strictly after `after`, at most `limit` of them, and paging
//!   with the last key seen visits every entry once (binary keys included,
//!   the empty key too; `limit` may be `usize::MAX`).
//! - [`len_counts_keys`]: `len` is the number of live keys.
//! - [`partitions_are_isolated`] / [`tables_are_isolated`]: nothing leaks
//!   between partitions of a table or between tables of a store.
//! - [`drop_partition_clears_one`]: data and offset of that partition only.
//! - [`reset_clears_all`]: data and offsets of every partition of that table
//!   only; the table stays usable.
//! - [`reopen_returns_same_state`]: opening a table name again on the same
//!   store returns the same state.
//! - [`out_of_range_partition_is_error`]: a partition `>= spec.partitions`
//!   is an error naming the table, not a panic.
//! - [`durability`]: data and offsets applied and synced survive reopening
//!   the store on the same location.
//! - [`store_model_check`]: random operation sequences agree with a
//!   `BTreeMap` model after every step.
//! - [`failed_writes_leave_the_store_and_retries_apply_once`]: through a
//!   [`FaultyStore`](crate::faults::FaultyStore), a write that fails (every
//!   kind) leaves the table as before the call, its retry applies it once,
//!   and a batch applied again (its first attempt failed after applying)
//!   leaves the state of one application.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

mod checks;
mod faults;
mod model;

pub use checks::{
    apply_partitions_applies_each, batch_order, drop_partition_clears_one, durability,
    get_put_delete, len_counts_keys, offsets, out_of_range_partition_is_error,
    partitions_are_isolated, reopen_returns_same_state, reset_clears_all,
    scan_order_and_pagination, tables_are_isolated,
};
pub use faults::failed_writes_leave_the_store_and_retries_apply_once;
pub use model::store_model_check;

/// Expand the store conformance suite into one test per check.
///
/// `$make` is anything callable as `$make()` returning an `Arc<dyn Store>`
/// (a fn path or a closure); it is called once per test, inside the test's
/// runtime, and should return a fresh store (a new temporary directory for a
/// file-backed store).
///
/// With `durable = $location`, the durability check runs too: `$location()`
/// makes a new location and returns an opener, a `Fn() -> Arc<dyn Store>`
/// that opens a *new instance* of the store on that location each time it is
/// called (the opener may own the temporary directory, which then lives as
/// long as the test).
///
/// The tests are named after the checks (`get_put_delete`, `offsets`, …,
/// `store_model`, `store_durability`), so invoke the macro once per module.
/// Each async check runs on a current-thread tokio runtime built by
/// [`block_on`](crate::store_conformance::block_on) (what `#[tokio::test]`
/// does), so the calling crate needs no tokio dependency of its own.
///
/// ```ignore
/// use std::sync::Arc;
/// use faustus_core::store::Store;
/// use faustus_store_memory::MemoryStore;
///
/// fn fresh() -> Arc<dyn Store> {
///     Arc::new(MemoryStore::new())
/// }
///
/// fn location() -> impl Fn() -> Arc<dyn Store> {
///     let name = format!("durable-{}", std::process::id()); // unique per call in real code
///     move || Arc::new(MemoryStore::named(&name)) as Arc<dyn Store>
/// }
///
/// faustus_testkit::store_conformance!(fresh, durable = location);
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(
            @checks $make;
            get_put_delete,
            batch_order,
            apply_partitions_applies_each,
            offsets,
            scan_order_and_pagination,
            len_counts_keys,
            partitions_are_isolated,
            tables_are_isolated,
            drop_partition_clears_one,
            reset_clears_all,
            reopen_returns_same_state,
            out_of_range_partition_is_error,
            failed_writes_leave_the_store_and_retries_apply_once,
        );

        #[test]
        fn store_model() {
            $crate::store_conformance::store_model_check($make);
        }
    };
    ($make:expr, durable = $location:expr $(,)?) => {
        $crate::store_conformance!($make);

        #[test]
        fn store_durability() {
            let open = ($location)();
            $crate::store_conformance::block_on($crate::store_conformance::durability(open));
        }
    };
    (@checks $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::store_conformance::block_on(async {
                    $crate::store_conformance::$check(($make)()).await
                });
            }
        )*
    };
}

/// Run `future` to completion on a fresh current-thread tokio runtime (with
/// time and I/O enabled), as `#[tokio::test]` does.
///
/// # Panics
///
/// If the runtime cannot be built, or if `future` panics.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("store conformance: cannot build a tokio runtime")
        .block_on(future)
}

/// A table name no other check in this process uses.
fn unique(check: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "conformance-{check}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
