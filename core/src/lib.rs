//! Faustus core: the app, topics, streams, agents, tables, the conductor, and
//! the driver traits every transport, store and web server implements.
//!
//! The source is in layers (docs/ARCHITECTURE.md has the map); a folder
//! only uses the folders below it:
//!
//! | layer | folder | holds |
//! |---|---|---|
//! | 8 | `runtime/` | worker, conductor, recovery, signals, timers, web pages |
//! | 7 | `cluster/` | the cluster map (who owns which partition), standby replicas |
//! | 6 | `agent/`, `table/` | agents (builder, supervision, isolated partitions, RPC); tables (cache, flush, windowed, global, sets) |
//! | 5 | `stream/` | streams and their operators, topics and channels, the agent run a stream belongs to |
//! | 4 | `app/` | the [`App`] handle: settings, definitions, subscriptions, assignment, lazily created drivers |
//! | 3 | `flow/` | buffers, acks, the current event, send deliveries |
//! | 2 | `settings`, `monitor` | every setting; counters and figures |
//! | 1 | `drivers/` | driver traits, codecs, URLs, the scheme registry |
//! | 0 | `error`, `lifecycle` | the error type; the shutdown signal |
//!
//! The modules keep their public paths (`faustus_core::transport`,
//! `faustus_core::topic`, …) through the re-exports below.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod agent;
pub mod app;
pub mod cluster;
mod drivers;
pub mod error;
mod flow;
pub mod lifecycle;
pub mod monitor;
mod runtime;
pub mod settings;
pub mod stream;
pub mod table;

pub use agent::{rpc, Agent, AgentBuilder, AgentError, AgentInfo, OnError, YieldingAgentBuilder};
pub use app::{App, AppBuilder, Service, TableInfo};
pub use cluster::{ClusterMap, WorkerInfo};
pub use drivers::credentials::{self, Credentials};
pub use drivers::{codec, partitioner, registry, store, transport, url};
pub use error::{Error, Result};
pub use flow::event::{Event, EventInfo};
pub use flow::{acks, event, queue};
pub use http;
pub use lifecycle::ShutdownSignal;
pub use registry::{Registry, TransportContext};
pub use runtime::{signals, timers, worker};
pub use settings::Settings;
pub use stream::ops::{GroupBy, Through};
pub use stream::topic::{self, Channel, SendOptions, Topic, TopicBuilder};
pub use stream::Stream;
pub use table::set::{self as set_table, SetTable};
pub use table::windowed::{WindowRange, WindowedTable};
pub use table::{Table, TableBuilder};
pub use transport::{Message, RecordMetadata, TopicPartition};
pub use url::DriverUrl;
pub use worker::WorkerHandle;

/// The web side: the `WebDriver` contract (traits over `http` types,
/// [`Request`](web::Request), [`WebError`](web::WebError), route patterns,
/// response helpers) and [`PageMatch`](web::PageMatch), an app page matched
/// against a path.
pub mod web {
    pub use crate::drivers::web::*;
    pub use crate::runtime::pages::PageMatch;
}
