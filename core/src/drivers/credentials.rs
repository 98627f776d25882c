//! Credentials for a secured broker, transport-neutral: TLS (CA, client
//! certificate and key) and SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER
//! with a token provider, GSSAPI). The `broker_credentials` setting holds
//! one; a transport that takes credentials gets it in its
//! [`TransportContext`](crate::registry::TransportContext) and maps it to its
//! client's options (the Kafka transport: librdkafka's `security.protocol`,
//! `ssl.*` and `sasl.*`).
//!
//! Faust's settings map as follows:
//!
//! | Faust | Faustus |
//! |---|---|
//! | `ssl_context` / `SSLCredentials(context)` | [`Credentials::tls`] with a [`Tls`] |
//! | `SASLCredentials(username, password, mechanism=PLAIN)` | [`Credentials::plain`] |
//! | `SASLCredentials(..., mechanism=SCRAM-SHA-256/512)` | [`Credentials::scram_sha256`], [`Credentials::scram_sha512`] |
//! | `OAuthCredentials(oauth_cb)` | [`Credentials::oauth_bearer`] with a [`TokenProvider`] |
//! | `GSSAPICredentials(kerberos_service_name, ...)` | [`Credentials::gssapi`] |
//! | any of them with `ssl_context=` | `.with_tls(Tls)` (SASL over TLS) |
//!
//! Secrets ([`Secret`]: passwords, the key password, tokens) never show in
//! `Debug` output or error messages.
//!
//! From the environment (when the app's code sets no credentials):
//! `FAUSTUS_BROKER_SASL_MECHANISM` (`PLAIN` — the default when a user name
//! is given —, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `GSSAPI`),
//! `FAUSTUS_BROKER_SASL_USERNAME`, `FAUSTUS_BROKER_SASL_PASSWORD`,
//! `FAUSTUS_BROKER_KERBEROS_SERVICE_NAME`, `FAUSTUS_BROKER_SSL_ENABLED`
//! (`true`: TLS with the system's CAs), `FAUSTUS_BROKER_SSL_CAFILE`,
//! `FAUSTUS_BROKER_SSL_CERTFILE`, `FAUSTUS_BROKER_SSL_KEYFILE`,
//! `FAUSTUS_BROKER_SSL_KEY_PASSWORD`, `FAUSTUS_BROKER_SSL_CHECK_HOSTNAME`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{Error, Result};

/// The setting credentials belong to, for errors.
const SETTING: &str = "broker_credentials";

/// A secret (password, token): its `Debug` shows `"<redacted>"`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself, for the driver that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// TLS to the broker: which CAs to trust, and an optional client
/// certificate (mutual TLS). `Tls::default()` trusts the system's CAs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tls {
    /// PEM file of the CA certificate(s) that signed the brokers'
    /// certificates; `None`: the system's CAs.
    pub ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate, for brokers that ask for one.
    pub cert_file: Option<PathBuf>,
    /// PEM file of this client's private key.
    pub key_file: Option<PathBuf>,
    /// The password of an encrypted `key_file`.
    pub key_password: Option<Secret>,
    /// Whether the broker's certificate must name the host connected to
    /// (default `true`, as Python's `ssl.create_default_context`).
    pub check_hostname: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password: None,
            check_hostname: true,
        }
    }
}

impl Tls {
    /// TLS trusting the system's CAs.
    pub fn new() -> Self {
        Tls::default()
    }

    /// Trust the CA certificate(s) in this PEM file (instead of the system's).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Present this client certificate and key (PEM files).
    pub fn client_cert(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.cert_file = Some(cert_file.into());
        self.key_file = Some(key_file.into());
        self
    }

    /// The password of the encrypted client key.
    pub fn key_password(mut self, password: impl Into<Secret>) -> Self {
        self.key_password = Some(password.into());
        self
    }

    /// Whether the broker's certificate must name the host (default `true`).
    pub fn check_hostname(mut self, check: bool) -> Self {
        self.check_hostname = check;
        self
    }

    fn validate(&self) -> Result<()> {
        for (what, path) in [
            ("CA file", &self.ca_file),
            ("client certificate file", &self.cert_file),
            ("client key file", &self.key_file),
        ] {
            if let Some(path) = path {
                readable(what, path)?;
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Error::config(
                SETTING,
                "a client certificate needs both its certificate and its key file",
            ));
        }
        if self.key_password.is_some() && self.key_file.is_none() {
            return Err(Error::config(
                SETTING,
                "a key password is given but no client key file",
            ));
        }
        Ok(())
    }
}

