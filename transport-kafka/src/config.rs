//! The typed configuration of a `kafka://` transport URL.

use std::collections::BTreeMap;
use std::time::Duration;

use faustus_core::{DriverUrl, Error, Result};
use rdkafka::ClientConfig;

/// Options of the URL that Faustus reads itself; every other `?key=value`
/// goes to librdkafka unchanged.
const OWN_OPTIONS: &[&str] = &["connect_timeout_ms", "operation_timeout_ms"];

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
///   `security.protocol=...`) set on every client the transport creates; an
///   unknown property is a configuration error at parse time.
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// The URL as given, for logs and errors.
    pub url: String,
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
        }
    }

    /// Parse a `kafka://` URL.
    pub fn from_url(url: &DriverUrl) -> Result<Self> {
        if url.scheme() != crate::SCHEME {
            return Err(Error::config(
                "broker",
                format!(
                    "{:?} is not a Kafka transport URL (expected `kafka://host:port`)",
                    url.as_str()
                ),
            ));
        }
        if !url.path().is_empty() && url.path() != "/" {
            return Err(Error::config(
                "broker",
                format!(
                    "{:?}: a Kafka URL has no path; use `kafka://host1:9092;host2:9092`",
                    url.as_str()
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
                    url.as_str()
                ),
            ));
        }
        let mut config = KafkaConfig::new(hosts);
        config.url = url.as_str().to_string();
        if let Some(ms) = url.parse_option::<u64>("connect_timeout_ms")? {
            config.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = url.parse_option::<u64>("operation_timeout_ms")? {
            if ms == 0 {
                return Err(Error::config(
                    "kafka.operation_timeout_ms",
                    format!("must be at least 1 in {:?}", url.as_str()),
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
        config.client_config().create_native_config().map_err(|e| {
            Error::config(
                "broker",
                format!("{:?}: librdkafka rejects an option: {e}", url.as_str()),
            )
        })?;
        Ok(config)
    }

    /// The base librdkafka configuration every client of this transport starts from.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap_servers.join(","));
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
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
            c.client_config().get("bootstrap.servers"),
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
        let cc = c.client_config();
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
