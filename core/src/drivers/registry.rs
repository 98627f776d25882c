//! Scheme → driver factory registry.
//!
//! Each driver crate exports `pub const SCHEME` and `pub fn register(&Registry)`;
//! the `faustus` facade registers the ones its cargo features enable, once.
//! A user registers a custom scheme with one call before starting the app:
//!
//! ```
//! use std::sync::Arc;
//! use faustus_core::{Registry, Error};
//!
//! let registry = Registry::new();
//! registry.register_transport("mybus", Arc::new(|url| {
//!     Err(Error::config("broker", format!("mybus is not reachable at {url}")))
//! }));
//! assert!(registry.transport_schemes().contains(&"mybus".to_string()));
//! let err = registry.transport(&faustus_core::DriverUrl::parse("broker", "nope://").unwrap()).unwrap_err();
//! assert!(err.to_string().contains("mybus"));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use crate::drivers::codec::{Base64Codec, Codec, CodecChain, Format};
use crate::drivers::store::{Store, StoreContext, StoreFactory};
use crate::drivers::transport::{Transport, TransportFactory};
use crate::drivers::url::DriverUrl;
use crate::drivers::web::{WebDriver, WebFactory};
use crate::error::{DriverKind, Error, Result};

/// Built-in schemes and the cargo feature of `faustus` that provides each.
const FEATURES: &[(DriverKind, &str, &str)] = &[
    (DriverKind::Transport, "memory", "memory"),
    (DriverKind::Transport, "kafka", "kafka"),
    (DriverKind::Store, "memory", "memory"),
    (DriverKind::Store, "redb", "redb"),
    (DriverKind::Web, "hyper", "web"),
];

#[derive(Default)]
struct Inner {
    transports: BTreeMap<String, TransportFactory>,
    stores: BTreeMap<String, StoreFactory>,
    webs: BTreeMap<String, WebFactory>,
    codecs: BTreeMap<String, Arc<dyn Codec>>,
}

