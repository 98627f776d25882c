//! Driver URLs: `scheme://authority/path?key=value&...`.
//!
//! Parsed loosely on purpose: Kafka's `kafka://h1:9092;h2:9092` is not a valid
//! RFC 3986 URL, and `memory://` / `redb://` have no host at all. The scheme
//! picks the driver; each driver reads the rest into its own typed config.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};

/// A parsed driver URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DriverUrl {
    raw: String,
    scheme: String,
    authority: String,
    path: String,
    query: BTreeMap<String, String>,
}

impl DriverUrl {
    /// Parse `url`; `setting` names the setting it came from for errors.
    pub fn parse(setting: &str, url: &str) -> Result<Self> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(Error::config(
                setting,
                format!("{url:?} is not a driver URL: expected `scheme://...`, e.g. `memory://`"),
            ));
        };
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        {
            return Err(Error::config(
                setting,
                format!("{url:?} has an invalid scheme {scheme:?}"),
            ));
        }
        let (before_query, query_str) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => (&before_query[..i], &before_query[i..]),
            None => (before_query, ""),
        };
        let mut query = BTreeMap::new();
        if let Some(q) = query_str {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if k.is_empty() {
                    return Err(Error::config(
                        setting,
                        format!("{url:?} has an option without a name: {pair:?}"),
                    ));
                }
                query.insert(k.to_string(), v.to_string());
            }
        }
        Ok(DriverUrl {
            raw: url.to_string(),
            scheme: scheme.to_ascii_lowercase(),
            authority: authority.to_string(),
            path: path.to_string(),
            query,
        })
    }

    /// The whole URL as given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Lowercased scheme: `kafka`, `memory`, `redb` …
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// What stands between `://` and the path: hosts, or a name (`memory://NAME`).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Hosts split on `;` and `,` (Faust separates brokers with `;`).
    pub fn hosts(&self) -> Vec<&str> {
        self.authority
            .split([';', ','])
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect()
    }

    /// The path, starting with `/` when present.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `?key=value` options.
    pub fn query(&self) -> &BTreeMap<String, String> {
        &self.query
    }

    /// One option.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// Parse one option with `FromStr`, naming `{scheme}.{key}` in the error.
    pub fn parse_option<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>>
    where
        T::Err: fmt::Display,
    {
        match self.option(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e| {
                Error::config(
                    format!("{}.{}", self.scheme, key),
                    format!("{v:?} in {:?}: {e}", self.raw),
                )
            }),
        }
    }
}

impl fmt::Debug for DriverUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DriverUrl({:?})", self.raw)
    }
}

impl fmt::Display for DriverUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_hosts_and_options() {
        let u = DriverUrl::parse("broker", "Kafka://h1:9092;h2:9092?acks=all&linger.ms=5").unwrap();
        assert_eq!(u.scheme(), "kafka");
        assert_eq!(u.hosts(), vec!["h1:9092", "h2:9092"]);
        assert_eq!(u.option("acks"), Some("all"));
        assert_eq!(u.parse_option::<u32>("linger.ms").unwrap(), Some(5));
    }

    #[test]
    fn memory_names_and_paths() {
        let u = DriverUrl::parse("broker", "memory://").unwrap();
        assert_eq!((u.scheme(), u.authority(), u.path()), ("memory", "", ""));
        let u = DriverUrl::parse("broker", "memory://cluster-a").unwrap();
        assert_eq!(u.authority(), "cluster-a");
        let u = DriverUrl::parse("store", "redb:///var/lib/app?cache_mb=64").unwrap();
        assert_eq!(u.path(), "/var/lib/app");
        assert_eq!(u.parse_option::<u64>("cache_mb").unwrap(), Some(64));
    }

    #[test]
    fn errors_name_setting() {
        let e = DriverUrl::parse("broker", "localhost:9092").unwrap_err();
        assert!(e.to_string().contains("`broker`"), "{e}");
        let u = DriverUrl::parse("store", "redb://?cache_mb=lots").unwrap();
        let e = u.parse_option::<u64>("cache_mb").unwrap_err();
        assert!(e.to_string().contains("redb.cache_mb"), "{e}");
    }
}
