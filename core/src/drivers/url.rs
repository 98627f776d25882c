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
                format!(
                    "{:?} is not a driver URL: expected `scheme://...`, e.g. `memory://`",
                    redact(url)
                ),
            ));
        };
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        {
            return Err(Error::config(
                setting,
                format!("{:?} has an invalid scheme {scheme:?}", redact(url)),
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
                        format!("{:?} has an option without a name: {pair:?}", redact(url)),
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

    /// The whole URL as given, secrets included: print
    /// [`redacted`](Self::redacted) (or the URL's `Display`) instead.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The URL for logs and errors: the value of every secret option
    /// ([`is_secret_option`]: `sasl.password=`, `ssl.key.password=` …) and a
    /// password before `@` replaced by `***`. `Display` and `Debug` show this.
    pub fn redacted(&self) -> String {
        redact(&self.raw)
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

    /// The hosts ([`hosts`](Self::hosts)) checked and split into host and
    /// port; `default_port` for a host without one. IPv6 addresses are
    /// written in brackets (`[::1]:9092`) and keep them. A bad entry fails
    /// at once with a configuration error for `setting` naming the URL, the
    /// entry and what is wrong with it: an empty host or port, a port that
    /// is not a number or not in 1–65535, an unclosed `[`, an unbracketed
    /// IPv6 address, a character no host name has.
    pub fn host_ports(&self, setting: &str, default_port: u16) -> Result<Vec<(String, u16)>> {
        self.hosts()
            .into_iter()
            .map(|entry| {
                split_host_port(entry, default_port).map_err(|problem| {
                    Error::config(
                        setting,
                        format!("{:?}: {problem} in {entry:?}", self.redacted()),
                    )
                })
            })
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
                    format!("{v:?} in {:?}: {e}", self.redacted()),
                )
            }),
        }
    }
}

/// Whether a URL option holds a secret (its value is never printed): a
/// name with `password`, `secret` or `token` in it, a PEM private key
/// (`ssl.key.pem`), or librdkafka's `sasl.oauthbearer.config` and
/// `sasl.jaas.config`.
pub fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|w| k.contains(w))
        || k.ends_with("key.pem")
        || k == "sasl.oauthbearer.config"
        || k == "sasl.jaas.config"
}

/// `url` with secret option values and a password before `@` replaced by
/// `***` (see [`DriverUrl::redacted`]); for URLs not parsed yet (a setting's
/// text).
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => authority.to_string(),
                },
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_string(),
    };
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_option(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Split `host[:port]` (or `[v6]:port`), checking both parts.
fn split_host_port(entry: &str, default_port: u16) -> std::result::Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return Err("an unclosed `[` (an IPv6 address is written `[::1]:9092`)".into());
        };
        let ip = addr.split('%').next().unwrap_or_default();
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{addr:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("{after:?} after the `]` (expected `:PORT`)")),
            },
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match entry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (entry, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err("an IPv6 address without brackets (write `[::1]:9092`)".into());
        }
        if host.is_empty() {
            return Err("an empty host".into());
        }
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(format!("the character {c:?} in host {host:?}"));
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => default_port,
        Some("") => return Err("an empty port".into()),
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!(
                "port {p:?}, which is not a number (expected 1-65535)"
            ))
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("port {p}, outside 1-65535")),
        },
    };
    Ok((host, port))
}

impl fmt::Debug for DriverUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DriverUrl({:?})", self.redacted())
    }
}

impl fmt::Display for DriverUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
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
    fn host_ports_are_checked() {
        let hp = |url: &str| {
            DriverUrl::parse("broker", url)
                .unwrap()
                .host_ports("broker", 9092)
        };
        assert_eq!(
            hp("kafka://h1;h2:9093,[::1]:9094;[fe80::1%eth0];10.0.0.1:1;my_host-2.example:65535")
                .unwrap(),
            vec![
                ("h1".to_string(), 9092),
                ("h2".to_string(), 9093),
                ("[::1]".to_string(), 9094),
                ("[fe80::1%eth0]".to_string(), 9092),
                ("10.0.0.1".to_string(), 1),
                ("my_host-2.example".to_string(), 65535),
            ]
        );
        for (url, entry, problem) in [
            (
                "kafka://127.0.0.1:notaport",
                "127.0.0.1:notaport",
                "port \"notaport\", which is not a number",
            ),
            (
                "kafka://127.0.0.1:99999",
                "127.0.0.1:99999",
                "port 99999, outside 1-65535",
            ),
            (
                "kafka://127.0.0.1:0",
                "127.0.0.1:0",
                "port 0, outside 1-65535",
            ),
            ("kafka://127.0.0.1:-1", "127.0.0.1:-1", "not a number"),
            ("kafka://h:", "h:", "an empty port"),
            ("kafka://[::1", "[::1", "an unclosed `[`"),
            ("kafka://[::1]x", "[::1]x", "after the `]`"),
            (
                "kafka://[nope]:1",
                "[nope]:1",
                "\"nope\" is not an IPv6 address",
            ),
            ("kafka://::1", "::1", "IPv6 address without brackets"),
            (
                "kafka://fe80::1:9092",
                "fe80::1:9092",
                "IPv6 address without brackets",
            ),
            ("kafka://:9092", ":9092", "an empty host"),
            ("kafka://h1;ho st:1", "ho st:1", "the character ' '"),
            ("kafka://user@h:1", "user@h:1", "the character '@'"),
        ] {
            let e = hp(url).unwrap_err().to_string();
            assert!(
                e.contains("`broker`")
                    && e.contains(&format!("{url:?}"))
                    && e.contains(&format!("{entry:?}"))
                    && e.contains(problem),
                "{url}: {e}"
            );
        }
    }

    #[test]
    fn secrets_are_redacted_from_display_and_debug() {
        let u = DriverUrl::parse(
            "broker",
            "kafka://h:9092?security.protocol=SASL_SSL&sasl.username=app&sasl.password=hunter2&ssl.key.password=k3y&linger.ms=5",
        )
        .unwrap();
        for shown in [u.to_string(), format!("{u:?}"), u.redacted()] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("k3y"),
                "{shown}"
            );
            assert!(
                shown.contains("sasl.password=***")
                    && shown.contains("sasl.username=app")
                    && shown.contains("linger.ms=5"),
                "{shown}"
            );
        }
        assert!(u.as_str().contains("hunter2"));
        assert_eq!(u.option("sasl.password"), Some("hunter2"));
        assert_eq!(
            redact("postgres://me:pw@db:5432/x?sslmode=require"),
            "postgres://me:***@db:5432/x?sslmode=require"
        );
        assert_eq!(redact("memory://"), "memory://");
        assert!(is_secret_option("sasl.oauthbearer.client.secret"));
        assert!(is_secret_option("ssl.key.pem"));
        assert!(!is_secret_option("ssl.certificate.pem"));
        assert!(!is_secret_option("sasl.username"));
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
