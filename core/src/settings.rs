//! App settings: every parameter of Faust's `application.rst` that is not
//! Python-specific, with the same names and defaults.
//!
//! Precedence, highest first: a value set in code on the
//! [`AppBuilder`](crate::AppBuilder); then the environment variable
//! `FAUSTUS_<NAME>` (e.g. `FAUSTUS_BROKER`, `FAUSTUS_DATADIR`,
//! `FAUSTUS_WEB_PORT`); then the default. The worker's command-line flags
//! (`--datadir`, `--web-port` …) override all three. One exception, on
//! purpose: `FAUSTUS_BROKER` and `FAUSTUS_STORE` win over the code, so one
//! binary written for `memory://` can be pointed at Kafka without a rebuild.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::drivers::credentials::{parse_bool, Credentials};
use crate::error::{Error, Result};

/// All settings of an app.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// The app id as given (without version).
    pub id: String,
    /// App version: a new version is a new, isolated app (`id_format`).
    pub version: u32,
    /// How id and version combine when version > 1; `{id}` and `{version}` are replaced.
    pub id_format: String,
    /// Transport URL, e.g. `memory://`, `kafka://h1:9092;h2:9092`.
    pub broker: String,
    /// TLS and SASL for a secured broker (Faust's `broker_credentials` and
    /// `ssl_context`); default `None`. From code
    /// ([`AppBuilder::broker_credentials`](crate::AppBuilder::broker_credentials))
    /// or, when the code sets none, from `FAUSTUS_BROKER_SASL_*` /
    /// `FAUSTUS_BROKER_SSL_*` (see [`credentials`](crate::credentials)).
    /// Its `Debug` shows no secret.
    pub broker_credentials: Option<Credentials>,
    /// Table store URL, e.g. `memory://`, `redb://`.
    pub store: String,
    /// Web driver URL, e.g. `hyper://`.
    pub web: String,
    /// Directory for this instance's data; default `{appid}-data`.
    pub datadir: PathBuf,
    /// Table directory; relative paths are inside `datadir`. Default `tables`.
    pub tabledir: PathBuf,
    /// Default key codec.
    pub key_serializer: String,
    /// Default value codec.
    pub value_serializer: String,
    /// Default partition count of topics the app creates.
    pub topic_partitions: u32,
    /// Default replication factor of topics the app creates.
    pub topic_replication_factor: u16,
    /// Client id reported to the broker.
    pub broker_client_id: String,
    /// How often fully processed offsets are committed.
    pub broker_commit_interval: Duration,
    /// Warn when a partition's committed offset has not advanced for this long while processing.
    pub broker_commit_livelock_soft_timeout: Duration,
    /// How often a running worker checks that the broker answers; while it
    /// does not, `/ready` answers 503 naming the broker. Default 5 s.
    pub broker_check_interval: Duration,
    /// How often tables remove expired entries.
    pub table_cleanup_interval: Duration,
    /// Standby replicas kept per table partition.
    pub table_standby_replicas: u32,
    /// At most this many unprocessed events are buffered per stream.
    pub stream_buffer_maxsize: usize,
    /// How other workers reach this one's web server.
    pub canonical_url: String,
    /// Whether the web server runs.
    pub web_enabled: bool,
    /// Web server bind address.
    pub web_host: String,
    /// Web server port.
    pub web_port: u16,
    /// This instance's reply topic for agent RPC.
    pub reply_to: String,
    /// Create the reply topic at start.
    pub reply_create_topic: bool,
    /// How long replies are kept.
    pub reply_expires: Duration,
    /// Prefix of generated reply topic names.
    pub reply_to_prefix: String,
}