/// Maps URL schemes to driver factories and names to codecs. Cheap to clone (shared).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RwLock<Inner>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read();
        f.debug_struct("Registry")
            .field("transports", &inner.transports.keys().collect::<Vec<_>>())
            .field("stores", &inner.stores.keys().collect::<Vec<_>>())
            .field("webs", &inner.webs.keys().collect::<Vec<_>>())
            .field("codecs", &inner.codecs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry with the built-in codecs and no drivers.
    pub fn new() -> Self {
        let mut inner = Inner::default();
        inner
            .codecs
            .insert("binary".into(), Arc::new(Base64Codec) as Arc<dyn Codec>);
        Registry {
            inner: Arc::new(RwLock::new(inner)),
        }
    }

    /// The process-wide registry apps use unless given another.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    /// Register (or replace) a transport scheme.
    pub fn register_transport(&self, scheme: &str, factory: TransportFactory) {
        self.inner
            .write()
            .transports
            .insert(scheme.to_ascii_lowercase(), factory);
    }

    /// Register (or replace) a store scheme.
    pub fn register_store(&self, scheme: &str, factory: StoreFactory) {
        self.inner
            .write()
            .stores
            .insert(scheme.to_ascii_lowercase(), factory);
    }

    /// Register (or replace) a web driver scheme.
    pub fn register_web(&self, scheme: &str, factory: WebFactory) {
        self.inner
            .write()
            .webs
            .insert(scheme.to_ascii_lowercase(), factory);
    }

    /// Register (or replace) a byte-transform codec usable in codec chains.
    pub fn register_codec(&self, name: &str, codec: Arc<dyn Codec>) {
        self.inner.write().codecs.insert(name.to_string(), codec);
    }

    /// Registered transport schemes.
    pub fn transport_schemes(&self) -> Vec<String> {
        self.inner.read().transports.keys().cloned().collect()
    }

    /// Registered store schemes.
    pub fn store_schemes(&self) -> Vec<String> {
        self.inner.read().stores.keys().cloned().collect()
    }

    /// Registered web schemes.
    pub fn web_schemes(&self) -> Vec<String> {
        self.inner.read().webs.keys().cloned().collect()
    }

    /// Build the transport for `url`.
    pub fn transport(&self, url: &DriverUrl) -> Result<Arc<dyn Transport>> {
        let factory = self.inner.read().transports.get(url.scheme()).cloned();
        match factory {
            Some(f) => f(url),
            None => Err(self.missing(DriverKind::Transport, url, self.transport_schemes())),
        }
    }

    /// Build the store for `url`.
    pub fn store(&self, url: &DriverUrl, ctx: &StoreContext) -> Result<Arc<dyn Store>> {
        let factory = self.inner.read().stores.get(url.scheme()).cloned();
        match factory {
            Some(f) => f(url, ctx),
            None => Err(self.missing(DriverKind::Store, url, self.store_schemes())),
        }
    }

    /// Build the web driver for `url`.
    pub fn web(&self, url: &DriverUrl) -> Result<Arc<dyn WebDriver>> {
        let factory = self.inner.read().webs.get(url.scheme()).cloned();
        match factory {
            Some(f) => f(url),
            None => Err(self.missing(DriverKind::Web, url, self.web_schemes())),
        }
    }

    /// Whether a transport scheme is registered.
    pub fn has_transport(&self, scheme: &str) -> bool {
        self.inner.read().transports.contains_key(scheme)
    }

    /// Whether a store scheme is registered.
    pub fn has_store(&self, scheme: &str) -> bool {
        self.inner.read().stores.contains_key(scheme)
    }

    fn missing(&self, kind: DriverKind, url: &DriverUrl, known: Vec<String>) -> Error {
        if let Some((_, _, feature)) = FEATURES
            .iter()
            .find(|(k, s, _)| *k == kind && *s == url.scheme())
        {
            return Error::FeatureDisabled {
                kind,
                scheme: url.scheme().to_string(),
                feature: (*feature).to_string(),
            };
        }
        Error::UnknownScheme {
            kind,
            scheme: url.scheme().to_string(),
            url: url.as_str().to_string(),
            known,
        }
    }

    /// Resolve a codec chain such as `"json"`, `"raw"`, `"json|binary"`.
    pub fn codec(&self, name: &str) -> Result<CodecChain> {
        let inner = self.inner.read();
        let mut parts = name.split('|').map(str::trim).peekable();
        let format = match parts.peek().copied() {
            Some("json") => {
                parts.next();
                Format::Json
            }
            Some("raw") => {
                parts.next();
                Format::Raw
            }
            _ => Format::Raw,
        };
        let mut transforms = Vec::new();
        for part in parts {
            match inner.codecs.get(part) {
                Some(c) => transforms.push(c.clone()),
                None => {
                    let mut known: Vec<String> = vec!["json".into(), "raw".into()];
                    known.extend(inner.codecs.keys().cloned());
                    return Err(Error::UnknownScheme {
                        kind: DriverKind::Codec,
                        scheme: part.to_string(),
                        url: name.to_string(),
                        known,
                    });
                }
            }
        }
        Ok(CodecChain::new(name, format, transforms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_disabled_schemes() {
        let r = Registry::new();
        let e = r
            .transport(&DriverUrl::parse("broker", "kafka://localhost:9092").unwrap())
            .unwrap_err();
        assert!(
            matches!(e, Error::FeatureDisabled { ref feature, .. } if feature == "kafka"),
            "{e}"
        );
        let e = r
            .transport(&DriverUrl::parse("broker", "zmq://x").unwrap())
            .unwrap_err();
        assert!(matches!(e, Error::UnknownScheme { .. }), "{e}");
    }

    #[test]
    fn codec_chains() {
        let r = Registry::new();
        assert_eq!(r.codec("json").unwrap().format(), Format::Json);
        assert_eq!(r.codec("binary").unwrap().format(), Format::Raw);
        let c = r.codec("json|binary").unwrap();
        assert_eq!(c.decode::<u32>(c.encode(&7u32).unwrap()).unwrap(), 7);
        let e = r.codec("json|gzip").unwrap_err();
        assert!(
            e.to_string().contains("gzip") && e.to_string().contains("binary"),
            "{e}"
        );
    }
}
