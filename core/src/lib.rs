//! Faustus core: the app, topics, streams, agents, tables, the conductor, and
//! the driver traits every transport, store and web server implements.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod codec;
pub mod error;
pub mod partitioner;
pub mod registry;
pub mod store;
pub mod transport;
pub mod url;
pub mod web;

pub use error::{Error, Result};
pub use registry::Registry;
pub use url::DriverUrl;