impl Settings {
    /// Defaults for app `id` (no environment applied).
    pub fn defaults(id: &str) -> Self {
        let reply_to_prefix = "f-reply-".to_string();
        Settings {
            id: id.to_string(),
            version: 1,
            id_format: "{id}-v{version}".into(),
            broker: "memory://".into(),
            broker_credentials: None,
            store: "memory://".into(),
            web: "hyper://".into(),
            datadir: PathBuf::from(format!("{id}-data")),
            tabledir: PathBuf::from("tables"),
            key_serializer: "json".into(),
            value_serializer: "json".into(),
            topic_partitions: 8,
            topic_replication_factor: 1,
            broker_client_id: format!("faustus-{}", env!("CARGO_PKG_VERSION")),
            broker_commit_interval: Duration::from_secs(3),
            broker_commit_livelock_soft_timeout: Duration::from_secs(300),
            broker_check_interval: Duration::from_secs(5),
            table_cleanup_interval: Duration::from_secs(30),
            table_standby_replicas: 1,
            stream_buffer_maxsize: 1000,
            canonical_url: String::new(),
            web_enabled: true,
            web_host: "127.0.0.1".into(),
            web_port: 6066,
            reply_to: format!("{reply_to_prefix}{}", uuid::Uuid::new_v4()),
            reply_create_topic: false,
            reply_expires: Duration::from_secs(24 * 3600),
            reply_to_prefix,
        }
    }

    /// The id used for groups and internal topics: `id`, or `id_format` applied when version > 1.
    pub fn app_id(&self) -> String {
        if self.version > 1 {
            self.id_format
                .replace("{id}", &self.id)
                .replace("{self.version}", &self.version.to_string())
                .replace("{version}", &self.version.to_string())
        } else {
            self.id.clone()
        }
    }

    /// `tabledir` resolved against `datadir`.
    pub fn table_path(&self) -> PathBuf {
        if self.tabledir.is_absolute() {
            self.tabledir.clone()
        } else {
            self.datadir.join(&self.tabledir)
        }
    }

    /// The URL other workers use to reach this one (canonical_url, else from host/port).
    pub fn canonical_url(&self) -> String {
        if self.canonical_url.is_empty() {
            format!("http://{}:{}", self.web_host, self.web_port)
        } else {
            self.canonical_url.clone()
        }
    }

    /// Check values that cannot work, naming the setting.
    pub fn validate(&self) -> Result<()> {
        if self.id.trim().is_empty() {
            return Err(Error::config("id", "the app id must not be empty"));
        }
        if self.version == 0 {
            return Err(Error::config("version", "versions start at 1"));
        }
        if self.topic_partitions == 0 {
            return Err(Error::config("topic_partitions", "must be at least 1"));
        }
        if self.topic_replication_factor == 0 {
            return Err(Error::config(
                "topic_replication_factor",
                "must be at least 1",
            ));
        }
        if self.stream_buffer_maxsize == 0 {
            return Err(Error::config("stream_buffer_maxsize", "must be at least 1"));
        }
        for (name, d) in [
            ("broker_commit_interval", self.broker_commit_interval),
            ("broker_check_interval", self.broker_check_interval),
            ("table_cleanup_interval", self.table_cleanup_interval),
        ] {
            if d.is_zero() {
                return Err(Error::config(name, "must be longer than zero"));
            }
        }
        if let Some(credentials) = &self.broker_credentials {
            credentials.validate()?;
        }
        crate::drivers::url::DriverUrl::parse("broker", &self.broker)?;
        crate::drivers::url::DriverUrl::parse("store", &self.store)?;
        crate::drivers::url::DriverUrl::parse("web", &self.web)?;
        Ok(())
    }

