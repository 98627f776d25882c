//! [`WindowedTableBuilder`] and the windowed constructors of [`TableBuilder`].

use super::*;

/// Defines a windowed table; from [`TableBuilder::tumbling`],
/// [`hopping`](TableBuilder::hopping) or [`sliding`](TableBuilder::sliding).
#[must_use = "call .build() to define the table"]
pub struct WindowedTableBuilder<K, V> {
    pub(super) table: TableBuilder<K, V>,
    pub(super) window: Window,
    pub(super) expires: Duration,
    pub(super) relative: RelativeTo,
    pub(super) on_close: Option<OnWindowClose<K, V>>,
    pub(super) merge: Option<Merge<V>>,
    pub(super) error: Option<String>,
}

/// Combines the values of two sessions an event bridges.
pub(super) type Merge<V> = Arc<dyn Fn(V, V) -> V + Send + Sync>;

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<K, V> TableBuilder<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Tumbling windows of `size`, removed `expires` after they end.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn demo(app: faustus_core::App) -> faustus_core::Result<()> {
    /// let views = app
    ///     .table::<String, u64>("views")
    ///     .with_default()
    ///     .tumbling(Duration::from_secs(60), Duration::from_secs(3600))
    ///     .build()?;
    /// // in an agent: views.update(&page, |n| *n += 1).await?;
    /// //              let this_minute = views.get(&page).current().await?;
    /// # Ok(()) }
    /// ```
    pub fn tumbling(self, size: Duration, expires: Duration) -> WindowedTableBuilder<K, V> {
        let error = (size.as_millis() == 0).then(|| "the window size must be at least 1 ms".into());
        self.windowed(Window::Tumbling { size_ms: ms(size) }, expires, error)
    }

    /// Hopping windows of `size` starting every `step`, removed `expires`
    /// after they end.
    pub fn hopping(
        self,
        size: Duration,
        step: Duration,
        expires: Duration,
    ) -> WindowedTableBuilder<K, V> {
        let error = if size.as_millis() == 0 || step.as_millis() == 0 {
            Some("the window size and step must be at least 1 ms".into())
        } else {
            None
        };
        self.windowed(
            Window::Hopping {
                size_ms: ms(size),
                step_ms: ms(step),
            },
            expires,
            error,
        )
    }

    /// Sliding windows: an update at `t` goes to `[t - before, t + after]`,
    /// removed `expires` after they end.
    pub fn sliding(
        self,
        before: Duration,
        after: Duration,
        expires: Duration,
    ) -> WindowedTableBuilder<K, V> {
        self.windowed(
            Window::Sliding {
                before_ms: ms(before),
                after_ms: ms(after),
            },
            expires,
            None,
        )
    }

    /// Session windows: per key, events less than `gap` apart form one
    /// session `[first, last + gap)`, removed `expires` after it ends. An
    /// event that bridges two sessions merges them; `merge` combines their
    /// values (earlier session first). Faust has no session windows.
    pub fn session(
        self,
        gap: Duration,
        expires: Duration,
        merge: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> WindowedTableBuilder<K, V> {
        let error = (gap.as_millis() == 0).then(|| "the session gap must be at least 1 ms".into());
        let mut b = self.windowed(Window::Session { gap_ms: ms(gap) }, expires, error);
        b.merge = Some(Arc::new(merge));
        b
    }

    pub(super) fn windowed(
        mut self,
        window: Window,
        expires: Duration,
        error: Option<String>,
    ) -> WindowedTableBuilder<K, V> {
        self.changelog_retention = Some(expires);
        WindowedTableBuilder {
            table: self,
            window,
            expires,
            relative: RelativeTo::Stream,
            on_close: None,
            merge: None,
            error,
        }
    }
}

impl<K, V> WindowedTableBuilder<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Updates and `value()` use the wall clock.
    pub fn relative_to_now(mut self) -> Self {
        self.relative = RelativeTo::Now;
        self
    }

    /// Updates and `value()` use the current event's timestamp (the default;
    /// the wall clock outside a stream or for events without a timestamp).
    pub fn relative_to_stream(mut self) -> Self {
        self.relative = RelativeTo::Stream;
        self
    }

    /// Updates and `value()` use a time taken from the current event's
    /// value: `field` gets the value decoded as `E` and returns
    /// milliseconds since the epoch (Faust's `relative_to_field`).
    ///
    /// `E` is decoded from the message bytes with the value codec of the
    /// topic the event came from; it need not be the stream's value type,
    /// any type the value decodes as will do (e.g. a struct with just the
    /// time field); it is decoded again by each call that needs the time.
    /// The field time is event time: it also advances the latest time of
    /// the partition, against which windows expire.
    ///
    /// A value that does not decode as `E` makes `update`, `set`, `value()`
    /// and `delta()` fail with [`Error::EventTime`], naming the table and the
    /// message. Outside a stream, and for channel or iterator events (which
    /// have no message), the time is the event's timestamp, else the wall
    /// clock. [`WindowSet::current`] stays the window of the message
    /// timestamp (as in Faust); read the field time's window with
    /// [`WindowSet::value`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn demo(app: faustus_core::App) -> faustus_core::Result<()> {
    /// #[derive(serde::Deserialize)]
    /// struct Order {
    ///     page: String,
    ///     created_ms: i64,
    /// }
    /// let views = app
    ///     .table::<String, u64>("views")
    ///     .with_default()
    ///     .tumbling(Duration::from_secs(60), Duration::from_secs(3600))
    ///     .relative_to_field(|order: &Order| order.created_ms)
    ///     .build()?;
    /// // in an agent over a Topic<String, Order>:
    /// //     views.update(&order.page, |n| *n += 1).await?;  // at order.created_ms
    /// //     let that_minute = views.get(&order.page).value().await?;
    /// # Ok(()) }
    /// ```
    pub fn relative_to_field<E, F>(mut self, field: F) -> Self
    where
        E: DeserializeOwned + 'static,
        F: Fn(&E) -> i64 + Send + Sync + 'static,
    {
        self.relative = RelativeTo::Field(Arc::new(move |raw: &Bytes, codec: &CodecChain| {
            let value = codec.decode::<E>(raw.clone()).map_err(|e| {
                format!(
                    "not a {} (codec {}): {e}",
                    std::any::type_name::<E>(),
                    codec.name()
                )
            })?;
            Ok(field(&value))
        }));
        self
    }

    /// Called with the key, the window and its final value when an expired
    /// window is removed. At least once: a worker that crashes after the
    /// call but before the next commit calls it again after recovery.
    pub fn on_window_close(
        mut self,
        f: impl Fn(&K, WindowRange, &V) + Send + Sync + 'static,
    ) -> Self {
        self.on_close = Some(Arc::new(f));
        self
    }

    /// Register the table, its changelog, and the cleanup timer.
    pub fn build(self) -> Result<WindowedTable<K, V>> {
        let name = self.table.name.clone();
        if let Some(message) = self.error {
            return Err(Error::config(format!("table {name:?} window"), message));
        }
        let app = self.table.app.clone();
        if let RelativeTo::Field(_) = self.relative {
            // Streams record the raw value of each event from now on.
            app.inner.record_event_values();
        }
        let table = self.table.rekey::<(K, i64, i64)>().build()?;
        let inner = Arc::new(WindowedInner {
            table,
            window: self.window,
            expires_ms: ms(self.expires),
            relative: self.relative,
            on_close: self.on_close,
            merge: self.merge,
            clock: Clock::new(),
            state: Mutex::new(WindowState::default()),
        });
        let w = WindowedTable { inner };
        let interval = app.inner.settings().table_cleanup_interval;
        let timer = w.clone();
        app.timer(format!("{name}-window-cleanup"), interval, move |_app| {
            let timer = timer.clone();
            async move {
                timer.remove_expired().await?;
                Ok(())
            }
        });
        Ok(w)
    }
}
