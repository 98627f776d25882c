//! librdkafka errors converted into the Faustus error at the crate edge.

use faustus_core::Error;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What the driver was doing when librdkafka failed, with librdkafka's error.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub(crate) struct OpError {
    pub(crate) what: String,
    #[source]
    pub(crate) source: KafkaError,
}

/// A driver-level failure without a librdkafka error behind it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Message(pub(crate) String);

/// Whether a librdkafka error code may go away when the operation is retried.
pub(crate) fn code_is_retryable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::MessageTimedOut
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::TimedOutQueue
            | C::QueueFull
            | C::Resolve
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::RebalanceInProgress
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::WaitingForCoordinator
            | C::UnknownLeaderEpoch
            | C::FencedLeaderEpoch
            | C::NotController
            | C::InProgress
    )
}

/// Whether a librdkafka error may go away when the operation is retried.
pub(crate) fn is_retryable(e: &KafkaError) -> bool {
    match e {
        KafkaError::MessageConsumptionFatal(_) => false,
        KafkaError::Canceled => true,
        other => other.rdkafka_error_code().is_some_and(code_is_retryable),
    }
}

/// Convert a librdkafka error met while doing `what`.
pub(crate) fn kafka(what: impl Into<String>, source: KafkaError) -> Error {
    let retryable = is_retryable(&source);
    Error::Backend {
        backend: crate::SCHEME.to_string(),
        retryable,
        source: Box::new(OpError {
            what: what.into(),
            source,
        }),
    }
}

/// A driver error with a message only.
pub(crate) fn message(retryable: bool, text: impl Into<String>) -> Error {
    Error::Backend {
        backend: crate::SCHEME.to_string(),
        retryable,
        source: Box::new(Message(text.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let e = kafka(
            "commit",
            KafkaError::ConsumerCommit(RDKafkaErrorCode::CoordinatorNotAvailable),
        );
        assert!(e.is_retryable());
        assert!(e.to_string().starts_with("kafka: commit:"), "{e}");
        let e = kafka(
            "send",
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        assert!(!e.is_retryable());
        assert!(message(true, "x").is_retryable());
    }
}
