//! librdkafka logs and client errors routed to `tracing`.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// Log a librdkafka log line through `tracing` (target `librdkafka`).
pub(crate) fn log(client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
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

/// Log a client-level error (broker down, all brokers down …). These are
/// reports, not failures of an operation: librdkafka keeps retrying.
pub(crate) fn client_error(client: &str, url: &str, error: &KafkaError, reason: &str) {
    tracing::warn!(target: "librdkafka", client, url, error = %error, "{reason}");
}

/// The context of producers, admin clients and probe consumers.
#[derive(Clone, Debug)]
pub(crate) struct LogContext {
    pub(crate) client: String,
    pub(crate) url: String,
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(&self.client, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&self.client, &self.url, &error, reason);
    }
}

impl ConsumerContext for LogContext {}
