//! The pluggable parts and how they are found: the driver traits
//! ([`transport`], [`store`], [`web`]), codecs ([`codec`]), driver URLs
//! ([`url`]), broker credentials ([`credentials`]), the scheme registry
//! ([`registry`]) and Kafka's partitioner.
//! The bottom of core: these modules use only each other and the error type.

pub mod codec;
pub mod credentials;
pub mod partitioner;
pub mod registry;
pub mod store;
pub mod transport;
pub mod url;
pub(crate) mod web;
