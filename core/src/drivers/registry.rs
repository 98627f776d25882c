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
use crate::drivers::credentials::Credentials;
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

/// What a transport is built with besides its URL: the app's
/// `broker_credentials` (as a store gets a
/// [`StoreContext`](crate::store::StoreContext)).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TransportContext {
    /// TLS and SASL for a secured broker (`None`: plaintext, no login).
    pub credentials: Option<Credentials>,
}

impl TransportContext {
    /// A context without credentials.
    pub fn new() -> Self {
        TransportContext::default()
    }

    /// The same, with these credentials (or none).
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }
}

/// Builds a transport from its URL and [`TransportContext`]: the factory of
/// a transport that takes credentials (see
/// [`Registry::register_transport_with_context`]).
pub type ContextTransportFactory = Arc<
    dyn Fn(&DriverUrl, &TransportContext) -> Result<Arc<dyn Transport>> + Send + Sync + 'static,
>;

#[derive(Clone)]
enum TransportEntry {
    /// Builds from the URL alone: takes no credentials.
    Url(TransportFactory),
    WithContext(ContextTransportFactory),
}

#[derive(Default)]
struct Inner {
    transports: BTreeMap<String, TransportEntry>,
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

    /// Register (or replace) a transport scheme whose transports are built
    /// from the URL alone. Such a transport takes no credentials: building
    /// one with credentials fails (see [`transport_with`](Self::transport_with)).
    pub fn register_transport(&self, scheme: &str, factory: TransportFactory) {
        self.inner
            .write()
            .transports
            .insert(scheme.to_ascii_lowercase(), TransportEntry::Url(factory));
    }

    /// Register (or replace) a transport scheme whose factory also gets the
    /// [`TransportContext`] (the app's `broker_credentials`).
    pub fn register_transport_with_context(&self, scheme: &str, factory: ContextTransportFactory) {
        self.inner.write().transports.insert(
            scheme.to_ascii_lowercase(),
            TransportEntry::WithContext(factory),
        );
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

    /// Build the transport for `url` (without credentials).
    pub fn transport(&self, url: &DriverUrl) -> Result<Arc<dyn Transport>> {
        self.transport_with(url, &TransportContext::default())
    }

    /// Build the transport for `url` with `ctx`. Credentials given to a
    /// scheme registered without context (`memory://`, a custom one) are an
    /// error rather than silently unused: the connection would not be what
    /// the settings ask for.
    pub fn transport_with(
        &self,
        url: &DriverUrl,
        ctx: &TransportContext,
    ) -> Result<Arc<dyn Transport>> {
        let factory = self.inner.read().transports.get(url.scheme()).cloned();
        match factory {
            Some(TransportEntry::WithContext(f)) => f(url, ctx),
            Some(TransportEntry::Url(f)) => match &ctx.credentials {
                None => f(url),
                Some(_) => Err(Error::config(
                    "broker_credentials",
                    format!(
                        "the `{}` transport ({url}) takes no credentials; unset broker_credentials or use a transport that does (kafka://)",
                        url.scheme()
                    ),
                )),
            },
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
            url: url.redacted(),
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
    fn credentials_reach_context_factories_only() {
        let r = Registry::new();
        let seen = Arc::new(parking_lot::Mutex::new(None));
        {
            let seen = seen.clone();
            r.register_transport_with_context(
                "secure",
                Arc::new(move |_url, ctx: &TransportContext| {
                    *seen.lock() = Some(ctx.clone());
                    Err(Error::config("broker", "built"))
                }),
            );
        }
        r.register_transport(
            "plain",
            Arc::new(|_url| Err(Error::config("broker", "plain built"))),
        );
        let creds = Credentials::plain("u", "pw-not-shown");
        let ctx = TransportContext::new().with_credentials(Some(creds.clone()));
        let url = |u: &str| DriverUrl::parse("broker", u).unwrap();
        let e = r.transport_with(&url("secure://h"), &ctx).unwrap_err();
        assert!(e.to_string().contains("built"), "{e}");
        assert_eq!(seen.lock().clone().unwrap().credentials, Some(creds));
        // Without credentials a plain factory builds as before …
        let e = r.transport(&url("plain://h")).unwrap_err();
        assert!(e.to_string().contains("plain built"), "{e}");
        // … with them it refuses, naming the setting and the scheme.
        let e = r
            .transport_with(&url("plain://h"), &ctx)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("broker_credentials")
                && e.contains("`plain`")
                && !e.contains("pw-not-shown"),
            "{e}"
        );
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
