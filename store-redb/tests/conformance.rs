//! The store conformance suite from faustus-testkit, on real redb files.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use faustus_core::store::Store;
use faustus_store_redb::{RedbConfig, RedbStore};

fn temp_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "faustus-redb-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn store_in(dir: &std::path::Path) -> Arc<dyn Store> {
    let url =
        faustus_core::DriverUrl::parse("store", &format!("redb://{}", dir.display())).unwrap();
    let ctx = faustus_core::store::StoreContext::new("t", dir);
    Arc::new(RedbStore::new(RedbConfig::from_url(&url, &ctx).unwrap()))
}

fn fresh() -> Arc<dyn Store> {
    store_in(&temp_dir())
}

fn location() -> impl Fn() -> Arc<dyn Store> {
    let dir = temp_dir();
    move || store_in(&dir)
}

faustus_testkit::store_conformance!(fresh, durable = location);