fn readable(what: &str, path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(Error::config(
            SETTING,
            format!("the TLS {what} {} is not a file", path.display()),
        )),
        Err(e) => Err(Error::config(
            SETTING,
            format!("cannot read the TLS {what} {}: {e}", path.display()),
        )),
    }
}

/// A SASL mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// `PLAIN`: user name and password in the clear (use it over TLS).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER`: tokens from a [`TokenProvider`].
    OAuthBearer,
    /// `GSSAPI` (Kerberos).
    Gssapi,
}

impl SaslMechanism {
    /// The mechanism's name on the wire: `PLAIN`, `SCRAM-SHA-256` …
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
            SaslMechanism::Gssapi => "GSSAPI",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            "OAUTHBEARER" => Ok(SaslMechanism::OAuthBearer),
            "GSSAPI" => Ok(SaslMechanism::Gssapi),
            _ => Err(format!(
                "unknown SASL mechanism {s:?}; known: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, GSSAPI"
            )),
        }
    }
}

/// An OAUTHBEARER token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthToken {
    /// The token (e.g. a JWT).
    pub value: Secret,
    /// The principal the token stands for.
    pub principal: String,
    /// When the token expires; a new one is asked for before then.
    pub expires_at: SystemTime,
}

impl OAuthToken {
    /// A token for `principal`, valid until `expires_at`.
    pub fn new(
        value: impl Into<Secret>,
        principal: impl Into<String>,
        expires_at: SystemTime,
    ) -> Self {
        OAuthToken {
            value: value.into(),
            principal: principal.into(),
            expires_at,
        }
    }
}

/// Gives OAUTHBEARER tokens: called when a client needs its first token and
/// again before each one expires, on the transport's own threads (so it may
/// block briefly, e.g. on an HTTP call to the identity provider). An error
/// fails the authentication with its message; it is asked again later.
pub trait TokenProvider: Send + Sync + 'static {
    /// A fresh token.
    fn token(&self) -> Result<OAuthToken>;
}

impl<F> TokenProvider for F
where
    F: Fn() -> Result<OAuthToken> + Send + Sync + 'static,
{
    fn token(&self) -> Result<OAuthToken> {
        self()
    }
}

/// SASL authentication.
#[derive(Clone)]
#[non_exhaustive]
pub enum Sasl {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    Password {
        /// The mechanism.
        mechanism: SaslMechanism,
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// OAUTHBEARER with tokens from the provider.
    OAuthBearer(Arc<dyn TokenProvider>),
    /// GSSAPI (Kerberos).
    Gssapi {
        /// The broker's Kerberos service name (Faust's default: `kafka`).
        service_name: String,
        /// This client's principal; `None`: the driver's default.
        principal: Option<String>,
        /// A keytab file; `None`: the default credentials cache.
        keytab: Option<PathBuf>,
    },
}

impl Sasl {
    /// The mechanism.
    pub fn mechanism(&self) -> SaslMechanism {
        match self {
            Sasl::Password { mechanism, .. } => *mechanism,
            Sasl::OAuthBearer(_) => SaslMechanism::OAuthBearer,
            Sasl::Gssapi { .. } => SaslMechanism::Gssapi,
        }
    }
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sasl::Password {
                mechanism,
                username,
                password,
            } => f
                .debug_struct("Password")
                .field("mechanism", mechanism)
                .field("username", username)
                .field("password", password)
                .finish(),
            Sasl::OAuthBearer(_) => f.write_str("OAuthBearer(<token provider>)"),
            Sasl::Gssapi {
                service_name,
                principal,
                keytab,
            } => f
                .debug_struct("Gssapi")
                .field("service_name", service_name)
                .field("principal", principal)
                .field("keytab", keytab)
                .finish(),
        }
    }
}

impl PartialEq for Sasl {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Sasl::Password {
                    mechanism: m1,
                    username: u1,
                    password: p1,
                },
                Sasl::Password {
                    mechanism: m2,
                    username: u2,
                    password: p2,
                },
            ) => m1 == m2 && u1 == u2 && p1 == p2,
            // The same provider, not merely an equal one.
            (Sasl::OAuthBearer(a), Sasl::OAuthBearer(b)) => Arc::ptr_eq(a, b),
            (
                Sasl::Gssapi {
                    service_name: s1,
                    principal: p1,
                    keytab: k1,
                },
                Sasl::Gssapi {
                    service_name: s2,
                    principal: p2,
                    keytab: k2,
                },
            ) => s1 == s2 && p1 == p2 && k1 == k2,
            _ => false,
        }
    }
}

