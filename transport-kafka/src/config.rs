//! The typed configuration of a `kafka://` transport URL.

use std::collections::BTreeMap;
use std::time::Duration;

use faustus_core::credentials::{Credentials, Sasl, SaslMechanism};
use faustus_core::url::is_secret_option;
use faustus_core::{DriverUrl, Error, Result, TransportContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

/// Options of the URL that Faustus reads itself; every other `?key=value`
/// goes to librdkafka unchanged.
const OWN_OPTIONS: &[&str] = &["connect_timeout_ms", "operation_timeout_ms"];

/// librdkafka's producer-only properties: `P` in the C/P column of its
/// CONFIGURATION.md (2.12), global and topic-level. Set on a consumer,
/// librdkafka ignores them with a CONFWARN, so consumers do not get them.
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

/// librdkafka's consumer-only properties (`C` in the same column); producers
/// and the admin client do not get them.
const CONSUMER_ONLY: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// Which kind of librdkafka client a configuration is for: each gets the
/// URL's properties that apply to it (librdkafka's C/P column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientRole {
    /// Producers: shared and producer-only properties.
    Producer,
    /// Group consumers, partition readers and their probes: shared and
    /// consumer-only properties.
    Consumer,
    /// The admin and metadata clients: shared properties only.
    Admin,
}

impl ClientRole {
    /// Whether a property applies to this kind of client.
    pub fn takes(self, property: &str) -> bool {
        let producer_only = PRODUCER_ONLY.contains(&property);
        let consumer_only = CONSUMER_ONLY.contains(&property);
        match self {
            ClientRole::Producer => !consumer_only,
            ClientRole::Consumer => !producer_only,
            ClientRole::Admin => !producer_only && !consumer_only,
        }
    }
}

/// librdkafka's log level matching what the `tracing` subscriber takes from
/// target `librdkafka` (lines below it are not even formatted).
fn log_level() -> RDKafkaLogLevel {
    if tracing::enabled!(target: "librdkafka", tracing::Level::DEBUG) {
        RDKafkaLogLevel::Debug
    } else if tracing::enabled!(target: "librdkafka", tracing::Level::INFO) {
        RDKafkaLogLevel::Info
    } else if tracing::enabled!(target: "librdkafka", tracing::Level::WARN) {
        RDKafkaLogLevel::Warning
    } else {
        RDKafkaLogLevel::Error
    }
}

