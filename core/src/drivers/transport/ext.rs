//! What callers use around the transport traits: forwarding impls (an
//! `Arc<T>` or `Box<T>` of a driver is a driver, every method forwarded, so
//! a driver's own overrides of default methods still run) and the helper
//! traits `TransportExt`, `ProducerExt`, `PartitionReaderExt`, blanket-
//! implemented for every driver.

use super::*;

#[async_trait]
impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        (**self).create_topic(spec).await
    }

    async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        (**self).partition_count(topic).await
    }

    async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>> {
        (**self).producer(config).await
    }

    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>> {
        (**self).consumer(config).await
    }

    async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>> {
        (**self).reader(config).await
    }

    async fn check(&self) -> Result<()> {
        (**self).check().await
    }
}

macro_rules! forward_producer {
    ($ptr:ident) => {
        #[async_trait]
        impl<T: Producer + ?Sized> Producer for $ptr<T> {
            async fn send(&self, record: Record) -> Result<Delivery> {
                (**self).send(record).await
            }

            async fn send_batch(&self, records: Vec<Record>) -> Result<Vec<Delivery>> {
                (**self).send_batch(records).await
            }

            async fn flush(&self) -> Result<()> {
                (**self).flush().await
            }
        }
    };
}

forward_producer!(Arc);
forward_producer!(Box);

#[async_trait]
impl<T: Consumer + ?Sized> Consumer for Box<T> {
    async fn subscribe(&mut self, topics: &[String]) -> Result<()> {
        (**self).subscribe(topics).await
    }

    async fn poll(&mut self, timeout: Duration) -> Result<ConsumerEvent> {
        (**self).poll(timeout).await
    }

    async fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        (**self).pause(partitions).await
    }

    async fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        (**self).resume(partitions).await
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        (**self).commit(offsets).await
    }

    async fn commit_async(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        (**self).commit_async(offsets).await
    }

    async fn committed(&mut self, partitions: &[TopicPartition]) -> Result<Vec<Option<i64>>> {
        (**self).committed(partitions).await
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        (**self).assignment()
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        Consumer::seek(&mut **self, tp, offset).await
    }

    async fn close(&mut self) -> Result<()> {
        (**self).close().await
    }
}

#[async_trait]
impl<T: PartitionReader + ?Sized> PartitionReader for Box<T> {
    async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        (**self).assign(partitions).await
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        (**self).seek(tp, offset).await
    }

    async fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>> {
        (**self).poll(timeout).await
    }

    async fn high_watermark(&mut self, tp: &TopicPartition) -> Result<i64> {
        (**self).high_watermark(tp).await
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        (**self).assignment()
    }

    async fn close(&mut self) -> Result<()> {
        (**self).close().await
    }
}

/// Helpers over any [`Transport`] (blanket-implemented).
#[async_trait]
pub trait TransportExt: Transport {
    /// Every partition of `topic` in order, `None` when the topic does not exist.
    async fn topic_partitions(&self, topic: &str) -> Result<Option<Vec<TopicPartition>>> {
        Ok(self
            .partition_count(topic)
            .await?
            .map(|n| TopicPartition::all(topic, n)))
    }
}

impl<T: Transport + ?Sized> TransportExt for T {}

/// Helpers over any [`Producer`] (blanket-implemented).
#[async_trait]
pub trait ProducerExt: Producer {
    /// Send `record` and wait for the transport to acknowledge it.
    async fn send_and_wait(&self, record: Record) -> Result<RecordMetadata> {
        self.send(record).await?.await
    }
}

impl<T: Producer + ?Sized> ProducerExt for T {}

/// Helpers over any [`PartitionReader`] (blanket-implemented).
#[async_trait]
pub trait PartitionReaderExt: PartitionReader {
    /// Assign exactly the partitions of `starts` and read each from its offset.
    async fn assign_at(&mut self, starts: &[(TopicPartition, i64)]) -> Result<()> {
        let tps: Vec<TopicPartition> = starts.iter().map(|(tp, _)| tp.clone()).collect();
        self.assign(&tps).await?;
        for (tp, offset) in starts {
            self.seek(tp, *offset).await?;
        }
        Ok(())
    }

    /// Assign `partitions` and read each from its current end: only what is
    /// produced from now on.
    async fn assign_at_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.assign(partitions).await?;
        for tp in partitions {
            let end = self.high_watermark(tp).await?;
            self.seek(tp, end).await?;
        }
        Ok(())
    }
}

impl<T: PartitionReader + ?Sized> PartitionReaderExt for T {}