/// How to authenticate to a secured broker and protect the connection:
/// TLS, SASL, or SASL over TLS. See the [module docs](self) for Faust's
/// equivalents.
///
/// ```
/// use faustus_core::credentials::{Credentials, Tls};
///
/// let c = Credentials::scram_sha512("app", "s3cret").with_tls(Tls::new().ca_file("/etc/kafka/ca.pem"));
/// assert_eq!(c.security_protocol(), "SASL_SSL");
/// assert!(!format!("{c:?}").contains("s3cret"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Credentials {
    /// TLS, if the connection is encrypted.
    pub tls: Option<Tls>,
    /// SASL, if the client authenticates with it.
    pub sasl: Option<Sasl>,
}

impl Credentials {
    /// TLS only (Faust's `SSLCredentials` / `ssl_context`).
    pub fn tls(tls: Tls) -> Self {
        Credentials {
            tls: Some(tls),
            sasl: None,
        }
    }

    /// SASL with a user name and password (PLAIN or SCRAM).
    pub fn sasl(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        Credentials {
            tls: None,
            sasl: Some(Sasl::Password {
                mechanism,
                username: username.into(),
                password: password.into(),
            }),
        }
    }

    /// SASL PLAIN (Faust's `SASLCredentials` default).
    pub fn plain(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credentials::sasl(SaslMechanism::Plain, username, password)
    }

    /// SASL SCRAM-SHA-256.
    pub fn scram_sha256(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credentials::sasl(SaslMechanism::ScramSha256, username, password)
    }

    /// SASL SCRAM-SHA-512.
    pub fn scram_sha512(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credentials::sasl(SaslMechanism::ScramSha512, username, password)
    }

    /// SASL OAUTHBEARER with tokens from `provider`.
    pub fn oauth_bearer(provider: impl TokenProvider) -> Self {
        Credentials {
            tls: None,
            sasl: Some(Sasl::OAuthBearer(Arc::new(provider))),
        }
    }

    /// SASL GSSAPI (Kerberos) to brokers of service `service_name` (Faust's
    /// default is `kafka`).
    pub fn gssapi(service_name: impl Into<String>) -> Self {
        Credentials {
            tls: None,
            sasl: Some(Sasl::Gssapi {
                service_name: service_name.into(),
                principal: None,
                keytab: None,
            }),
        }
    }