/// Configuration of a [`KafkaTransport`](crate::KafkaTransport).
///
/// Parsed from `kafka://HOST:PORT[;HOST:PORT...][?key=value&...]`:
///
/// * hosts are separated by `;` (as in Faust) or `,`; a host without a port
///   gets `9092`; IPv6 addresses go in brackets (`[::1]:9092`); a bad host
///   or port is an error at parse time naming it;
/// * `connect_timeout_ms` (default 60000): how long the transport retries,
///   with backoff, to reach a broker before its first operation fails with a
///   retryable error;
/// * `operation_timeout_ms` (default 30000): the bound of each blocking
///   librdkafka call (metadata, commits, offset queries, admin requests);
/// * any other option is a librdkafka property (`acks=all`, `linger.ms=5`,
///   `security.protocol=...`) set on each client it applies to (producers
///   get no consumer-only property and consumers no producer-only one, as
///   librdkafka's CONFIGURATION.md marks them); an unknown property is a
///   configuration error at parse time.
///
/// ```
/// use faustus_core::DriverUrl;
/// use faustus_transport_kafka::KafkaConfig;
///
/// let url = DriverUrl::parse("broker", "kafka://h1:9092;h2?acks=all&linger.ms=5").unwrap();
/// let config = KafkaConfig::from_url(&url).unwrap();
/// assert_eq!(config.bootstrap_servers, vec!["h1:9092", "h2:9092"]);
/// assert_eq!(config.librdkafka.get("acks").map(String::as_str), Some("all"));
/// ```
///
/// Credentials (the app's `broker_credentials`) come from the
/// [`TransportContext`] ([`from_url_with`](Self::from_url_with)) and become
/// `security.protocol`, `ssl.*` and `sasl.*` properties
/// ([`credential_properties`]); the URL may still set such properties
/// itself, but not to other values than the credentials give.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// `host:port` of the bootstrap brokers.
    pub bootstrap_servers: Vec<String>,
    /// librdkafka properties passed through from the URL.
    pub librdkafka: BTreeMap<String, String>,
    /// How long to retry reaching a broker before the first operation fails.
    pub connect_timeout: Duration,
    /// The bound of each blocking librdkafka call.
    pub operation_timeout: Duration,
    /// The URL as given, secret options redacted, for logs and errors.
    pub url: String,
    /// TLS and SASL (the app's `broker_credentials`).
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let librdkafka: BTreeMap<&str, &str> = self
            .librdkafka
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_option(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("librdkafka", &librdkafka)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// The librdkafka properties `credentials` stand for (secrets included:
/// for the client configuration only, never to print).
pub fn credential_properties(credentials: &Credentials) -> Vec<(&'static str, String)> {
    let mut props = vec![(
        "security.protocol",
        credentials.security_protocol().to_string(),
    )];
    if let Some(tls) = &credentials.tls {
        if let Some(ca) = &tls.ca_file {
            props.push(("ssl.ca.location", ca.display().to_string()));
        }
        if let Some(cert) = &tls.cert_file {
            props.push(("ssl.certificate.location", cert.display().to_string()));
        }
        if let Some(key) = &tls.key_file {
            props.push(("ssl.key.location", key.display().to_string()));
        }
        if let Some(pw) = &tls.key_password {
            props.push(("ssl.key.password", pw.expose().to_string()));
        }
        props.push((
            "ssl.endpoint.identification.algorithm",
            if tls.check_hostname { "https" } else { "none" }.to_string(),
        ));
    }
    match &credentials.sasl {
        None => {}
        Some(Sasl::Password {
            mechanism,
            username,
            password,
        }) => {
            props.push(("sasl.mechanism", mechanism.as_str().to_string()));
            props.push(("sasl.username", username.clone()));
            props.push(("sasl.password", password.expose().to_string()));
        }
        Some(Sasl::OAuthBearer(_)) => {
            props.push((
                "sasl.mechanism",
                SaslMechanism::OAuthBearer.as_str().to_string(),
            ));
        }
        Some(Sasl::Gssapi {
            service_name,
            principal,
            keytab,
        }) => {
            props.push(("sasl.mechanism", SaslMechanism::Gssapi.as_str().to_string()));
            props.push(("sasl.kerberos.service.name", service_name.clone()));
            if let Some(p) = principal {
                props.push(("sasl.kerberos.principal", p.clone()));
            }
            if let Some(k) = keytab {
                props.push(("sasl.kerberos.keytab", k.display().to_string()));
            }
        }
        // A mechanism added to core later: librdkafka judges it by name.
        Some(other) => props.push(("sasl.mechanism", other.mechanism().as_str().to_string())),
    }
    props
}

/// librdkafka's other names for properties credentials set.
fn aliases(property: &str) -> &'static [&'static str] {
    match property {
        "sasl.mechanism" => &["sasl.mechanism", "sasl.mechanisms"],
        "ssl.endpoint.identification.algorithm" => &["ssl.endpoint.identification.algorithm"],
        "security.protocol" => &["security.protocol"],
        "ssl.ca.location" => &["ssl.ca.location"],
        "ssl.certificate.location" => &["ssl.certificate.location", "ssl.cert.location"],
        "ssl.key.location" => &["ssl.key.location"],
        "ssl.key.password" => &["ssl.key.password"],
        "sasl.username" => &["sasl.username"],
        "sasl.password" => &["sasl.password"],
        "sasl.kerberos.service.name" => &["sasl.kerberos.service.name"],
        "sasl.kerberos.principal" => &["sasl.kerberos.principal"],
        "sasl.kerberos.keytab" => &["sasl.kerberos.keytab"],
        _ => &[],
    }
}

