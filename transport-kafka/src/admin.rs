//! Topic administration and the start-up connection check.
//!
//! librdkafka clients connect lazily and retry forever, so a wrong broker URL
//! would only show as silence. Before the first producer, consumer or admin
//! call, the transport asks for cluster metadata, retrying with backoff and
//! logging the URL each time, and fails with a retryable error naming the
//! URL when no broker answered within `connect_timeout_ms` — or at once,
//! with librdkafka's reason, when a TLS handshake or SASL authentication
//! failed (an untrusted certificate, a wrong password: retrying does not
//! cure them).
//!
//! Metadata comes from a producer-type client whose events a thread serves
//! (rdkafka's `FutureProducer`), so its errors reach the log and it gets
//! OAUTHBEARER tokens; rdkafka 0.39's `AdminClient` serves neither, so it is
//! made only to create topics, and not at all with OAUTHBEARER (it could
//! never authenticate: fede1024/rust-rdkafka#757), where `create_topic`
//! only checks that the topic exists.

use std::sync::Arc;
use std::time::Duration;

use faustus_core::transport::TopicSpec;
use faustus_core::{Error, Result};
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, Producer as _};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::config::{ClientRole, KafkaConfig};
use crate::context::{LogContext, Shared};
use crate::error;

type Client = Arc<AdminClient<LogContext>>;
type MetadataClient = FutureProducer<LogContext>;

/// The transport's admin client and connection state.
pub(crate) struct Admin {
    config: Arc<KafkaConfig>,
    shared: Arc<Shared>,
    client: Mutex<Option<Client>>,
    metadata_client: Mutex<Option<MetadataClient>>,
    ready: OnceCell<()>,
}

impl Admin {
    pub(crate) fn new(config: Arc<KafkaConfig>, shared: Arc<Shared>) -> Self {
        Admin {
            config,
            shared,
            client: Mutex::new(None),
            metadata_client: Mutex::new(None),
            ready: OnceCell::new(),
        }
    }

    fn client(&self) -> Result<Client> {
        let mut guard = self.client.lock();
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let mut config = self.config.client_config(ClientRole::Admin);
        config.set("client.id", "faustus-admin");
        let client: AdminClient<LogContext> = config
            .create_with_context(LogContext::new("faustus-admin", &self.shared))
            .map_err(|e| error::kafka("create the admin client", e))?;
        let client = Arc::new(client);
        *guard = Some(client.clone());
        Ok(client)
    }

    fn metadata_client(&self) -> Result<MetadataClient> {
        let mut guard = self.metadata_client.lock();
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let mut config = self.config.client_config(ClientRole::Admin);
        config.set("client.id", "faustus-metadata");
        let client: MetadataClient = config
            .create_with_context(LogContext::new("faustus-metadata", &self.shared))
            .map_err(|e| error::kafka("create the metadata client", e))?;
        *guard = Some(client.clone());
        Ok(client)
    }

    /// Cluster metadata (all topics: asking for one topic could auto-create it).
    async fn metadata(&self, timeout: Duration) -> Result<Metadata> {
        let client = self.metadata_client()?;
        tokio::task::spawn_blocking(move || client.client().fetch_metadata(None, timeout))
            .await
            .map_err(|e| error::message(false, format!("metadata task failed: {e}")))?
            .map_err(|e| error::kafka("fetch cluster metadata", e))
    }

    /// Whether the admin client can authenticate (not with OAUTHBEARER).
    fn admin_can_authenticate(&self) -> bool {
        self.shared.tokens.is_none()
            && !self.config.librdkafka.iter().any(|(k, v)| {
                k.starts_with("sasl.mechanism") && v.eq_ignore_ascii_case("OAUTHBEARER")
            })
    }

