//! `memory://` URL → [`MemoryConfig`].

use faustus_core::{DriverUrl, Error, Result};

/// Options the `memory://` store accepts (none yet).
const OPTIONS: &[&str] = &[];

/// The typed form of a `memory://` store URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// `memory://NAME`: the process-wide store to share. `None` (`memory://`)
    /// means a fresh store private to whoever built it.
    pub name: Option<String>,
}

impl MemoryConfig {
    /// A config for a fresh private store (`memory://`).
    pub fn new() -> Self {
        MemoryConfig::default()
    }

    /// Parse a `memory://[NAME]` URL. A path other than `/` or any
    /// `?option` is an [`Error::Config`] that names it.
    pub fn from_url(url: &DriverUrl) -> Result<Self> {
        let setting = |what: &str| format!("{}.{what}", url.scheme());
        if let Some(key) = url.query().keys().next() {
            let accepted = if OPTIONS.is_empty() {
                "the memory store accepts no options".to_string()
            } else {
                format!("accepted options: {}", OPTIONS.join(", "))
            };
            return Err(Error::config(
                setting(key),
                format!("unknown option {key:?} in {:?}; {accepted}", url.as_str()),
            ));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(Error::config(
                "store",
                format!(
                    "{:?}: a memory store takes no path; use `memory://` for a private store \
                     or `memory://NAME` for a shared one",
                    url.as_str()
                ),
            ));
        }
        let name = match url.authority() {
            "" => None,
            name => Some(name.to_string()),
        };
        Ok(MemoryConfig { name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<MemoryConfig> {
        MemoryConfig::from_url(&DriverUrl::parse("store", url)?)
    }

    #[test]
    fn private_and_named() {
        assert_eq!(parse("memory://").unwrap().name, None);
        assert_eq!(parse("memory:///").unwrap().name, None);
        assert_eq!(
            parse("memory://disk-a").unwrap().name.as_deref(),
            Some("disk-a")
        );
        assert_eq!(
            parse("memory://disk-a/").unwrap().name.as_deref(),
            Some("disk-a")
        );
    }

    #[test]
    fn unknown_option_is_named() {
        let e = parse("memory://?cache_mb=64").unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, Error::Config { .. }), "{s}");
        assert!(s.contains("memory.cache_mb"), "{s}");
        assert!(s.contains("accepts no options"), "{s}");
    }

    #[test]
    fn path_is_rejected() {
        let e = parse("memory:///var/lib/app").unwrap_err();
        assert!(e.to_string().contains("no path"), "{e}");
    }
}
