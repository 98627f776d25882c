//! The producer: an rdkafka `FutureProducer` behind the [`Producer`] trait.
//!
//! librdkafka batches records per partition (`linger.ms`, `batch.size`) and
//! reports each delivery on its own polling thread, so `send` never blocks the
//! async runtime: it enqueues and returns a [`Delivery`] that resolves with
//! the broker's offset. A full local queue is not an error: `send` waits and
//! retries until there is room. `flush` runs librdkafka's blocking flush on
//! the blocking pool.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use faustus_core::transport::{Delivery, Producer, Record, RecordMetadata};
use faustus_core::Result;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::context::LogContext;
use crate::error;

/// The longest pause between two attempts to enqueue into a full queue.
const MAX_QUEUE_FULL_WAIT: Duration = Duration::from_millis(50);

pub(crate) struct KafkaProducer {
    pub(crate) inner: FutureProducer<LogContext>,
    pub(crate) client_id: String,
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
        let mut wait = Duration::from_millis(1);
        loop {
            let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&record.topic);
            if let Some(k) = &record.key {
                fr = fr.key(&k[..]);
            }
            if let Some(v) = &record.value {
                fr = fr.payload(&v[..]);
            }
            if let Some(p) = record.partition {
                fr = fr.partition(to_i32(p));
            }
            if let Some(ts) = record.timestamp_ms {
                fr = fr.timestamp(ts);
            }
            if !record.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
                for (name, value) in &record.headers {
                    headers = headers.insert(Header {
                        key: name,
                        value: Some(&value[..]),
                    });
                }
                fr = fr.headers(headers);
            }
            let attempt = self.inner.send_result(fr).map_err(|(e, _)| e);
            match attempt {
                Ok(future) => {
                    let topic = record.topic.clone();
                    return Ok(Delivery::pending(async move {
                        match future.await {
                            Ok(Ok(d)) => Ok(RecordMetadata {
                                topic,
                                partition: u32::try_from(d.partition).unwrap_or(0),
                                offset: d.offset,
                                timestamp_ms: d.timestamp.to_millis(),
                            }),
                            Ok(Err((e, _))) => Err(error::kafka(
                                format!("delivery of a record to topic {topic:?}"),
                                e,
                            )),
                            Err(_) => Err(error::message(
                                true,
                                format!("the producer was dropped before the record to topic {topic:?} was delivered"),
                            )),
                        }
                    }));
                }
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
        let producer = self.inner.clone();
        // Every record is delivered or failed within `message.timeout.ms`, so
        // waiting without a bound of our own terminates.
        tokio::task::spawn_blocking(move || producer.flush(Timeout::Never))
            .await
            .map_err(|e| error::message(false, format!("flush task failed: {e}")))?
            .map_err(|e| error::kafka("flush", e))
    }
}
