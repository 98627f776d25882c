//! [`AppBuilder`]: an app's settings from code, the environment
//! (`FAUSTUS_*`) and the configuration signals, validated by `build`.

use super::*;
use crate::drivers::credentials::Credentials;

type ConfigHook = Box<dyn FnOnce(&mut Settings) + Send>;
type PlainHook = Box<dyn FnOnce() + Send>;
type AfterHook = Box<dyn FnOnce(&Settings) + Send>;

/// Configures an [`App`]; see [`Settings`] for every option and its default.
#[must_use = "call .build() to get the app"]
pub struct AppBuilder {
    settings: Settings,
    explicit: BTreeSet<&'static str>,
    registry: Option<Registry>,
    env: Option<BTreeMap<String, String>>,
    errors: Vec<Error>,
    before: Vec<PlainHook>,
    configured: Vec<ConfigHook>,
    after: Vec<AfterHook>,
    decode_hook: Option<DecodeHook>,
    site: Option<SiteFn>,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => |$s:ident, $v:ident| $body:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: impl Into<$ty>) -> Self {
                let $v: $ty = value.into();
                let $s = &mut self.settings;
                $body;
                self.explicit.insert(stringify!($name));
                self
            }
        )*
    };
}

impl AppBuilder {
    pub(super) fn new(id: impl Into<String>) -> Self {
        AppBuilder {
            settings: Settings::defaults(&id.into()),
            explicit: BTreeSet::new(),
            registry: None,
            env: None,
            errors: Vec::new(),
            before: Vec::new(),
            configured: Vec::new(),
            after: Vec::new(),
            decode_hook: None,
            site: None,
        }
    }

    setters! {
        /// Transport URL (`memory://`, `memory://NAME`, `kafka://h1:9092;h2:9092`).
        broker: String => |s, v| s.broker = v;
        /// Table store URL (`memory://`, `redb://`).
        store: String => |s, v| s.store = v;
        /// Web driver URL (`hyper://`).
        web: String => |s, v| s.web = v;
        /// App version; > 1 gives a new, isolated app id (`id_format`).
        version: u32 => |s, v| s.version = v;
        /// Format combining id and version.
        id_format: String => |s, v| s.id_format = v;
        /// Data directory.
        datadir: PathBuf => |s, v| s.datadir = v;
        /// Table directory (relative: inside datadir).
        tabledir: PathBuf => |s, v| s.tabledir = v;
        /// Default key codec.
        key_serializer: String => |s, v| s.key_serializer = v;
        /// Default value codec.
        value_serializer: String => |s, v| s.value_serializer = v;
        /// Default partition count of created topics.
        topic_partitions: u32 => |s, v| s.topic_partitions = v;
        /// Default replication factor of created topics.
        topic_replication_factor: u16 => |s, v| s.topic_replication_factor = v;
        /// Client id.
        broker_client_id: String => |s, v| s.broker_client_id = v;
        /// Commit interval.
        broker_commit_interval: Duration => |s, v| s.broker_commit_interval = v;
        /// Warn when commits stall this long while processing.
        broker_commit_livelock_soft_timeout: Duration => |s, v| s.broker_commit_livelock_soft_timeout = v;
        /// How often a running worker checks that the broker answers (`/ready`).
        broker_check_interval: Duration => |s, v| s.broker_check_interval = v;
        /// Table cleanup interval.
        table_cleanup_interval: Duration => |s, v| s.table_cleanup_interval = v;
        /// Standby replicas per table partition.
        table_standby_replicas: u32 => |s, v| s.table_standby_replicas = v;
        /// Stream buffer size (backpressure).
        stream_buffer_maxsize: usize => |s, v| s.stream_buffer_maxsize = v;
        /// URL other workers reach this one at.
        canonical_url: String => |s, v| s.canonical_url = v;
        /// Web server on/off.
        web_enabled: bool => |s, v| s.web_enabled = v;
        /// Web bind host.
        web_host: String => |s, v| s.web_host = v;
        /// Web port.
        web_port: u16 => |s, v| s.web_port = v;
        /// Reply topic for agent RPC.
        reply_to: String => |s, v| s.reply_to = v;
        /// Create the reply topic at start.
        reply_create_topic: bool => |s, v| s.reply_create_topic = v;
        /// Reply retention.
        reply_expires: Duration => |s, v| s.reply_expires = v;
        /// Prefix of generated reply topics.
        reply_to_prefix: String => |s, v| s.reply_to_prefix = v;
    }

