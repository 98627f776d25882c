//! What every librdkafka client of a transport shares through its context:
//! logs and client errors routed to `tracing`, OAUTHBEARER tokens from the
//! credentials' provider, and the last authentication or TLS failure (which
//! the start-up connection check reports instead of waiting).

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use faustus_core::credentials::TokenProvider;
use parking_lot::Mutex;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// State shared by the contexts of one transport's clients.
pub(crate) struct Shared {
    /// The broker URL, secrets redacted.
    pub(crate) url: String,
    /// OAUTHBEARER's token provider, if that is the mechanism.
    pub(crate) tokens: Option<Arc<dyn TokenProvider>>,
    /// librdkafka's reason for the last failed authentication or TLS
    /// handshake, until a connection check reads it.
    auth_failure: Mutex<Option<String>>,
    /// librdkafka's reason for the last client-level error of any kind.
    last_error: Mutex<Option<String>>,
    /// The clients that warned of a lost broker connection since a broker
    /// last answered: each says so once per outage, not at every retry.
    outage: Mutex<std::collections::HashSet<String>>,
}

impl Shared {
    pub(crate) fn new(url: String, tokens: Option<Arc<dyn TokenProvider>>) -> Arc<Self> {
        Arc::new(Shared {
            url,
            tokens,
            auth_failure: Mutex::new(None),
            last_error: Mutex::new(None),
            outage: Mutex::new(Default::default()),
        })
    }

    /// A broker answered (a metadata request succeeded): the next lost
    /// connection is news again.
    pub(crate) fn broker_answered(&self) {
        let mut outage = self.outage.lock();
        if !outage.is_empty() {
            outage.clear();
            *self.last_error.lock() = None;
        }
    }

    /// Whether a connection error of `client` is news: the first of this
    /// outage for that client (then logged at warn), or a repeat (debug).
    pub(crate) fn connection_error_is_news(&self, client: &str) -> bool {
        self.outage.lock().insert(client.to_string())
    }

    /// The last authentication or TLS failure reported, if any (cleared).
    pub(crate) fn take_auth_failure(&self) -> Option<String> {
        self.auth_failure.lock().take()
    }

    /// The last client-level error reported, if any.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// A token for librdkafka from the provider.
    pub(crate) fn oauth_token(
        &self,
        client: &str,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let Some(provider) = &self.tokens else {
            return Err("SASL OAUTHBEARER is configured in the URL, but broker_credentials give no token provider (Credentials::oauth_bearer)".into());
        };
        match provider.token() {
            Ok(token) => {
                let lifetime_ms = token
                    .expires_at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    .unwrap_or(0);
                tracing::debug!(target: "librdkafka", client, principal = %token.principal, "OAUTHBEARER token from the provider");
                Ok(OAuthToken {
                    token: token.value.expose().to_string(),
                    principal_name: token.principal,
                    lifetime_ms,
                })
            }
            Err(e) => {
                tracing::warn!(target: "librdkafka", client, url = %self.url, error = %e, "the OAUTHBEARER token provider failed");
                Err(format!("the OAUTHBEARER token provider failed: {e}").into())
            }
        }
    }

    /// Log a client-level error (broker down, all brokers down …). These
    /// are reports, not failures of an operation: librdkafka keeps
    /// retrying. Authentication and TLS failures are also kept for the
    /// connection check.
    pub(crate) fn client_error(&self, client: &str, error: &KafkaError, reason: &str) {
        let url = self.url.as_str();
        match error.rdkafka_error_code() {
            // A consumer with `enable.partition.eof` (the high-water-mark probe)
            // reaching a partition's end: what it asked for, not a failure.
            Some(RDKafkaErrorCode::PartitionEOF) => {
                tracing::debug!(target: "librdkafka", client, url, error = %error, "{reason}")
            }
            code => {
                if is_auth_failure(code, reason) {
                    *self.auth_failure.lock() = Some(reason.to_string());
                }
                *self.last_error.lock() = Some(reason.to_string());
                if is_connection_error(code) && !self.connection_error_is_news(client) {
                    tracing::debug!(target: "librdkafka", client, url, error = %error, "{reason}")
                } else {
                    tracing::warn!(target: "librdkafka", client, url, error = %error, "{reason}")
                }
            }
        }
    }
}

/// Errors that mean the broker cannot be reached (librdkafka retries).
pub(crate) fn is_connection_error(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
        )
    )
}

/// Errors that retrying with the same settings does not cure: a failed TLS
/// handshake (untrusted certificate …), a TLS alert from the broker (e.g.
/// it wants a client certificate), or failed SASL authentication. A
/// connection merely reset during the handshake is not one of them.
fn is_auth_failure(code: Option<RDKafkaErrorCode>, reason: &str) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::UnsupportedSASLMechanism
                | RDKafkaErrorCode::IllegalSASLState
        )
    ) || reason.contains("SSL alert")
        || reason.contains("certificate verify failed")
}

