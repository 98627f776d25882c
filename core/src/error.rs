//! The one error type of Faustus.
//!
//! Every fallible public function returns [`Result`]. Variants are semantic
//! (what went wrong and where), so callers can react to them and logs name the
//! topic, partition, offset, setting or URL involved.

use std::fmt;

/// Result with the Faustus [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed source error carried by [`Error::Backend`] and friends.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a message came from: used in decode errors and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Coordinates {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// Offset of the message in its partition.
    pub offset: i64,
}

impl fmt::Display for Coordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

/// Which half of a message failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The message key.
    Key,
    /// The message value.
    Value,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Key => "key",
            Field::Value => "value",
        })
    }
}

/// What kind of driver a scheme was looked up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverKind {
    /// A message transport (`broker` setting).
    Transport,
    /// A table store (`store` setting).
    Store,
    /// A web server (`web` setting).
    Web,
    /// A codec (serializer name).
    Codec,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriverKind::Transport => "transport",
            DriverKind::Store => "store",
            DriverKind::Web => "web driver",
            DriverKind::Codec => "codec",
        })
    }
}

/// The error of every Faustus operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No driver is registered for a URL scheme.
    #[error("unknown {kind} scheme {scheme:?} in {url:?}; known schemes: {}", if known.is_empty() { "none (no drivers are registered: build the app with faustus::app(..) or call faustus::install_default_drivers())".to_string() } else { known.join(", ") })]
    UnknownScheme {
        /// Transport, store, web or codec.
        kind: DriverKind,
        /// The scheme that was asked for.
        scheme: String,
        /// The whole URL (or codec name).
        url: String,
        /// The schemes that are registered.
        known: Vec<String>,
    },
    /// The scheme exists but its cargo feature is not enabled in this build.
    #[error("{kind} scheme {scheme:?} needs the cargo feature {feature:?} of the `faustus` crate")]
    FeatureDisabled {
        /// Transport, store, web or codec.
        kind: DriverKind,
        /// The scheme that was asked for.
        scheme: String,
        /// The feature that provides it.
        feature: String,
    },
    /// A setting (or driver URL option) has a value that cannot be used.
    #[error("invalid setting `{setting}`: {message}")]
    Config {
        /// The setting name, e.g. `broker_commit_interval` or `redb.cache_mb`.
        setting: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A key or value could not be decoded.
    #[error("cannot decode {field} of message at {at}: {message}")]
    Decode {
        /// Key or value.
        field: Field,
        /// Topic, partition and offset of the message.
        at: Coordinates,
        /// What the codec said.
        message: String,
    },
    /// A windowed table built with `relative_to_field` could not read its
    /// time from the value of the event being processed.
    #[error("windowed table {table:?} cannot take its time from the value of message at {at}: {message}")]
    EventTime {
        /// Table name.
        table: String,
        /// Topic, partition and offset of the message.
        at: Coordinates,
        /// What went wrong (the decode error, with the type and codec).
        message: String,
    },
    /// A key or value could not be encoded for sending.
    #[error("cannot encode {field} for topic {topic:?} with codec {codec:?}: {message}")]
    Encode {
        /// Key or value.
        field: Field,
        /// Destination topic or table.
        topic: String,
        /// Codec name.
        codec: String,
        /// What the codec said.
        message: String,
    },
    /// A codec failed outside a message context (e.g. in a test).
    #[error("codec {codec:?}: {message}")]
    Codec {
        /// Codec name.
        codec: String,
        /// What went wrong.
        message: String,
    },
    /// A table was written outside of a stream event, so its partition is unknown.
    #[error("table {table:?} written outside of a stream event: writes must happen while processing an event (its partition is the event's), or use a write that names the partition")]
    NoCurrentEvent {
        /// Table name.
        table: String,
    },
    /// A table partition is not served by this worker.
    #[error("table {table:?} partition {partition} is not assigned to this worker")]
    PartitionNotAssigned {
        /// Table name.
        table: String,
        /// Partition number.
        partition: u32,
    },
    /// Something named does not exist (topic, table, agent, partition…).
    #[error("{what} not found: {name}")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The app was used in a way its lifecycle does not allow.
    #[error("{0}")]
    State(String),
    /// An operation did not finish in time.
    #[error("timed out after {after:?}: {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: std::time::Duration,
    },
    /// The component has shut down.
    #[error("{0} is closed")]
    Closed(String),
    /// An agent, task or timer failed.
    #[error("{what} failed: {message}")]
    Task {
        /// Agent/task name (and event coordinates when known).
        what: String,
        /// The error or panic message.
        message: String,
    },
    /// A driver (transport, store, web) failed.
    #[error("{backend}: {source}")]
    Backend {
        /// Driver name, e.g. `memory`, `kafka`, `redb`.
        backend: String,
        /// Whether retrying the operation may succeed.
        retryable: bool,
        /// The driver's own error.
        #[source]
        source: BoxError,
    },
    /// An I/O error with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A configuration error for `setting`.
    pub fn config(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            setting: setting.into(),
            message: message.into(),
        }
    }

    /// Any other error (e.g. from user code in an agent), kept as the source.
    pub fn other(source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend: "app".into(),
            retryable: false,
            source: source.into(),
        }
    }

    /// A driver error that is not worth retrying.
    pub fn backend(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend: backend.into(),
            retryable: false,
            source: source.into(),
        }
    }

    /// A driver error that may go away when retried (broker unavailable, timeout).
    pub fn retryable(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend: backend.into(),
            retryable: true,
            source: source.into(),
        }
    }

    /// Whether retrying the failed operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Backend { retryable, .. } => *retryable,
            Error::Timeout { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheme_lists_known() {
        let e = Error::UnknownScheme {
            kind: DriverKind::Transport,
            scheme: "kafak".into(),
            url: "kafak://x".into(),
            known: vec!["kafka".into(), "memory".into()],
        };
        let s = e.to_string();
        assert!(s.contains("kafak"), "{s}");
        assert!(s.contains("kafka, memory"), "{s}");
    }

    #[test]
    fn decode_error_names_coordinates() {
        let e = Error::Decode {
            field: Field::Value,
            at: Coordinates {
                topic: "posts".into(),
                partition: 3,
                offset: 42,
            },
            message: "expected value".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot decode value of message at posts[3]@42: expected value"
        );
    }

    #[test]
    fn retryable_is_reported() {
        assert!(Error::retryable("kafka", "broker down").is_retryable());
        assert!(!Error::backend("kafka", "bad").is_retryable());
        assert!(!Error::config("x", "y").is_retryable());
    }
}
