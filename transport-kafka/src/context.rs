//! librdkafka logs and client errors routed to `tracing`.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Whether a librdkafka warning is only informational: a CONFWARN that a
/// property of the other client kind is ignored (the driver gives each
/// client only its own properties, so this should not happen at all).
fn informational(fac: &str, message: &str) -> bool {
    fac == "CONFWARN" && message.contains(" property and will be ignored by this ")
}

/// Log a librdkafka log line through `tracing` (target `librdkafka`).
pub(crate) fn log(client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    let level = match level {
        RDKafkaLogLevel::Warning if informational(fac, message) => RDKafkaLogLevel::Debug,
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

/// Log a client-level error (broker down, all brokers down …). These are
/// reports, not failures of an operation: librdkafka keeps retrying.
pub(crate) fn client_error(client: &str, url: &str, error: &KafkaError, reason: &str) {
    match error.rdkafka_error_code() {
        // A consumer with `enable.partition.eof` (the high-water-mark probe)
        // reaching a partition's end: what it asked for, not a failure.
        Some(RDKafkaErrorCode::PartitionEOF) => {
            tracing::debug!(target: "librdkafka", client, url, error = %error, "{reason}")
        }
        _ => tracing::warn!(target: "librdkafka", client, url, error = %error, "{reason}"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