    /// TLS and SASL for a secured broker (Faust's `broker_credentials` /
    /// `ssl_context`): e.g.
    /// `Credentials::scram_sha512(user, password).with_tls(Tls::new().ca_file(ca))`.
    /// Set in code, they win over `FAUSTUS_BROKER_SASL_*` / `..._SSL_*`.
    pub fn broker_credentials(mut self, credentials: Credentials) -> Self {
        self.settings.broker_credentials = Some(credentials);
        self.explicit.insert("broker_credentials");
        self
    }

    /// Set a setting by name from text (bad values fail in `build`, naming it).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        match self.settings.set(name, value) {
            Ok(()) => {
                if let Some(n) = Settings::names().into_iter().find(|n| *n == name) {
                    self.explicit.insert(n);
                }
            }
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Resolve drivers and codecs from `registry` instead of [`Registry::global`].
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Read `FAUSTUS_*` settings from this map instead of the process environment.
    pub fn env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = Some(env);
        self
    }

    /// Signal: before the configuration is read.
    pub fn on_before_configured(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.before.push(Box::new(f));
        self
    }

    /// Signal: configuration read (environment applied); the hook may change it.
    pub fn on_configured(mut self, f: impl FnOnce(&mut Settings) + Send + 'static) -> Self {
        self.configured.push(Box::new(f));
        self
    }

    /// Signal: the app is configured and ready for use.
    pub fn on_after_configured(mut self, f: impl FnOnce(&Settings) + Send + 'static) -> Self {
        self.after.push(Box::new(f));
        self
    }

    /// Replace the default decode-error report (a warning log) for messages
    /// whose key or value cannot be decoded. They are counted and acked either way.
    pub fn on_decode_error(mut self, f: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.decode_hook = Some(Arc::new(f));
        self
    }

    /// What the worker's web server serves for this app: `site(app)` builds
    /// the handler once per worker run (and for each one-off
    /// [`App::handle_request`] without a running server). Without it, the
    /// app's own pages only. `faustus::app` sets it to `faustus_web::site`:
    /// the app's pages, then the built-in endpoints (`/`, `/stats`,
    /// `/router/`, `/table/{name}/{key}`, `/metrics`, `/health`, `/ready`)
    /// and the dashboard — whichever web driver serves them.
    pub fn site(
        mut self,
        site: impl Fn(&App) -> Arc<dyn WebHandler> + Send + Sync + 'static,
    ) -> Self {
        self.site = Some(Arc::new(site));
        self
    }

    /// Finish: apply the environment, run the configuration signals, validate.
    pub fn build(mut self) -> Result<App> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        for f in self.before.drain(..) {
            f();
        }
        let env = self.env.take().unwrap_or_else(|| {
            std::env::vars()
                .filter(|(k, _)| k.starts_with("FAUSTUS_"))
                .collect()
        });
        self.settings.apply_env(&env, &self.explicit)?;
        // `reply_to` defaults to `{reply_to_prefix}{uuid}`: follow a changed prefix.
        if !self.explicit.contains("reply_to") && !env.contains_key("FAUSTUS_REPLY_TO") {
            if let Some(id) = self.settings.reply_to.strip_prefix("f-reply-") {
                self.settings.reply_to = format!("{}{id}", self.settings.reply_to_prefix);
            }
        }
        for f in self.configured.drain(..) {
            f(&mut self.settings);
        }
        self.settings.validate()?;
        let registry = self.registry.unwrap_or_else(|| Registry::global().clone());
        registry.codec(&self.settings.key_serializer)?;
        registry.codec(&self.settings.value_serializer)?;
        for f in self.after.drain(..) {
            f(&self.settings);
        }
        let app_id = self.settings.app_id();
        Ok(App {
            inner: Arc::new(AppInner {
                app_id,
                settings: parking_lot::RwLock::new(Arc::new(self.settings)),
                started: std::sync::atomic::AtomicBool::new(false),
                registry,
                monitor: Arc::new(Monitor::default()),
                subs: Subscriptions::default(),
                space: Arc::new(Notify::new()),
                defs: Mutex::new(Defs::default()),
                decode_hook: self.decode_hook,
                site: self.site,
                transport: tokio::sync::OnceCell::new(),
                producer: tokio::sync::OnceCell::new(),
                store: tokio::sync::OnceCell::new(),
                assignment: tokio::sync::watch::Sender::new(Assignment::default()),
                slots: Mutex::new(HashMap::new()),
                event_values: Default::default(),
                deliveries: Default::default(),
            }),
        })
    }
}
