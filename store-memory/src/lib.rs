#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod config;
mod store;

use std::sync::Arc;

use faustus_core::store::{Store, StoreFactory};
use faustus_core::Registry;

pub use config::MemoryConfig;
pub use store::MemoryStore;

/// The URL scheme of this store: `memory://`.
pub const SCHEME: &str = "memory";

/// Register the `memory` store scheme in `registry`.
///
/// `memory://` builds a fresh store on every call; `memory://NAME` returns
/// the process-wide store named `NAME` (see [`MemoryStore::named`]).
pub fn register(registry: &Registry) {
    let factory: StoreFactory = Arc::new(|url, _ctx| {
        let config = MemoryConfig::from_url(url)?;
        Ok(Arc::new(MemoryStore::from_config(&config)) as Arc<dyn Store>)
    });
    registry.register_store(SCHEME, factory);
}

#[cfg(test)]
mod tests {
    use super::*;
    use faustus_core::store::{StoreContext, TableSpec, WriteBatch};
    use faustus_core::{DriverUrl, Error};

    fn build(registry: &Registry, url: &str) -> faustus_core::Result<Arc<dyn Store>> {
        registry.store(
            &DriverUrl::parse("store", url)?,
            &StoreContext::new("app", "/nonexistent"),
        )
    }

    #[tokio::test]
    async fn registry_builds_private_stores() {
        let registry = Registry::new();
        register(&registry);
        assert!(registry.has_store(SCHEME));
        let a = build(&registry, "memory://").unwrap();
        let b = build(&registry, "MEMORY://").unwrap();
        assert_eq!(a.name(), "memory");
        let spec = TableSpec::new("t", 1);
        let mut batch = WriteBatch::new();
        batch.put("k", "v");
        a.open(&spec).await.unwrap().apply(0, batch).await.unwrap();
        let tb = b.open(&spec).await.unwrap();
        assert_eq!(
            tb.get(0, b"k").await.unwrap(),
            None,
            "each memory:// is fresh"
        );
    }

    #[tokio::test]
    async fn registry_shares_named_stores() {
        let registry = Registry::new();
        register(&registry);
        let name = "faustus-store-memory-lib-test-shared";
        let spec = TableSpec::new("t", 2);
        let mut batch = WriteBatch::new();
        batch.put("k", "v");
        batch.offset = Some(9);
        let a = build(&registry, &format!("memory://{name}")).unwrap();
        a.open(&spec).await.unwrap().apply(1, batch).await.unwrap();
        drop(a);
        let b = build(&registry, &format!("memory://{name}/")).unwrap();
        let t = b.open(&spec).await.unwrap();
        assert_eq!(t.get(1, b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(t.persisted_offset(1).await.unwrap(), Some(9));
    }

    #[test]
    fn registry_rejects_options() {
        let registry = Registry::new();
        register(&registry);
        let e = build(&registry, "memory://?cache_mb=64").unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        assert!(e.to_string().contains("cache_mb"), "{e}");
    }
}
