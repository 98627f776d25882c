//! What the worker drives of each thing an app defines, whatever its types:
//! tables ([`TableOps`]) and agents ([`AgentOps`]). The typed builders and
//! handles live with their kind (`table/`, `agent/`); the app keeps these.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::app::topic::TopicDef;
use crate::app::App;
use crate::drivers::store::{Store, TableStore};
use crate::drivers::transport::Producer;
use crate::error::Result;
use crate::lifecycle::ShutdownSignal;

/// What the worker needs of any table, whatever its types.
#[async_trait]
pub(crate) trait TableOps: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn help(&self) -> &str;
    fn changelog(&self) -> &Arc<TopicDef>;
    fn partitions(&self) -> u32;
    async fn open(&self, store: &Arc<dyn Store>, producer: Arc<dyn Producer>) -> Result<()>;
    fn table_store(&self) -> Option<Arc<dyn TableStore>>;
    /// Serve these partitions (after recovery).
    fn activate(&self, partitions: &BTreeSet<u32>);
    /// Stop serving these partitions; forget their cached values.
    fn deactivate(&self, partitions: &BTreeSet<u32>);
    /// Wait for the changelog acknowledgements of all writes so far and store
    /// them with their offsets.
    async fn flush(&self) -> Result<()>;
    /// For the web view: the value of a key given as text (JSON, else a
    /// bare string), as JSON; `None` when absent here.
    async fn get_text(self: Arc<Self>, key: &str) -> Result<Option<serde_json::Value>>;
    /// Keys stored in the partitions this worker serves (no flush).
    async fn local_len(&self) -> Result<u64>;
    /// Whether there are writes a flush would send or store.
    fn has_changes(&self) -> bool;
    /// The worker stopped: forget cached values and let go of the store
    /// (its files can be opened again, by this app or another).
    fn close(&self);
    /// A global table: its own reader keeps every partition current; the
    /// conductor neither recovers nor deactivates it.
    fn is_global(&self) -> bool;
}

/// Name, topic and help of an agent (the `agents` command prints these).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentInfo {
    /// Agent name.
    pub name: String,
    /// Topic it reads, or `<channel>`.
    pub topic: String,
    /// Its help text.
    pub help: String,
}

/// What the worker needs of any agent, whatever its types.
pub(crate) trait AgentOps: Send + Sync + 'static {
    /// The agent's name.
    fn name(&self) -> &str;
    /// The topic it reads (`None`: a channel).
    fn topic(&self) -> Option<&str>;
    /// How many instances run on one buffer.
    fn concurrency(&self) -> usize;
    /// For the `agents` command.
    fn info(&self) -> AgentInfo;
    /// Stop handing it new events: its stream ends after what is buffered is purged.
    fn close(&self);
    /// Hand it events again (a new worker run).
    fn reopen(&self);
    /// Run it until its stream ends or the worker stops, restarting it on failures.
    fn supervise(self: Arc<Self>, app: App, stop: ShutdownSignal) -> BoxFuture<'static, ()>;
}
