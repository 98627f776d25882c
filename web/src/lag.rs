//! Consumer lag for `/metrics` and `/stats`: high watermarks read by a
//! partition reader (no group) of the site's own, off the conductor, at most every
//! [`LAG_EVERY`], and only while someone asks for the figures. The result
//! lands in the monitor as the `faustus_consumer_lag` gauge per partition.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faustus_core::monitor::{tp_labels, Figure};
use faustus_core::transport::{PartitionReader, ReaderConfig};
use faustus_core::{App, Result};
use parking_lot::Mutex;

/// How often consumer lag is sampled (when asked for).
pub(crate) const LAG_EVERY: Duration = Duration::from_secs(10);

/// One site's lag sampler (its consumer is closed with the site).
#[derive(Default)]
pub(crate) struct LagSampler {
    running: AtomicBool,
    closed: AtomicBool,
    last: Mutex<Option<Instant>>,
    consumer: tokio::sync::Mutex<Option<Box<dyn PartitionReader>>>,
}

impl LagSampler {
    /// Start a lag sample in the background unless one ran within
    /// [`LAG_EVERY`] (or one is running, or the sampler is closed).
    pub(crate) fn sample(self: &Arc<Self>, app: &App) {
        {
            let mut last = self.last.lock();
            if last.is_some_and(|t| t.elapsed() < LAG_EVERY) {
                return;
            }
            if self.closed.load(Ordering::Acquire) || self.running.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let (this, app) = (self.clone(), app.clone());
        tokio::spawn(async move {
            if let Err(e) = this.refresh(&app).await {
                tracing::debug!(error = %e, "consumer lag sample failed");
            }
            this.running.store(false, Ordering::Release);
        });
    }

    async fn refresh(&self, app: &App) -> Result<()> {
        let mut guard = self.consumer.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if guard.is_none() {
            let transport = app.transport().await?;
            let config = ReaderConfig::new(format!("{}-lag", app.settings().broker_client_id));
            *guard = Some(transport.reader(&config).await?);
        }
        let Some(consumer) = guard.as_mut() else {
            return Ok(());
        };
        let committed: HashMap<String, f64> = app
            .monitor()
            .figures()
            .into_iter()
            .filter(|(n, _, _)| *n == "faustus_committed_offset")
            .filter_map(|(_, labels, f)| match f {
                Figure::Gauge(v) => Some((labels, v)),
                _ => None,
            })
            .collect();
        for tp in app.assignment() {
            let labels = tp_labels(&tp);
            let hw = consumer.high_watermark(&tp).await?;
            let done = committed.get(&labels).copied().unwrap_or(0.0);
            app.monitor()
                .gauge("faustus_consumer_lag", labels, (hw as f64 - done).max(0.0));
        }
        Ok(())
    }

    /// Close the consumer (after the server stopped: no request can start
    /// another sample); a sample under way finishes first.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let consumer = self.consumer.lock().await.take();
        if let Some(mut c) = consumer {
            if let Err(e) = c.close().await {
                tracing::debug!(error = %e, "closing the lag consumer failed");
            }
        }
    }
}
