//! How an event moves and is settled: the bounded buffers between the
//! conductor and streams ([`queue`]), the acknowledgements that decide the
//! committable offset ([`acks`]), the event being processed and its
//! task-local cell ([`event`]), and the deliveries of sends nobody awaited
//! ([`delivery`]). Uses only the drivers, the monitor and the error type.

pub mod acks;
pub(crate) mod delivery;
pub mod event;
pub mod queue;