/// Whether a librdkafka warning is only informational: a CONFWARN that a
/// property of the other client kind is ignored (the driver gives each
/// client only its own properties, so this should not happen at all), or a
/// topic missing from the metadata cache.
fn informational(fac: &str, message: &str) -> bool {
    (fac == "CONFWARN" && message.contains(" property and will be ignored by this "))
        // A reader of a topic the broker lost asks for its metadata every
        // few hundred ms until the worker heals (restarting its readers).
        || (fac == "METADATAUPDATE" && message.contains("not found in cache"))
}

/// Log a librdkafka log line through `tracing` (target `librdkafka`).
pub(crate) fn log(shared: &Shared, client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    let level = match level {
        RDKafkaLogLevel::Warning if informational(fac, message) => RDKafkaLogLevel::Debug,
        // A failed connection (librdkafka retries it): a warning, once per
        // outage and client, like the connection errors.
        RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning if fac == "FAIL" => {
            if shared.connection_error_is_news(client) {
                RDKafkaLogLevel::Warning
            } else {
                RDKafkaLogLevel::Debug
            }
        }
        other => other,
    };
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client, facility = fac, "{message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", client, facility = fac, "{message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client, facility = fac, "{message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", client, facility = fac, "{message}")
        }
    }
}

/// The context of producers, admin clients and probe consumers.
#[derive(Clone)]
pub(crate) struct LogContext {
    pub(crate) client: String,
    pub(crate) shared: Arc<Shared>,
    /// The last error reported and when: rdkafka 0.39's producers pass each
    /// error event to `error` twice (`Client::poll_event` and
    /// `BaseProducer::handle_error_event`), logged once.
    last: Arc<Mutex<Option<(String, Instant)>>>,
}

impl LogContext {
    pub(crate) fn new(client: impl Into<String>, shared: &Arc<Shared>) -> Self {
        LogContext {
            client: client.into(),
            shared: shared.clone(),
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// Whether this error repeats the one just reported (the same event).
    fn repeated(&self, error: &KafkaError, reason: &str) -> bool {
        let key = format!("{error}|{reason}");
        let now = Instant::now();
        let mut last = self.last.lock();
        let repeat = matches!(&*last, Some((k, at)) if *k == key && now.duration_since(*at) < Duration::from_millis(50));
        *last = Some((key, now));
        repeat
    }
}

impl ClientContext for LogContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(&self.shared, &self.client, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if !self.repeated(&error, reason) {
            self.shared.client_error(&self.client, &error, reason);
        }
    }

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.shared.oauth_token(&self.client)
    }
}

impl ConsumerContext for LogContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_are_told_from_passing_trouble() {
        assert!(is_auth_failure(
            Some(RDKafkaErrorCode::Authentication),
            "SASL authentication error"
        ));
        assert!(is_auth_failure(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "Receive failed: error:0A00045C:SSL routines::tlsv13 alert certificate required: SSL alert number 116"
        ));
        assert!(!is_auth_failure(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "SSL handshake failed: Disconnected: connection reset by peer"
        ));
        assert!(!is_auth_failure(
            Some(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down"
        ));
    }

    #[test]
    fn an_error_passed_twice_in_a_row_is_reported_once() {
        let ctx = LogContext::new("p", &Shared::new("kafka://h".into(), None));
        let e = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        assert!(!ctx.repeated(&e, "1/1 brokers are down"));
        assert!(ctx.repeated(&e, "1/1 brokers are down"));
        assert!(!ctx.repeated(&e, "0/1 brokers are down"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!ctx.repeated(&e, "0/1 brokers are down"));
    }

    #[test]
    fn a_lost_broker_is_news_once_per_client_and_outage() {
        let shared = Shared::new("kafka://h".into(), None);
        assert!(shared.connection_error_is_news("consumer"));
        assert!(!shared.connection_error_is_news("consumer"));
        assert!(shared.connection_error_is_news("producer"));
        shared.broker_answered();
        assert!(shared.connection_error_is_news("consumer"));
        assert!(is_connection_error(Some(RDKafkaErrorCode::AllBrokersDown)));
        assert!(!is_connection_error(Some(RDKafkaErrorCode::Authentication)));
    }

    #[test]
    fn confwarns_about_the_other_client_kind_are_informational() {
        assert!(informational(
            "CONFWARN",
            "[thrd:app]: Configuration property acks is a producer property and will be ignored by this consumer instance"
        ));
        assert!(!informational(
            "CONFWARN",
            "[thrd:app]: Configuration property queue.buffering.max.ms is deprecated"
        ));
        assert!(!informational("FAIL", "will be ignored by this"));
    }
}
