//! The producer: an rdkafka `ThreadedProducer` behind the [`Producer`] trait.
//!
//! librdkafka batches records per partition (`linger.ms`, `batch.size`) and
//! reports each delivery on the producer's polling thread, so `send` never
//! blocks the async runtime: it enqueues and returns a [`Delivery`] that
//! resolves with the broker's offset. Each record carries one
//! [`DeliveryPromise`] (its librdkafka delivery opaque), completed by the
//! delivery callback: one allocation per record, shared by the caller's
//! `Delivery` and the worker's tracking of what the commit waits for. A
//! full local queue is not an error: `send` waits and retries until there
//! is room. `flush` runs librdkafka's blocking flush on the blocking pool.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

use faustus_core::transport::{Acks, Delivery, DeliveryPromise, Producer, Record};
use faustus_core::Result;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::util::Timeout;

use crate::context::LogContext;
use crate::error;

/// The producers' context: logging and errors as every client's, and the
/// delivery callback completing each record's promise.
#[derive(Clone)]
pub(crate) struct DeliveryContext(pub(crate) LogContext);

impl ClientContext for DeliveryContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.0.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(error, reason);
    }

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> std::result::Result<OAuthToken, Box<dyn std::error::Error>> {
        self.0.generate_oauth_token(oauthbearer_config)
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<DeliveryPromise>;

    fn delivery(&self, result: &DeliveryResult<'_>, promise: Arc<DeliveryPromise>) {
        match result {
            Ok(m) => promise.delivered(
                u32::try_from(m.partition()).unwrap_or(0),
                m.offset(),
                m.timestamp().to_millis(),
            ),
            Err((e, m)) => promise.failed(error::kafka(
                format!(
                    "delivery of a record to topic {:?} partition {}",
                    promise.topic(),
                    m.partition()
                ),
                e.clone(),
            )),
        }
    }
}

type Inner = ThreadedProducer<DeliveryContext>;

/// The longest pause between two attempts to enqueue into a full queue.
const MAX_QUEUE_FULL_WAIT: Duration = Duration::from_millis(50);

pub(crate) struct KafkaProducer {
    /// The producer with the transport's `acks`.
    pub(crate) inner: Inner,
    pub(crate) client_id: String,
    /// The URL's `acks`, if it set one (librdkafka's default is `all`).
    pub(crate) default_acks: Option<String>,
    /// How to build producers with other `acks` (topics that ask for them).
    pub(crate) client_config: rdkafka::ClientConfig,
    pub(crate) context: DeliveryContext,
    /// One producer per other `acks` level, made on first use: librdkafka
    /// takes `acks` per producer here, topics may each want their own.
    pub(crate) by_acks: Mutex<HashMap<Acks, Inner>>,
}

impl KafkaProducer {
    /// The producer for a record's `acks`.
    fn for_acks(&self, acks: Option<Acks>) -> Result<Inner> {
        let default = self.default_acks.as_deref().unwrap_or("all");
        let Some(acks) =
            acks.filter(|a| a.as_kafka() != default && !(default == "-1" && *a == Acks::All))
        else {
            return Ok(self.inner.clone());
        };
        let mut by_acks = self.by_acks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = by_acks.get(&acks) {
            return Ok(p.clone());
        }
        let mut config = self.client_config.clone();
        config.remove("request.required.acks");
        config.set("acks", acks.as_kafka());
        if acks != Acks::All {
            // The idempotent producer needs acks=all.
            config.set("enable.idempotence", "false");
        }
        let p: Inner = config
            .create_with_context(self.context.clone())
            .map_err(|e| {
                error::kafka(
                    format!(
                        "create producer {:?} with acks={}",
                        self.client_id,
                        acks.as_kafka()
                    ),
                    e,
                )
            })?;
        by_acks.insert(acks, p.clone());
        Ok(p)
    }
}

impl fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaProducer")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn to_i32(partition: u32) -> i32 {
    i32::try_from(partition).unwrap_or(i32::MAX)
}

#[async_trait]
impl Producer for KafkaProducer {
    async fn send(&self, record: Record) -> Result<Delivery> {
        let producer = self.for_acks(record.acks)?;
        let mut wait = Duration::from_millis(1);
        let promise = DeliveryPromise::new(record.topic.clone());
        loop {
            let mut br: BaseRecord<'_, [u8], [u8], _> =
                BaseRecord::with_opaque_to(&record.topic, promise.clone());
            if let Some(k) = &record.key {
                br = br.key(&k[..]);
            }
            if let Some(v) = &record.value {
                br = br.payload(&v[..]);
            }
            if let Some(p) = record.partition {
                br = br.partition(to_i32(p));
            }
            if let Some(ts) = record.timestamp_ms {
                br = br.timestamp(ts);
            }
            if !record.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
                for (name, value) in &record.headers {
                    headers = headers.insert(Header {
                        key: name,
                        value: Some(&value[..]),
                    });
                }
                br = br.headers(headers);
            }
            match producer.send(br).map_err(|(e, _)| e) {
                Ok(()) => return Ok(promise.delivery()),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    // librdkafka's queue is full: wait for deliveries to make
                    // room (its own thread keeps polling) and try again.
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_QUEUE_FULL_WAIT);
                }
                Err(e) => {
                    return Err(error::kafka(
                        format!(
                            "send to topic {:?}{}",
                            record.topic,
                            record
                                .partition
                                .map(|p| format!(" partition {p}"))
                                .unwrap_or_default()
                        ),
                        e,
                    ))
                }
            }
        }
    }

    async fn flush(&self) -> Result<()> {
        let mut producers = vec![self.inner.clone()];
        producers.extend(
            self.by_acks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned(),
        );
        // Every record is delivered or failed within `message.timeout.ms`, so
        // waiting without a bound of our own terminates.
        tokio::task::spawn_blocking(move || {
            producers.iter().try_for_each(|p| p.flush(Timeout::Never))
        })
        .await
        .map_err(|e| error::message(false, format!("flush task failed: {e}")))?
        .map_err(|e| error::kafka("flush", e))
    }
}