/// Whether this librdkafka was built with a feature (`builtin.features`).
fn has_builtin_feature(feature: &str) -> bool {
    ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .map(|features| features.split(',').any(|f| f.trim() == feature))
        .unwrap_or(false)
}

impl KafkaConfig {
    /// A configuration for these bootstrap servers with default options.
    pub fn new(bootstrap_servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let bootstrap_servers: Vec<String> =
            bootstrap_servers.into_iter().map(Into::into).collect();
        let url = format!("kafka://{}", bootstrap_servers.join(";"));
        KafkaConfig {
            bootstrap_servers,
            librdkafka: BTreeMap::new(),
            connect_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(30),
            url,
            credentials: None,
        }
    }

    /// Parse a `kafka://` URL (no credentials).
    pub fn from_url(url: &DriverUrl) -> Result<Self> {
        Self::from_url_with(url, &TransportContext::default())
    }

    /// Parse a `kafka://` URL, with the context's credentials.
    pub fn from_url_with(url: &DriverUrl, ctx: &TransportContext) -> Result<Self> {
        Self::parse_url(url)?.with_credentials(ctx.credentials.clone())
    }

    /// The same configuration with these credentials (or none). Fails when
    /// the URL sets one of their properties to another value, when they
    /// need what this librdkafka lacks (GSSAPI), or when librdkafka refuses
    /// them (it reads the files it is given now, so a key that does not
    /// match its certificate or a wrong key password is reported here).
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Result<Self> {
        let Some(credentials) = credentials else {
            self.credentials = None;
            return Ok(self);
        };
        credentials.validate()?;
        if credentials.sasl.as_ref().map(Sasl::mechanism) == Some(SaslMechanism::Gssapi)
            && !has_builtin_feature("sasl_gssapi")
        {
            return Err(Error::config(
                "broker_credentials",
                "SASL GSSAPI (Kerberos) needs librdkafka built with Cyrus SASL, and this \
                 one is not (the Kafka transport builds it without system libraries); use \
                 PLAIN, SCRAM or OAUTHBEARER",
            ));
        }
        for (property, value) in credential_properties(&credentials) {
            for name in aliases(property) {
                let Some(given) = self.librdkafka.get(*name) else {
                    continue;
                };
                if !given.eq_ignore_ascii_case(&value) {
                    let shown = |v: &str| {
                        if is_secret_option(property) {
                            "***".to_string()
                        } else {
                            format!("{v:?}")
                        }
                    };
                    return Err(Error::config(
                        "broker_credentials",
                        format!(
                            "they set {property}={} but the broker URL {} sets {name}={}; set it in one place",
                            shown(&value),
                            self.url,
                            shown(given)
                        ),
                    ));
                }
            }
        }
        let tls = credentials.tls.is_some();
        self.credentials = Some(credentials);
        let reject = |e: rdkafka::error::KafkaError| {
            Error::config(
                "broker_credentials",
                format!("librdkafka rejects them for {}: {e}", self.url),
            )
        };
        self.all_properties()
            .create_native_config()
            .map_err(reject)?;
        if tls {
            // librdkafka reads the CA, certificate and key when a client is
            // made: make one that connects nowhere, so an unreadable file, a
            // key that does not fit its certificate or a wrong key password
            // fails now, not on each connection attempt.
            let mut probe = self.all_properties();
            probe.remove("bootstrap.servers");
            probe.set_log_level(RDKafkaLogLevel::Emerg);
            probe
                .create::<rdkafka::producer::BaseProducer>()
                .map_err(reject)?;
        }
        Ok(self)
    }