    /// Apply `FAUSTUS_*` variables from `env` to every setting not in `explicit`
    /// (settings named in `explicit` were set in code). `FAUSTUS_BROKER` and
    /// `FAUSTUS_STORE` apply even when set in code.
    pub fn apply_env(
        &mut self,
        env: &BTreeMap<String, String>,
        explicit: &std::collections::BTreeSet<&'static str>,
    ) -> Result<()> {
        for (name, setter) in SETTERS {
            let var = format!("FAUSTUS_{}", name.to_ascii_uppercase());
            let Some(value) = env.get(&var) else { continue };
            let env_wins = matches!(*name, "broker" | "store");
            if explicit.contains(name) && !env_wins {
                continue;
            }
            setter(self, value).map_err(|message| {
                Error::config(
                    *name,
                    format!("{message} (from environment variable {var}={value:?})"),
                )
            })?;
        }
        if !explicit.contains("broker_credentials") {
            if let Some(credentials) = Credentials::from_env(env)? {
                self.broker_credentials = Some(credentials);
            }
        }
        if !explicit.contains("datadir") && !env.contains_key("FAUSTUS_DATADIR") {
            self.datadir = PathBuf::from(format!("{}-data", self.app_id()));
        }
        Ok(())
    }

    /// Set a setting by name from text (as the environment does).
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        match SETTERS.iter().find(|(n, _)| *n == name) {
            Some((n, setter)) => setter(self, value).map_err(|m| Error::config(*n, m)),
            None => Err(Error::config(
                name,
                format!(
                    "unknown setting; known: {}",
                    SETTERS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// Names of all settings that can be set by name / environment.
    pub fn names() -> Vec<&'static str> {
        SETTERS.iter().map(|(n, _)| *n).collect()
    }
}

type Setter = fn(&mut Settings, &str) -> std::result::Result<(), String>;

const SETTERS: &[(&str, Setter)] = &[
    ("id", |s, v| nonempty(v).map(|v| s.id = v)),
    ("version", |s, v| parse_num(v).map(|n| s.version = n)),
    ("id_format", |s, v| nonempty(v).map(|v| s.id_format = v)),
    ("broker", |s, v| nonempty(v).map(|v| s.broker = v)),
    ("store", |s, v| nonempty(v).map(|v| s.store = v)),
    ("web", |s, v| nonempty(v).map(|v| s.web = v)),
    ("datadir", |s, v| nonempty(v).map(|v| s.datadir = v.into())),
    ("tabledir", |s, v| {
        nonempty(v).map(|v| s.tabledir = v.into())
    }),
    ("key_serializer", |s, v| {
        nonempty(v).map(|v| s.key_serializer = v)
    }),
    ("value_serializer", |s, v| {
        nonempty(v).map(|v| s.value_serializer = v)
    }),
    ("topic_partitions", |s, v| {
        parse_num(v).map(|n| s.topic_partitions = n)
    }),
    ("topic_replication_factor", |s, v| {
        parse_num(v).map(|n| s.topic_replication_factor = n)
    }),
    ("broker_client_id", |s, v| {
        nonempty(v).map(|v| s.broker_client_id = v)
    }),
    ("broker_commit_interval", |s, v| {
        parse_duration(v).map(|d| s.broker_commit_interval = d)
    }),
    ("broker_commit_livelock_soft_timeout", |s, v| {
        parse_duration(v).map(|d| s.broker_commit_livelock_soft_timeout = d)
    }),
    ("broker_check_interval", |s, v| {
        parse_duration(v).map(|d| s.broker_check_interval = d)
    }),
    ("table_cleanup_interval", |s, v| {
        parse_duration(v).map(|d| s.table_cleanup_interval = d)
    }),
    ("table_standby_replicas", |s, v| {
        parse_num(v).map(|n| s.table_standby_replicas = n)
    }),
    ("stream_buffer_maxsize", |s, v| {
        parse_num(v).map(|n| s.stream_buffer_maxsize = n)
    }),
    ("canonical_url", |s, v| {
        s.canonical_url = v.to_string();
        Ok(())
    }),
    ("web_enabled", |s, v| {
        parse_bool(v).map(|b| s.web_enabled = b)
    }),
    ("web_host", |s, v| nonempty(v).map(|v| s.web_host = v)),
    ("web_port", |s, v| parse_num(v).map(|n| s.web_port = n)),
    ("reply_to", |s, v| nonempty(v).map(|v| s.reply_to = v)),
    ("reply_create_topic", |s, v| {
        parse_bool(v).map(|b| s.reply_create_topic = b)
    }),
    ("reply_expires", |s, v| {
        parse_duration(v).map(|d| s.reply_expires = d)
    }),
    ("reply_to_prefix", |s, v| {
        nonempty(v).map(|v| s.reply_to_prefix = v)
    }),
];

fn nonempty(v: &str) -> std::result::Result<String, String> {
    let v = v.trim();
    if v.is_empty() {
        Err("expected a non-empty value".into())
    } else {
        Ok(v.to_string())
    }
}

fn parse_num<T: std::str::FromStr>(v: &str) -> std::result::Result<T, String> {
    v.trim().parse().map_err(|_| {
        format!(
            "expected a whole number (of type {}), got {v:?}",
            std::any::type_name::<T>()
        )
    })
}

/// The longest duration a setting or option takes: 100 years (36 500 days).
/// Longer values are refused rather than saturated: they are typos (or
/// "never", which no setting means), and timers and instants cannot hold
/// much more anyway.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Parse a duration: seconds as a number (`3`, `0.5`, as Faust takes floats)
/// or with a unit: `250ms`, `3s`, `5m`, `1h`, `1d`. At most
/// [`MAX_DURATION`] (100 years); negative, non-finite and longer values are
/// errors (the message quotes the value; callers add the setting's name).
pub fn parse_duration(v: &str) -> std::result::Result<Duration, String> {
    let t = v.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!("expected a duration like 3, 2.5, 250ms, 3s, 5m, 1h or 1d, got {v:?}")
    })?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {v:?}; use ms, s, m, h or d"
            ))
        }
    };
    if secs.is_nan() || secs < 0.0 {
        return Err(format!("duration must be zero or positive, got {v:?}"));
    }
    let too_long = || {
        format!(
            "duration {v:?} is too long: at most 100 years ({}s, or 36500d)",
            MAX_DURATION.as_secs()
        )
    };
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(too_long());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| too_long())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn broker_credentials_from_env_unless_set_in_code() {
        let vars = env(&[
            ("FAUSTUS_BROKER_SASL_MECHANISM", "SCRAM-SHA-256"),
            ("FAUSTUS_BROKER_SASL_USERNAME", "svc"),
            ("FAUSTUS_BROKER_SASL_PASSWORD", "pw-from-env"),
        ]);
        let mut s = Settings::defaults("a");
        assert_eq!(s.broker_credentials, None);
        s.apply_env(&vars, &BTreeSet::new()).unwrap();
        assert_eq!(
            s.broker_credentials,
            Some(Credentials::scram_sha256("svc", "pw-from-env"))
        );
        assert!(!format!("{s:?}").contains("pw-from-env"));
        let mut s = Settings::defaults("a");
        s.broker_credentials = Some(Credentials::plain("code", "pw"));
        s.apply_env(&vars, &BTreeSet::from(["broker_credentials"]))
            .unwrap();
        assert_eq!(s.broker_credentials, Some(Credentials::plain("code", "pw")));
        let mut s = Settings::defaults("a");
        let e = s
            .apply_env(
                &env(&[("FAUSTUS_BROKER_SASL_USERNAME", "svc")]),
                &BTreeSet::new(),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("FAUSTUS_BROKER_SASL_PASSWORD"), "{e}");
        s.broker_credentials = Some(Credentials::tls(
            crate::credentials::Tls::new().ca_file("/no/such/ca.pem"),
        ));
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("broker_credentials") && e.contains("/no/such/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn defaults_match_faust() {
        let s = Settings::defaults("word-counts");
        assert_eq!(s.topic_partitions, 8);
        assert_eq!(s.broker_commit_interval, Duration::from_secs(3));
        assert_eq!(
            s.broker_commit_livelock_soft_timeout,
            Duration::from_secs(300)
        );
        assert_eq!(s.stream_buffer_maxsize, 1000);
        assert_eq!(s.web_port, 6066);
        assert_eq!(s.datadir, PathBuf::from("word-counts-data"));
        assert_eq!(s.table_path(), PathBuf::from("word-counts-data/tables"));
        assert!(s.reply_to.starts_with("f-reply-"));
        s.validate().unwrap();
    }

    #[test]
    fn version_changes_app_id() {
        let mut s = Settings::defaults("app");
        assert_eq!(s.app_id(), "app");
        s.version = 2;
        assert_eq!(s.app_id(), "app-v2");
    }

    #[test]
    fn env_fills_defaults_but_not_explicit_values() {
        let mut s = Settings::defaults("app");
        s.web_port = 7000;
        let explicit = BTreeSet::from(["web_port"]);
        s.apply_env(
            &env(&[
                ("FAUSTUS_WEB_PORT", "9000"),
                ("FAUSTUS_TOPIC_PARTITIONS", "4"),
            ]),
            &explicit,
        )
        .unwrap();
        assert_eq!(s.web_port, 7000);
        assert_eq!(s.topic_partitions, 4);
    }

    #[test]
    fn env_broker_wins_over_code() {
        let mut s = Settings::defaults("app");
        s.broker = "memory://".into();
        s.apply_env(
            &env(&[("FAUSTUS_BROKER", "kafka://localhost:9092")]),
            &BTreeSet::from(["broker"]),
        )
        .unwrap();
        assert_eq!(s.broker, "kafka://localhost:9092");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let mut s = Settings::defaults("app");
        let e = s
            .apply_env(
                &env(&[("FAUSTUS_BROKER_COMMIT_INTERVAL", "soon")]),
                &BTreeSet::new(),
            )
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("broker_commit_interval")
                && msg.contains("FAUSTUS_BROKER_COMMIT_INTERVAL"),
            "{msg}"
        );
        let e = s.set("web_port", "99999").unwrap_err();
        assert!(e.to_string().contains("web_port"), "{e}");
        let e = s.set("no_such", "1").unwrap_err();
        assert!(e.to_string().contains("known"), "{e}");
        s.topic_partitions = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("topic_partitions"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn durations_that_do_not_fit_are_errors_not_panics() {
        // The longest accepted: exactly 100 years, in any unit.
        assert_eq!(parse_duration("36500d").unwrap(), MAX_DURATION);
        assert_eq!(
            parse_duration(&MAX_DURATION.as_secs().to_string()).unwrap(),
            MAX_DURATION
        );
        for v in [
            "36501d",
            "3153600001",
            "99999999999999999999999",
            "99999999999999999999999ms",
            "99999999999999999999999d",
            // Parses as f64 infinity.
            &"9".repeat(400),
        ] {
            let e = parse_duration(v).unwrap_err();
            assert!(
                e.contains("too long") && e.contains("100 years"),
                "{v}: {e}"
            );
        }
        for v in ["", ".", "1..2", "NaN", "inf", "-inf", "1e3", "3 s s"] {
            assert!(parse_duration(v).is_err(), "{v:?} accepted");
        }
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn a_too_long_duration_names_the_setting_and_the_variable() {
        let mut s = Settings::defaults("app");
        let e = s
            .apply_env(
                &env(&[("FAUSTUS_BROKER_COMMIT_INTERVAL", "99999999999999999999999")]),
                &BTreeSet::new(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("broker_commit_interval")
                && e.contains("FAUSTUS_BROKER_COMMIT_INTERVAL")
                && e.contains("too long"),
            "{e}"
        );
        let e = s.set("reply_expires", "1000000d").unwrap_err().to_string();
        assert!(e.contains("reply_expires") && e.contains("too long"), "{e}");
        assert_eq!(s.broker_commit_interval, Duration::from_secs(3));
    }
}
