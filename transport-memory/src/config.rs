//! The typed configuration of a `memory://` transport URL.

use std::time::Duration;

use faustus_core::{DriverUrl, Error, Result};

/// Options a `memory://` URL accepts, for the error that lists them.
const ACCEPTED: &str = "partitions, rebalance_timeout_ms, session_timeout_ms";

/// Configuration of a [`MemoryTransport`](crate::MemoryTransport).
///
/// Parsed from `memory://[NAME][?partitions=N&rebalance_timeout_ms=MS&session_timeout_ms=MS]`:
///
/// * empty authority (`memory://`): a fresh private broker per transport;
/// * `memory://NAME`: the process-wide broker called `NAME`, shared by every
///   transport built with that name (several workers of one app in one process);
/// * `partitions` (default 8): partition count of auto-created topics;
/// * `rebalance_timeout_ms` (default 30000): how long a group member may take
///   to poll again during a rebalance before it is removed from the group;
/// * `session_timeout_ms` (default 300000, Kafka's `max.poll.interval.ms`):
///   how long a member may go without polling at any time before it is
///   removed and its partitions reassigned (how a crashed worker is noticed).
///
/// ```
/// use faustus_core::DriverUrl;
/// use faustus_transport_memory::MemoryConfig;
///
/// let url = DriverUrl::parse("broker", "memory://cluster?partitions=4").unwrap();
/// let config = MemoryConfig::from_url(&url).unwrap();
/// assert_eq!(config.name.as_deref(), Some("cluster"));
/// assert_eq!(config.partitions, 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Name of the shared process-wide broker; `None` for a private one.
    pub name: Option<String>,
    /// Partition count of topics created implicitly (produce or subscribe).
    pub partitions: u32,
    /// How long a member may take to acknowledge a revocation.
    pub rebalance_timeout: Duration,
    /// How long a member may go without polling before it is removed.
    pub session_timeout: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            name: None,
            partitions: 8,
            rebalance_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(300),
        }
    }
}

impl MemoryConfig {
    /// Parse a `memory://` URL.
    pub fn from_url(url: &DriverUrl) -> Result<Self> {
        if url.scheme() != crate::SCHEME {
            return Err(Error::config(
                "broker",
                format!(
                    "{:?} is not a memory transport URL (expected `memory://`)",
                    url.as_str()
                ),
            ));
        }
        if !url.path().is_empty() && url.path() != "/" {
            return Err(Error::config(
                "broker",
                format!(
                    "{:?}: a memory transport URL has no path; use `memory://` or `memory://NAME`",
                    url.as_str()
                ),
            ));
        }
        for key in url.query().keys() {
            if !["partitions", "rebalance_timeout_ms", "session_timeout_ms"].contains(&key.as_str())
            {
                return Err(Error::config(
                    format!("memory.{key}"),
                    format!(
                        "unknown option in {:?}; accepted options: {ACCEPTED}",
                        url.as_str()
                    ),
                ));
            }
        }
        let mut config = MemoryConfig::default();
        let authority = url.authority().trim();
        if !authority.is_empty() {
            config.name = Some(authority.to_string());
        }
        if let Some(n) = url.parse_option::<u32>("partitions")? {
            if n == 0 {
                return Err(Error::config(
                    "memory.partitions",
                    format!("must be at least 1 in {:?}", url.as_str()),
                ));
            }
            config.partitions = n;
        }
        if let Some(ms) = url.parse_option::<u64>("rebalance_timeout_ms")? {
            if ms == 0 {
                return Err(Error::config(
                    "memory.rebalance_timeout_ms",
                    format!("must be at least 1 in {:?}", url.as_str()),
                ));
            }
            config.rebalance_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = url.parse_option::<u64>("session_timeout_ms")? {
            if ms == 0 {
                return Err(Error::config(
                    "memory.session_timeout_ms",
                    format!("must be at least 1 in {:?}", url.as_str()),
                ));
            }
            config.session_timeout = Duration::from_millis(ms);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<MemoryConfig> {
        MemoryConfig::from_url(&DriverUrl::parse("broker", url)?)
    }

    #[test]
    fn private_and_named() {
        assert_eq!(parse("memory://").unwrap(), MemoryConfig::default());
        assert_eq!(parse("memory:///").unwrap().name, None);
        let c = parse("memory://cluster-a").unwrap();
        assert_eq!(c.name.as_deref(), Some("cluster-a"));
        assert_eq!(c.partitions, 8);
        assert_eq!(c.rebalance_timeout, Duration::from_secs(30));
    }

    #[test]
    fn options() {
        let c = parse("memory://x?partitions=3&rebalance_timeout_ms=250&session_timeout_ms=900")
            .unwrap();
        assert_eq!(c.partitions, 3);
        assert_eq!(c.rebalance_timeout, Duration::from_millis(250));
        assert_eq!(c.session_timeout, Duration::from_millis(900));
        assert_eq!(
            MemoryConfig::default().session_timeout,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn bad_values_name_the_option() {
        let e = parse("memory://?partitions=many").unwrap_err();
        assert!(e.to_string().contains("memory.partitions"), "{e}");
        let e = parse("memory://?partitions=0").unwrap_err();
        assert!(e.to_string().contains("memory.partitions"), "{e}");
        let e = parse("memory://?rebalance_timeout_ms=-1").unwrap_err();
        assert!(e.to_string().contains("memory.rebalance_timeout_ms"), "{e}");
    }

    #[test]
    fn unknown_options_list_accepted_ones() {
        let e = parse("memory://?partition=3").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("memory.partition"), "{s}");
        assert!(
            s.contains("partitions, rebalance_timeout_ms, session_timeout_ms"),
            "{s}"
        );
    }

    #[test]
    fn rejects_other_schemes_and_paths() {
        assert!(parse("kafka://localhost").is_err());
        assert!(parse("memory://x/y").is_err());
    }
}