    fn parse_url(url: &DriverUrl) -> Result<Self> {
        if url.scheme() != crate::SCHEME {
            return Err(Error::config(
                "broker",
                format!(
                    "{:?} is not a Kafka transport URL (expected `kafka://host:port`)",
                    url.redacted()
                ),
            ));
        }
        if !url.path().is_empty() && url.path() != "/" {
            return Err(Error::config(
                "broker",
                format!(
                    "{:?}: a Kafka URL has no path; use `kafka://host1:9092;host2:9092`",
                    url.redacted()
                ),
            ));
        }
        // Checked here, so a typo fails at start naming the bad part rather
        // than after `connect_timeout_ms` of "no broker answered".
        let hosts: Vec<String> = url
            .host_ports("broker", 9092)?
            .into_iter()
            .map(|(host, port)| format!("{host}:{port}"))
            .collect();
        if hosts.is_empty() {
            return Err(Error::config(
                "broker",
                format!(
                    "{:?} names no broker; use `kafka://host:9092`",
                    url.redacted()
                ),
            ));
        }
        let mut config = KafkaConfig::new(hosts);
        config.url = url.redacted();
        if let Some(ms) = url.parse_option::<u64>("connect_timeout_ms")? {
            config.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = url.parse_option::<u64>("operation_timeout_ms")? {
            if ms == 0 {
                return Err(Error::config(
                    "kafka.operation_timeout_ms",
                    format!("must be at least 1 in {:?}", url.redacted()),
                ));
            }
            config.operation_timeout = Duration::from_millis(ms);
        }
        for (k, v) in url.query() {
            if !OWN_OPTIONS.contains(&k.as_str()) {
                config.librdkafka.insert(k.clone(), v.clone());
            }
        }
        // Let librdkafka judge the pass-through properties now, so a typo is
        // reported at start with the option's name rather than at first use.
        config
            .all_properties()
            .create_native_config()
            .map_err(|e| {
                Error::config(
                    "broker",
                    format!("{:?}: librdkafka rejects an option: {e}", url.redacted()),
                )
            })?;
        Ok(config)
    }

    /// The base librdkafka configuration of a client in `role`: the
    /// bootstrap servers and the URL's properties that apply to it, with
    /// librdkafka's log level following the `tracing` subscriber's.
    pub fn client_config(&self, role: ClientRole) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set_log_level(log_level());
        c.set("bootstrap.servers", self.bootstrap_servers.join(","));
        for (k, v) in &self.librdkafka {
            if role.takes(k) {
                c.set(k, v);
            }
        }
        self.set_credentials(&mut c);
        c
    }

    fn set_credentials(&self, c: &mut ClientConfig) {
        if let Some(credentials) = &self.credentials {
            for (k, v) in credential_properties(credentials) {
                c.set(k, v);
            }
        }
    }

    /// Every property, for librdkafka to check at parse time.
    fn all_properties(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap_servers.join(","));
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        self.set_credentials(&mut c);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<KafkaConfig> {
        KafkaConfig::from_url(&DriverUrl::parse("broker", url)?)
    }

    #[test]
    fn hosts_split_on_semicolons_and_get_default_ports() {
        let c = parse("kafka://h1:9092;h2:9093,h3").unwrap();
        assert_eq!(c.bootstrap_servers, vec!["h1:9092", "h2:9093", "h3:9092"]);
        assert_eq!(
            c.client_config(ClientRole::Admin).get("bootstrap.servers"),
            Some("h1:9092,h2:9093,h3:9092")
        );
        assert!(c.librdkafka.is_empty());
        assert_eq!(c.connect_timeout, Duration::from_secs(60));
        assert_eq!(c.url, "kafka://h1:9092;h2:9093,h3");
    }

    #[test]
    fn unknown_options_pass_through_to_librdkafka() {
        let c = parse("kafka://h1:9092;h2:9092?acks=all&linger.ms=5").unwrap();
        assert_eq!(c.bootstrap_servers, vec!["h1:9092", "h2:9092"]);
        let cc = c.client_config(ClientRole::Producer);
        assert_eq!(cc.get("acks"), Some("all"));
        assert_eq!(cc.get("linger.ms"), Some("5"));
    }

    #[test]
    fn own_options_are_read_not_passed() {
        let c = parse("kafka://h?connect_timeout_ms=1500&operation_timeout_ms=200").unwrap();
        assert_eq!(c.connect_timeout, Duration::from_millis(1500));
        assert_eq!(c.operation_timeout, Duration::from_millis(200));
        assert!(c.librdkafka.is_empty());
        let e = parse("kafka://h?connect_timeout_ms=soon").unwrap_err();
        assert!(e.to_string().contains("kafka.connect_timeout_ms"), "{e}");
        let e = parse("kafka://h?operation_timeout_ms=0").unwrap_err();
        assert!(e.to_string().contains("kafka.operation_timeout_ms"), "{e}");
    }

