//! What runs when a worker starts: the [`worker`] (start/stop order, tasks,
//! services, the web server), the conductor (the consumer loop: fan-out,
//! backpressure, commits, rebalances), recovery of table partitions,
//! [`signals`] of the worker's life and rebalances,
//! [`timers`], and the app's web pages. The top of core: nothing in core
//! uses it except the crate root's re-exports.

pub(crate) mod conductor;
pub(crate) mod pages;
pub(crate) mod recovery;
pub mod signals;
pub mod timers;
pub mod worker;