    /// The same, over TLS.
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Kafka's name for the protocol: `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`
    /// (or `PLAINTEXT` for empty credentials).
    pub fn security_protocol(&self) -> &'static str {
        match (&self.tls, &self.sasl) {
            (None, None) => "PLAINTEXT",
            (Some(_), None) => "SSL",
            (None, Some(_)) => "SASL_PLAINTEXT",
            (Some(_), Some(_)) => "SASL_SSL",
        }
    }

    /// The OAUTHBEARER token provider, if that is the mechanism.
    pub fn token_provider(&self) -> Option<&Arc<dyn TokenProvider>> {
        match &self.sasl {
            Some(Sasl::OAuthBearer(p)) => Some(p),
            _ => None,
        }
    }

    /// Check what can be checked without a broker: files exist, names are
    /// not empty.
    pub fn validate(&self) -> Result<()> {
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        match &self.sasl {
            Some(Sasl::Password {
                mechanism,
                username,
                ..
            }) if username.trim().is_empty() => Err(Error::config(
                SETTING,
                format!("SASL {mechanism} needs a user name"),
            )),
            Some(Sasl::Gssapi { service_name, .. }) if service_name.trim().is_empty() => Err(
                Error::config(SETTING, "GSSAPI needs the brokers' Kerberos service name"),
            ),
            Some(Sasl::Gssapi {
                keytab: Some(keytab),
                ..
            }) => readable("keytab", keytab),
            _ => Ok(()),
        }
    }

    /// Credentials from `FAUSTUS_BROKER_SASL_*` and `FAUSTUS_BROKER_SSL_*`
    /// variables (see the [module docs](self)); `None` when none is set. A
    /// missing or contradictory variable is an error naming it (never its
    /// value when it is a secret).
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Option<Credentials>> {
        let get = |name: &str| {
            env.get(&format!("FAUSTUS_BROKER_{name}"))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let var_error = |name: &str, message: String| {
            Error::config(
                SETTING,
                format!("{message} (from environment variable FAUSTUS_BROKER_{name})"),
            )
        };
        let ssl_enabled = match get("SSL_ENABLED") {
            None => None,
            Some(v) => Some(parse_bool(v).map_err(|m| var_error("SSL_ENABLED", m))?),
        };
        let mut tls = Tls::new();
        let mut any_tls = false;
        if let Some(ca) = get("SSL_CAFILE") {
            tls.ca_file = Some(ca.into());
            any_tls = true;
        }
        if let Some(cert) = get("SSL_CERTFILE") {
            tls.cert_file = Some(cert.into());
            any_tls = true;
        }
        if let Some(key) = get("SSL_KEYFILE") {
            tls.key_file = Some(key.into());
            any_tls = true;
        }
        if let Some(pw) = get("SSL_KEY_PASSWORD") {
            tls.key_password = Some(Secret::new(pw));
            any_tls = true;
        }
        if let Some(check) = get("SSL_CHECK_HOSTNAME") {
            tls.check_hostname =
                parse_bool(check).map_err(|m| var_error("SSL_CHECK_HOSTNAME", m))?;
            any_tls = true;
        }
        let tls = match ssl_enabled {
            Some(false) if any_tls => {
                return Err(var_error(
                    "SSL_ENABLED",
                    "is false, but other FAUSTUS_BROKER_SSL_* variables are set".into(),
                ))
            }
            Some(false) => None,
            Some(true) => Some(tls),
            None => any_tls.then_some(tls),
        };
        let username = get("SASL_USERNAME");
        let password = get("SASL_PASSWORD");
        let mechanism = match get("SASL_MECHANISM") {
            Some(m) => Some(
                m.parse::<SaslMechanism>()
                    .map_err(|e| var_error("SASL_MECHANISM", e))?,
            ),
            None if username.is_some() || password.is_some() => Some(SaslMechanism::Plain),
            None => None,
        };
        let sasl = match mechanism {
            None => None,
            Some(m @ (SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512)) => {
                let Some(username) = username else {
                    return Err(var_error("SASL_USERNAME", format!("is not set, and SASL {m} needs it")));
                };
                let Some(password) = password else {
                    return Err(var_error("SASL_PASSWORD", format!("is not set, and SASL {m} needs it")));
                };
                Some(Sasl::Password {
                    mechanism: m,
                    username: username.to_string(),
                    password: Secret::new(password),
                })
            }
            Some(SaslMechanism::OAuthBearer) => {
                return Err(var_error(
                    "SASL_MECHANISM",
                    "is OAUTHBEARER, whose tokens come from code: use AppBuilder::broker_credentials(Credentials::oauth_bearer(..))".into(),
                ))
            }
            Some(SaslMechanism::Gssapi) => Some(Sasl::Gssapi {
                service_name: get("KERBEROS_SERVICE_NAME").unwrap_or("kafka").to_string(),
                principal: None,
                keytab: None,
            }),
        };
        if tls.is_none() && sasl.is_none() {
            return Ok(None);
        }
        Ok(Some(Credentials { tls, sasl }))
    }
}

