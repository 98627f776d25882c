//! The deterministic cluster simulator: several workers of one app in one
//! process, on one named memory broker, on virtual time.
//!
//! A [`Cluster`] starts, stops, crashes and restarts workers of your app
//! (each worker is a fresh [`App`] built by your function, so a restarted
//! worker is a new process with the old worker's local store), feeds input,
//! lets virtual time pass or jumps the clock, and then checks what users rely
//! on: every partition has one owner, each table's local state equals the
//! fold of its changelog, nothing acknowledged was lost.
//!
//! Runs are reproducible: the runtime is single-threaded with a paused clock,
//! the broker and stores are in memory, and the only randomness is the
//! seeded [`SimRng`] handed to your input feed and to [`random_schedule`].
//! The same seed and schedule give the same [`Cluster::trace`] and the same
//! [`Cluster::output`] (every record of every topic, every committed offset).
//!
//! A crash ([`Step::Crash`]) blows a fuse in the worker's transport and store:
//! from that instant nothing the worker does reaches the broker or its store
//! (no commit, no flush, no changelog write), and the broker notices the
//! silent member after its session timeout, as with a killed process.
//!
//! Simulating a rebalance of your own app takes a few lines:
//!
//! ```
//! use std::time::Duration;
//! use faustus_core::transport::Record;
//! use faustus_testkit::sim::{Cluster, SimConfig, Step};
//! use futures::StreamExt;
//!
//! # fn main() -> faustus_core::Result<()> {
//! faustus_testkit::sim::run_paused(async {
//!     let mut cluster = Cluster::new(SimConfig::new("counter", 1), |_worker, builder| {
//!         let app = builder.build()?;
//!         let words = app.topic::<String, String>("words").build()?;
//!         let counts = app.table::<String, u64>("counts").with_default().build()?;
//!         app.agent::<String, String>("count").on(&words).build(move |stream| {
//!             let counts = counts.clone();
//!             async move {
//!                 let mut words = stream;
//!                 while let Some(word) = words.next().await {
//!                     counts.update(&word, |n| *n += 1).await?;
//!                 }
//!                 Ok(())
//!             }
//!         })?;
//!         Ok(app)
//!     });
//!     let feed = |_rng: &mut _, i: u64| {
//!         let word = format!("\"w{}\"", i % 5);
//!         Record::new("words", Some(word.clone().into()), Some(word.into()))
//!     };
//!     cluster
//!         .run(
//!             &[
//!                 Step::Join(0),
//!                 Step::Send(50),
//!                 Step::Run(2_000),
//!                 Step::Join(1), // a second worker: the partitions are split
//!                 Step::Send(50),
//!                 Step::Run(2_000),
//!                 Step::Crash(0), // worker 0 dies; worker 1 takes over after the session timeout
//!             ],
//!             feed,
//!         )
//!         .await?;
//!     cluster.settle().await?;
//!     cluster.check_one_owner_per_partition("words")?;
//!     cluster.check_tables_match_changelogs().await?;
//!     assert_eq!(cluster.live_workers(), vec!["w1".to_string()]);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! [`App`]: faustus_core::App

mod check;
mod cluster;
mod fuse;
mod run;
mod scenario;
pub mod strategy;
mod trace;

pub use check::{Output, OutputRecord};
pub use cluster::{Cluster, WorkerCtx};
pub use run::run_paused;
pub use scenario::{random_schedule, SimConfig, SimRng, Step};
pub use trace::{Crash, Recorder, TraceEntry};
