//! The store conformance suite from faustus-testkit, run on `memory://`.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use faustus_core::store::Store;
use faustus_store_memory::MemoryStore;

fn fresh() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// A new named store per call, opened again by the returned closure: the
/// memory equivalent of a fresh directory reopened after a restart.
fn location() -> impl Fn() -> Arc<dyn Store> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "conformance-durable-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    move || Arc::new(MemoryStore::named(&name)) as Arc<dyn Store>
}

faustus_testkit::store_conformance!(fresh, durable = location);