    /// Wait until a broker answers (once per transport; a failure is retried
    /// by the next call).
    pub(crate) async fn ready(&self) -> Result<()> {
        self.ready
            .get_or_try_init(|| async {
                let started = Instant::now();
                let limit = self.config.connect_timeout;
                let mut backoff = Duration::from_millis(100);
                let mut attempt = 1u32;
                loop {
                    let left = limit.saturating_sub(started.elapsed());
                    let timeout = left.clamp(Duration::from_millis(100), Duration::from_secs(5));
                    match self.metadata(timeout).await {
                        Ok(_) => {
                            self.shared.broker_answered();
                            if attempt > 1 {
                                tracing::info!(url = %self.config.url, attempt, "connected to Kafka");
                            }
                            return Ok(());
                        }
                        Err(e) => {
                            if let Some(reason) = self.shared.take_auth_failure() {
                                return Err(error::message(
                                    false,
                                    format!(
                                        "cannot connect to Kafka at {}: {reason}",
                                        self.config.url
                                    ),
                                ));
                            }
                            if started.elapsed() + backoff >= limit {
                                let broker = self
                                    .shared
                                    .last_error()
                                    .map(|r| format!("; the broker connection said: {r}"))
                                    .unwrap_or_default();
                                return Err(error::message(
                                    true,
                                    format!(
                                        "no Kafka broker of {} answered within {limit:?} ({attempt} attempts); last error: {e}{broker}",
                                        self.config.url
                                    ),
                                ));
                            }
                            tracing::warn!(url = %self.config.url, attempt, error = %e, retry_in = ?backoff, "Kafka broker not reachable yet; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            attempt += 1;
                        }
                    }
                }
            })
            .await
            .map(|_| ())
    }

    /// Whether a broker answers now (a metadata request, at most 5 s).
    pub(crate) async fn check(&self) -> Result<()> {
        let timeout = self.config.operation_timeout.min(Duration::from_secs(5));
        match self.metadata(timeout).await {
            Ok(_) => {
                self.shared.broker_answered();
                Ok(())
            }
            Err(e) => Err(match self.shared.take_auth_failure() {
                Some(reason) => error::message(false, format!("{e}; {reason}")),
                None => e,
            }),
        }
    }

    pub(crate) async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        self.ready().await?;
        let metadata = self.metadata(self.config.operation_timeout).await?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| u32::try_from(t.partitions().len()).unwrap_or(u32::MAX)))
    }

    pub(crate) async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        if spec.partitions == 0 {
            return Err(Error::config(
                "topic_partitions",
                format!(
                    "topic {:?} needs at least 1 partition, asked for 0",
                    spec.name
                ),
            ));
        }
        self.ready().await?;
        if !self.admin_can_authenticate() {
            return self.check_existing(spec).await;
        }
        let client = self.client()?;
        let retention = spec.retention.map(|r| r.as_millis().to_string());
        let mut topic = NewTopic::new(
            &spec.name,
            i32::try_from(spec.partitions).unwrap_or(i32::MAX),
            TopicReplication::Fixed(i32::from(spec.replicas.max(1))),
        )
        .set("cleanup.policy", spec.cleanup_policy());
        if let Some(ms) = &retention {
            topic = topic.set("retention.ms", ms);
        }
        for (k, v) in &spec.config {
            topic = topic.set(k, v);
        }
        let options = AdminOptions::new()
            .operation_timeout(Some(self.config.operation_timeout))
            .request_timeout(Some(self.config.operation_timeout));
        let results = client
            .create_topics([&topic], &options)
            .await
            .map_err(|e| error::kafka(format!("create topic {:?}", spec.name), e))?;
        for result in results {
            match result {
                Ok(_) => {
                    tracing::info!(topic = %spec.name, partitions = spec.partitions, policy = spec.cleanup_policy(), "created topic");
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    return self.check_existing(spec).await;
                }
                Err((name, code)) => {
                    return Err(Error::Backend {
                        backend: crate::SCHEME.into(),
                        retryable: error::code_is_retryable(code),
                        source: Box::new(error::Message(format!(
                            "create topic {name:?} ({} partitions, replication {}): {code}",
                            spec.partitions, spec.replicas
                        ))),
                    });
                }
            }
        }
        Ok(())
    }

    /// The topic exists: fine when its partition count is the one needed.
    async fn check_existing(&self, spec: &TopicSpec) -> Result<()> {
        let deadline = Instant::now() + self.config.operation_timeout;
        loop {
            match self.partition_count(&spec.name).await? {
                Some(n) if n == spec.partitions => return Ok(()),
                Some(n) => {
                    return Err(Error::config(
                        "topic_partitions",
                        format!(
                            "topic {:?} exists with {n} partitions, but {} are needed; delete it or configure {n} partitions",
                            spec.name, spec.partitions
                        ),
                    ))
                }
                None if !self.admin_can_authenticate() => {
                    return Err(Error::config(
                        "broker_credentials",
                        format!(
                            "topic {:?} does not exist, and with SASL OAUTHBEARER it cannot be created here (rdkafka's admin client does not authenticate with tokens): create it beforehand with {} partitions",
                            spec.name, spec.partitions
                        ),
                    ))
                }
                // Just created by someone else; metadata has not caught up.
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => {
                    return Err(error::message(
                        true,
                        format!(
                            "topic {:?} already exists but the cluster metadata does not list it",
                            spec.name
                        ),
                    ))
                }
            }
        }
    }
}