    #[test]
    fn each_role_gets_the_properties_that_apply_to_it() {
        let c = parse(
            "kafka://h?acks=all&linger.ms=5&compression.type=zstd&fetch.min.bytes=1\
             &session.timeout.ms=6000&auto.offset.reset=latest&client.rack=r1&retry.backoff.ms=50",
        )
        .unwrap();
        let p = c.client_config(ClientRole::Producer);
        let k = c.client_config(ClientRole::Consumer);
        let a = c.client_config(ClientRole::Admin);
        for shared in ["client.rack", "retry.backoff.ms", "bootstrap.servers"] {
            assert!(
                p.get(shared).is_some() && k.get(shared).is_some() && a.get(shared).is_some(),
                "{shared}"
            );
        }
        for producer in ["acks", "linger.ms", "compression.type"] {
            assert!(p.get(producer).is_some(), "{producer}");
            assert_eq!(k.get(producer), None, "{producer}");
            assert_eq!(a.get(producer), None, "{producer}");
        }
        for consumer in ["fetch.min.bytes", "session.timeout.ms", "auto.offset.reset"] {
            assert!(k.get(consumer).is_some(), "{consumer}");
            assert_eq!(p.get(consumer), None, "{consumer}");
            assert_eq!(a.get(consumer), None, "{consumer}");
        }
    }

    fn with(url: &str, credentials: Credentials) -> Result<KafkaConfig> {
        KafkaConfig::from_url_with(
            &DriverUrl::parse("broker", url)?,
            &TransportContext::new().with_credentials(Some(credentials)),
        )
    }

    /// A file that exists (validation checks that the paths do).
    fn some_file() -> String {
        std::env::current_exe().unwrap().display().to_string()
    }

