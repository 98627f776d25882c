//! The memory producer: appends straight to the partition logs.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use faustus_core::transport::{Delivery, Producer, Record};
use faustus_core::Result;

use crate::broker::Broker;

/// A producer of a memory broker. Every send is acknowledged at once.
pub(crate) struct MemoryProducer {
    pub(crate) broker: Arc<Broker>,
    pub(crate) client_id: String,
    pub(crate) default_partitions: u32,
}

impl fmt::Debug for MemoryProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryProducer")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Producer for MemoryProducer {
    async fn send(&self, record: Record) -> Result<Delivery> {
        let metadata = self.broker.append(record, self.default_partitions)?;
        Ok(Delivery::ready(Ok(metadata)))
    }

    async fn send_batch(&self, records: Vec<Record>) -> Result<Vec<Delivery>> {
        let metadata = self.broker.append_all(records, self.default_partitions)?;
        Ok(metadata
            .into_iter()
            .map(|m| Delivery::ready(Ok(m)))
            .collect())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}
