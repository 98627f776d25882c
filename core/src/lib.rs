//! Faustus core: the app, topics, streams, agents, tables, the conductor, and
//! the driver traits every transport, store and web server implements.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod acks;
pub mod agent;
pub mod app;
pub mod cluster;
pub mod codec;
mod conductor;
mod delivery;
pub mod error;
pub mod event;
mod isolated;
pub mod monitor;
mod pages;
pub mod partitioner;
pub mod queue;
mod recovery;
pub mod registry;
pub mod rpc;
pub mod set_table;
pub mod settings;
pub mod signals;
mod standby;
pub mod store;
pub mod stream;
mod stream_ops;
pub mod table;
pub mod timers;
pub mod topic;
pub mod transport;
pub mod url;
pub mod web;
pub mod worker;

pub use agent::{Agent, AgentBuilder, AgentError, AgentInfo, OnError, YieldingAgentBuilder};
pub use app::{App, AppBuilder, Service, TableInfo};
pub use cluster::{ClusterMap, WorkerInfo};
pub use error::{Error, Result};
pub use event::{Event, EventInfo};
pub use http;
pub use registry::Registry;
pub use set_table::SetTable;
pub use settings::Settings;
pub use stream::Stream;
pub use stream_ops::{GroupBy, Through};
pub use table::windowed::{WindowRange, WindowedTable};
pub use table::{Table, TableBuilder};
pub use topic::{Channel, SendOptions, Topic, TopicBuilder};
pub use transport::{Message, RecordMetadata, TopicPartition};
pub use url::DriverUrl;
pub use worker::{ShutdownSignal, WorkerHandle};