/// A boolean as settings and environment variables spell it (`1`/`0`,
/// `true`/`false`, `yes`/`no`, `on`/`off`); shared with `settings`.
pub(crate) fn parse_bool(v: &str) -> std::result::Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {v:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn protocols() {
        assert_eq!(Credentials::tls(Tls::new()).security_protocol(), "SSL");
        assert_eq!(
            Credentials::plain("u", "p").security_protocol(),
            "SASL_PLAINTEXT"
        );
        assert_eq!(
            Credentials::scram_sha256("u", "p")
                .with_tls(Tls::new())
                .security_protocol(),
            "SASL_SSL"
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = Credentials::scram_sha512("alice", "hunter2").with_tls(
            Tls::new()
                .client_cert("/c.pem", "/k.pem")
                .key_password("keypass"),
        );
        let shown = format!("{c:?} {c:#?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("keypass"),
            "{shown}"
        );
        assert!(
            shown.contains("alice") && shown.contains("<redacted>"),
            "{shown}"
        );
        let provider =
            || -> Result<OAuthToken> { Ok(OAuthToken::new("tok3n", "p", SystemTime::now())) };
        let o = Credentials::oauth_bearer(provider);
        let token = o.token_provider().unwrap().token().unwrap();
        assert!(!format!("{o:?} {token:?}").contains("tok3n"));
        assert_eq!(token.value.expose(), "tok3n");
    }

    #[test]
    fn mechanisms_parse() {
        assert_eq!("scram-sha-256".parse(), Ok(SaslMechanism::ScramSha256));
        assert_eq!("SCRAM_SHA_512".parse(), Ok(SaslMechanism::ScramSha512));
        assert_eq!("plain".parse(), Ok(SaslMechanism::Plain));
        let e = "KERBEROS".parse::<SaslMechanism>().unwrap_err();
        assert!(e.contains("SCRAM-SHA-256"), "{e}");
    }

    #[test]
    fn from_env() {
        assert_eq!(Credentials::from_env(&env(&[])).unwrap(), None);
        let c = Credentials::from_env(&env(&[
            ("FAUSTUS_BROKER_SASL_USERNAME", "u"),
            ("FAUSTUS_BROKER_SASL_PASSWORD", "p"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c, Credentials::plain("u", "p"));
        let c = Credentials::from_env(&env(&[
            ("FAUSTUS_BROKER_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("FAUSTUS_BROKER_SASL_USERNAME", "u"),
            ("FAUSTUS_BROKER_SASL_PASSWORD", "p"),
            ("FAUSTUS_BROKER_SSL_CAFILE", "/ca.pem"),
            ("FAUSTUS_BROKER_SSL_CHECK_HOSTNAME", "false"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            c,
            Credentials::scram_sha512("u", "p")
                .with_tls(Tls::new().ca_file("/ca.pem").check_hostname(false))
        );
        let c = Credentials::from_env(&env(&[("FAUSTUS_BROKER_SSL_ENABLED", "yes")]))
            .unwrap()
            .unwrap();
        assert_eq!(c, Credentials::tls(Tls::new()));
        let c = Credentials::from_env(&env(&[("FAUSTUS_BROKER_SASL_MECHANISM", "GSSAPI")]))
            .unwrap()
            .unwrap();
        assert_eq!(c, Credentials::gssapi("kafka"));

        for (vars, names) in [
            (
                vec![
                    ("FAUSTUS_BROKER_SASL_MECHANISM", "SCRAM-SHA-256"),
                    ("FAUSTUS_BROKER_SASL_USERNAME", "u"),
                ],
                "FAUSTUS_BROKER_SASL_PASSWORD",
            ),
            (
                vec![("FAUSTUS_BROKER_SASL_PASSWORD", "topsecret")],
                "FAUSTUS_BROKER_SASL_USERNAME",
            ),
            (
                vec![("FAUSTUS_BROKER_SASL_MECHANISM", "OAUTHBEARER")],
                "broker_credentials(Credentials::oauth_bearer",
            ),
            (
                vec![("FAUSTUS_BROKER_SASL_MECHANISM", "LOGIN")],
                "FAUSTUS_BROKER_SASL_MECHANISM",
            ),
            (
                vec![
                    ("FAUSTUS_BROKER_SSL_ENABLED", "no"),
                    ("FAUSTUS_BROKER_SSL_CAFILE", "/ca.pem"),
                ],
                "FAUSTUS_BROKER_SSL_ENABLED",
            ),
        ] {
            let e = Credentials::from_env(&env(&vars)).unwrap_err().to_string();
            assert!(e.contains(names) && e.contains("broker_credentials"), "{e}");
            assert!(!e.contains("topsecret"), "{e}");
        }
    }

    #[test]
    fn validate_checks_files_and_names() {
        let dir = std::env::temp_dir();
        let missing = dir.join(format!("faustus-no-such-ca-{}.pem", std::process::id()));
        let e = Credentials::tls(Tls::new().ca_file(&missing))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CA file") && e.contains(&missing.display().to_string()),
            "{e}"
        );
        let e = Credentials::plain(" ", "p")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("user name"), "{e}");
        let mut half = Tls::new();
        half.key_file = Some(std::env::current_exe().unwrap());
        let e = Credentials::tls(half).validate().unwrap_err().to_string();
        assert!(e.contains("both"), "{e}");
        Credentials::scram_sha256("u", "p")
            .with_tls(Tls::new().ca_file(std::env::current_exe().unwrap()))
            .validate()
            .unwrap();
    }
}
