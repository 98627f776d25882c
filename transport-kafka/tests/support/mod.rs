//! librdkafka's in-process mock cluster as a [`Transport`] for tests.
//!
//! The mock broker does not implement the CreateTopics admin API (librdkafka
//! documents this), so [`MockTransport`] creates topics through the mock
//! cluster's own call and keeps the contract around it (idempotent with the
//! same partition count, an error naming the topic and both counts
//! otherwise); everything else goes through the real [`KafkaTransport`]. The
//! driver's own `create_topic` is covered by the real-broker suite.
//!
//! `MockCluster` is not `Send`, so it lives on a thread of its own that
//! serves requests until the last handle is dropped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod tansu;
pub(crate) mod tls;
pub(crate) mod worker;

use std::sync::mpsc;
use std::sync::Arc;

use async_trait::async_trait;
use faustus_core::transport::{
    Consumer, ConsumerConfig, PartitionReader, Producer, ProducerConfig, ReaderConfig, TopicSpec,
    Transport,
};
use faustus_core::{DriverUrl, Error, Result};
use faustus_transport_kafka::KafkaTransport;
use parking_lot::Mutex;
use rdkafka::mocking::MockCluster;
use tokio::sync::oneshot;

enum Request {
    CreateTopic(
        String,
        i32,
        oneshot::Sender<std::result::Result<(), String>>,
    ),
    BrokerDown(i32, oneshot::Sender<()>),
    BrokerUp(i32, oneshot::Sender<()>),
}

/// A running mock cluster.
#[derive(Debug)]
pub(crate) struct MockKafka {
    tx: Mutex<mpsc::Sender<Request>>,
    bootstrap: String,
}

impl MockKafka {
    /// Start a mock cluster with `brokers` brokers.
    pub(crate) fn start(brokers: i32) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        let (boot_tx, boot_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                let cluster = MockCluster::new(brokers).expect("start the librdkafka mock cluster");
                boot_tx.send(cluster.bootstrap_servers()).unwrap();
                while let Ok(req) = rx.recv() {
                    match req {
                        Request::CreateTopic(name, partitions, reply) => {
                            let r = cluster
                                .create_topic(&name, partitions, 1)
                                .map_err(|e| e.to_string());
                            let _ = reply.send(r);
                        }
                        Request::BrokerDown(id, reply) => {
                            cluster.broker_down(id).unwrap();
                            let _ = reply.send(());
                        }
                        Request::BrokerUp(id, reply) => {
                            cluster.broker_up(id).unwrap();
                            let _ = reply.send(());
                        }
                    }
                }
                // Clients may still be winding down: keep the cluster alive
                // for the rest of the process.
                std::mem::forget(cluster);
            })
            .unwrap();
        let bootstrap = boot_rx.recv().unwrap();
        Arc::new(MockKafka {
            tx: Mutex::new(tx),
            bootstrap,
        })
    }

    /// `host:port,...` of the mock brokers.
    pub(crate) fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    async fn create(&self, name: &str, partitions: u32) -> std::result::Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .lock()
            .send(Request::CreateTopic(name.into(), partitions as i32, tx))
            .unwrap();
        rx.await.unwrap()
    }

    /// Take broker `id` (1-based) down.
    pub(crate) async fn broker_down(&self, id: i32) {
        let (tx, rx) = oneshot::channel();
        self.tx.lock().send(Request::BrokerDown(id, tx)).unwrap();
        rx.await.unwrap();
    }

    /// Bring broker `id` back.
    pub(crate) async fn broker_up(&self, id: i32) {
        let (tx, rx) = oneshot::channel();
        self.tx.lock().send(Request::BrokerUp(id, tx)).unwrap();
        rx.await.unwrap();
    }

    /// A Kafka transport on this cluster, with `options` (`key=value&...`).
    pub(crate) fn kafka(&self, options: &str) -> KafkaTransport {
        let url = if options.is_empty() {
            format!("kafka://{}", self.bootstrap)
        } else {
            format!("kafka://{}?{options}", self.bootstrap)
        };
        KafkaTransport::from_url(&DriverUrl::parse("broker", &url).unwrap()).unwrap()
    }

    /// Kafka on this cluster, with topics created through the mock cluster.
    pub(crate) fn transport(self: &Arc<Self>) -> Arc<dyn Transport> {
        self.transport_with("")
    }

    /// [`transport`](Self::transport) with librdkafka `options` (`key=value&...`).
    pub(crate) fn transport_with(self: &Arc<Self>, options: &str) -> Arc<dyn Transport> {
        Arc::new(MockTransport {
            inner: self.kafka(options),
            mock: self.clone(),
        })
    }
}

/// [`KafkaTransport`] with `create_topic` done by the mock cluster.
#[derive(Debug)]
pub(crate) struct MockTransport {
    inner: KafkaTransport,
    mock: Arc<MockKafka>,
}

#[async_trait]
impl Transport for MockTransport {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        match self.inner.partition_count(&spec.name).await? {
            Some(n) if n == spec.partitions => Ok(()),
            Some(n) => Err(Error::config(
                "topic_partitions",
                format!(
                    "topic {:?} exists with {n} partitions, but {} are needed",
                    spec.name, spec.partitions
                ),
            )),
            None => self
                .mock
                .create(&spec.name, spec.partitions)
                .await
                .map_err(|e| Error::backend("kafka", e)),
        }
    }

    async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        self.inner.partition_count(topic).await
    }

    async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>> {
        self.inner.producer(config).await
    }

    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>> {
        self.inner.consumer(config).await
    }

    async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>> {
        self.inner.reader(config).await
    }

    async fn check(&self) -> Result<()> {
        self.inner.check().await
    }
}