    #[test]
    fn credentials_become_librdkafka_properties_on_every_client() {
        use faustus_core::credentials::Tls;
        let f = some_file();
        let props: BTreeMap<&str, String> = credential_properties(&Credentials::tls(
            Tls::new()
                .ca_file("/ca.pem")
                .client_cert("/c.pem", "/k.pem")
                .key_password("kp"),
        ))
        .into_iter()
        .collect();
        let expected: BTreeMap<&str, String> = [
            ("security.protocol", "SSL"),
            ("ssl.ca.location", "/ca.pem"),
            ("ssl.certificate.location", "/c.pem"),
            ("ssl.key.location", "/k.pem"),
            ("ssl.key.password", "kp"),
            ("ssl.endpoint.identification.algorithm", "https"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
        assert_eq!(props, expected);
        // With the system's CAs (librdkafka probes the usual places).
        let c = with(
            "kafka://h:9093?acks=all",
            Credentials::scram_sha512("app", "s3cret").with_tls(Tls::new().check_hostname(false)),
        )
        .unwrap();
        for role in [
            ClientRole::Producer,
            ClientRole::Consumer,
            ClientRole::Admin,
        ] {
            let cc = c.client_config(role);
            assert_eq!(cc.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(cc.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
            assert_eq!(cc.get("sasl.username"), Some("app"));
            assert_eq!(cc.get("sasl.password"), Some("s3cret"));
            assert_eq!(cc.get("ssl.ca.location"), None);
            assert_eq!(
                cc.get("ssl.endpoint.identification.algorithm"),
                Some("none")
            );
        }
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("app"),
            "{shown}"
        );

        let plain = with("kafka://h", Credentials::plain("u", "p")).unwrap();
        let cc = plain.client_config(ClientRole::Producer);
        assert_eq!(cc.get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(cc.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(cc.get("ssl.ca.location"), None);

        let s256 = with("kafka://h", Credentials::scram_sha256("u", "p")).unwrap();
        assert_eq!(
            s256.client_config(ClientRole::Consumer)
                .get("sasl.mechanism"),
            Some("SCRAM-SHA-256")
        );

        let tls = with(
            "kafka://h",
            Credentials::tls(Tls::new().client_cert(&f, &f).key_password("kp")),
        );
        // librdkafka reads the key when a client is made: this "key" is the
        // test binary, so it is refused now, naming the property, not the
        // password.
        let e = tls.unwrap_err().to_string();
        assert!(
            e.contains("broker_credentials") && e.contains("ssl."),
            "{e}"
        );
        assert!(!e.contains("kp\""), "{e}");

        let oauth = with(
            "kafka://h",
            Credentials::oauth_bearer(|| Err(Error::config("oauth", "none"))),
        )
        .unwrap();
        let cc = oauth.client_config(ClientRole::Producer);
        assert_eq!(cc.get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(cc.get("sasl.mechanism"), Some("OAUTHBEARER"));
    }

    #[test]
    fn url_properties_still_pass_through_and_may_not_contradict_credentials() {
        // Without credentials the URL alone secures the connection, as before.
        let c = parse(
            "kafka://h?security.protocol=SASL_SSL&sasl.mechanisms=SCRAM-SHA-256&sasl.username=u&sasl.password=pw-in-url",
        )
        .unwrap();
        let cc = c.client_config(ClientRole::Consumer);
        assert_eq!(cc.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(cc.get("sasl.password"), Some("pw-in-url"));
        let shown = format!("{c:?} {}", c.url);
        assert!(!shown.contains("pw-in-url"), "{shown}");
        // Agreeing values are fine (case aside); others are an error naming both.
        with(
            "kafka://h?security.protocol=sasl_plaintext&sasl.mechanism=PLAIN",
            Credentials::plain("u", "p"),
        )
        .unwrap();
        let e = with(
            "kafka://h?security.protocol=SSL",
            Credentials::scram_sha256("u", "p"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("broker_credentials")
                && e.contains("security.protocol=\"SASL_PLAINTEXT\"")
                && e.contains("security.protocol=\"SSL\""),
            "{e}"
        );
        let e = with(
            "kafka://h?sasl.password=from-url",
            Credentials::plain("u", "from-code"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sasl.password=***"), "{e}");
        assert!(!e.contains("from-url") && !e.contains("from-code"), "{e}");
    }

    #[test]
    fn gssapi_is_refused_without_kerberos_support() {
        if has_builtin_feature("sasl_gssapi") {
            return;
        }
        let e = with("kafka://h", Credentials::gssapi("kafka"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("GSSAPI") && e.contains("Cyrus SASL"), "{e}");
        assert!(has_builtin_feature("sasl_scram") && has_builtin_feature("ssl"));
    }

    #[test]
    fn librdkafka_rejects_unknown_properties_at_parse_time() {
        let e = parse("kafka://h:9092?no.such.property=1").unwrap_err();
        assert!(e.to_string().contains("no.such.property"), "{e}");
    }

    #[test]
    fn bad_hosts_and_ports_fail_at_once_naming_the_part() {
        for (url, part) in [
            ("kafka://127.0.0.1:notaport", "\"notaport\""),
            ("kafka://127.0.0.1:99999", "99999"),
            ("kafka://[::1", "unclosed `[`"),
            ("kafka://:9092", "empty host"),
            ("kafka://h1:9092;h2:", "empty port"),
        ] {
            let started = std::time::Instant::now();
            let e = parse(url).unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(1));
            let text = e.to_string();
            assert!(
                text.contains("`broker`") && text.contains(url) && text.contains(part),
                "{url}: {text}"
            );
        }
        let c = parse("kafka://[::1]:9093;[::1]").unwrap();
        assert_eq!(c.bootstrap_servers, vec!["[::1]:9093", "[::1]:9092"]);
    }

    #[test]
    fn rejects_other_schemes_paths_and_empty_hosts() {
        assert!(parse("memory://").is_err());
        assert!(parse("kafka://h:9092/x").is_err());
        assert!(parse("kafka://").is_err());
        assert!(parse("kafka://;").is_err());
    }
}
