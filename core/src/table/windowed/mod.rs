//! Windowed tables: a value per key *and* time window.
//!
//! A windowed table is a [`Table`] keyed by `(key, window start, window end)`
//! (milliseconds since the epoch, end exclusive). An update at time `t`
//! changes the value of every window that contains `t` (one for tumbling and
//! sliding windows, `size / step` for hopping ones). Session windows
//! ([`TableBuilder::session`]) are per key: an event within `gap` of a
//! session extends it, one within `gap` of two merges them (with the
//! table's merge function), otherwise it starts a new one.
//!
//! Which time [`update`](WindowedTable::update), [`set`](WindowedTable::set),
//! [`WindowSet::value`] and [`WindowSet::delta`] use is the table's
//! *relative-to* setting, one of three:
//!
//! - [`relative_to_stream`](WindowedTableBuilder::relative_to_stream) (the
//!   default): the current event's message timestamp;
//! - [`relative_to_now`](WindowedTableBuilder::relative_to_now): the wall
//!   clock;
//! - [`relative_to_field`](WindowedTableBuilder::relative_to_field): a time
//!   taken from the current event's *value* (e.g. an order's `created_ms`),
//!   decoded from the message with its topic's value codec.
//!
//! Outside a stream, or for an event from a channel or an iterator (no
//! message), the event-time settings fall back to the event's timestamp,
//! else the wall clock. The `*_at` methods ([`update_at`](WindowedTable::update_at),
//! [`set_at`](WindowedTable::set_at), [`WindowSet::at`]) take the time
//! explicitly; [`WindowSet::current`] is always the window of the event's
//! message timestamp and [`WindowSet::now`] that of the wall clock.
//!
//! Windows expire `expires` after their end, measured against the latest
//! event time (message timestamp or field time) seen in their partition (or
//! the wall clock with `relative_to_now`). Every `table_cleanup_interval`
//! expired windows are deleted (from the table, its store and, by a
//! tombstone, its changelog), after the
//! [`on_window_close`](WindowedTableBuilder::on_window_close) callback
//! received the key, the window and its final value. The changelog is
//! `compact,delete` with `retention.ms = expires`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Table, TableBuilder};
use crate::drivers::codec::CodecChain;
use crate::error::{Error, Result};
use crate::flow::event;

mod builder;
mod state;
mod window;

pub use builder::WindowedTableBuilder;
use builder::{ms, Merge};
use state::{Clock, WindowState};
use window::{FieldTime, RelativeTo};
pub use window::{OnWindowClose, Window, WindowRange};
struct WindowedInner<K, V> {
    table: Table<(K, i64, i64), V>,
    window: Window,
    expires_ms: i64,
    relative: RelativeTo,
    on_close: Option<OnWindowClose<K, V>>,
    merge: Option<Merge<V>>,
    clock: Clock,
    state: Mutex<WindowState<K>>,
}

/// A table with a value per key and time window; see the [module docs](self).
pub struct WindowedTable<K, V> {
    inner: Arc<WindowedInner<K, V>>,
}

impl<K, V> Clone for WindowedTable<K, V> {
    fn clone(&self) -> Self {
        WindowedTable {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> fmt::Debug for WindowedTable<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WindowedTable({:?}, {:?})",
            self.inner.table.inner.name, self.inner.window
        )
    }
}

impl<K, V> WindowedTable<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The table underneath, keyed by `(key, window start, window end)`.
    pub fn table(&self) -> &Table<(K, i64, i64), V> {
        &self.inner.table
    }

    /// The windowing strategy.
    pub fn window(&self) -> Window {
        self.inner.window
    }

    /// The time updates use: the current event's timestamp (relative to the
    /// stream), the wall clock, or the time in the event's value.
    fn relative_ms(&self) -> Result<i64> {
        match &self.inner.relative {
            RelativeTo::Now => Ok(self.inner.clock.now_ms()),
            RelativeTo::Stream => Ok(event_time_ms().unwrap_or_else(|| self.inner.clock.now_ms())),
            RelativeTo::Field(field) => self.field_time_ms(field),
        }
    }

    /// The time in the current event's value; for an event without a
    /// message (or outside a stream) its timestamp, else the wall clock.
    fn field_time_ms(&self, field: &FieldTime) -> Result<i64> {
        let Some(cell) = event::current() else {
            return Ok(self.inner.clock.now_ms());
        };
        let info = cell.get();
        let at = info.as_ref().and_then(event::EventInfo::coordinates);
        if let (Some((raw, codec)), Some(at)) = (cell.raw_value(), at) {
            return field(&raw, &codec).map_err(|message| Error::EventTime {
                table: self.inner.table.name().to_string(),
                at,
                message,
            });
        }
        Ok(info
            .and_then(|i| i.timestamp_ms)
            .unwrap_or_else(|| self.inner.clock.now_ms()))
    }

    /// The wall clock (milliseconds since the epoch; tokio's clock, so
    /// virtual time moves it).
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The partition a write of `key` goes to: the current event's, else
    /// the key's by the partitioner.
    fn partition(&self, key: &K) -> Result<u32> {
        self.inner.table.write_partition_of(key)
    }

    /// Change the value of `key` in every window containing the table's
    /// relative time (see [`update_at`](Self::update_at)).
    pub async fn update(&self, key: &K, f: impl Fn(&mut V)) -> Result<()> {
        self.update_at(key, self.relative_ms()?, f).await
    }

    /// Change the value of `key` in every window containing `t_ms`,
    /// starting from the default when missing. Windows already expired in
    /// the partition (a late event) are left alone.
    pub async fn update_at(&self, key: &K, t_ms: i64, f: impl Fn(&mut V)) -> Result<()> {
        if let Window::Session { gap_ms } = self.inner.window {
            return self.update_session(key, t_ms, gap_ms, None, &f).await;
        }
        let p = self.partition(key)?;
        let ranges = self.track(p, key, t_ms);
        for r in ranges {
            self.inner
                .table
                .update_in(p, &(key.clone(), r.start_ms, r.end_ms), &f)
                .await?;
        }
        Ok(())
    }

    /// Set `key` to `value` in every window containing the relative time.
    pub async fn set(&self, key: &K, value: V) -> Result<()> {
        self.set_at(key, self.relative_ms()?, value).await
    }

    /// Set `key` to `value` in every window containing `t_ms`.
    pub async fn set_at(&self, key: &K, t_ms: i64, value: V) -> Result<()> {
        if let Window::Session { gap_ms } = self.inner.window {
            return self
                .update_session(key, t_ms, gap_ms, Some(value), &|_| {})
                .await;
        }
        let p = self.partition(key)?;
        for r in self.track(p, key, t_ms) {
            self.inner
                .table
                .set_in(p, (key.clone(), r.start_ms, r.end_ms), value.clone())
                .await?;
        }
        Ok(())
    }

    /// An event of `key` at `t_ms` in a session table: start a session, or
    /// extend (and merge) the sessions it comes within `gap` of; then set
    /// the value (`set`) or change it with `f`.
    async fn update_session<F: Fn(&mut V)>(
        &self,
        key: &K,
        t_ms: i64,
        gap_ms: i64,
        set: Option<V>,
        f: &F,
    ) -> Result<()> {
        let p = self.partition(key)?;
        self.load_stored_windows().await?;
        let (new, old) = {
            let mut state = self.inner.state.lock();
            let part = state.parts.entry(p).or_default();
            if self.inner.relative.is_event_time() {
                part.latest_ms = Some(part.latest_ms.map_or(t_ms, |l| l.max(t_ms)));
            }
            if self
                .horizon(part.latest_ms)
                .is_some_and(|h| t_ms + gap_ms <= h)
            {
                return Ok(()); // late: its session would be expired already
            }
            let old: Vec<WindowRange> = part
                .sessions
                .get(key)
                .map(|m| {
                    m.iter()
                        .filter(|(s, e)| t_ms + gap_ms > **s && t_ms < **e)
                        .map(|(s, e)| WindowRange {
                            start_ms: *s,
                            end_ms: *e,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let new = WindowRange {
                start_ms: old.iter().map(|r| r.start_ms).fold(t_ms, i64::min),
                end_ms: old.iter().map(|r| r.end_ms).fold(t_ms + gap_ms, i64::max),
            };
            for r in &old {
                part.unindex(key, *r);
            }
            part.index(key, new, true);
            (new, old)
        };
        let table = &self.inner.table;
        let wkey = |r: WindowRange| (key.clone(), r.start_ms, r.end_ms);
        if set.is_none() && old.len() == 1 && old[0] == new {
            table.update_in(p, &wkey(new), f).await?;
            return Ok(());
        }
        let mut value = match set {
            Some(v) => v,
            None => {
                let mut acc: Option<V> = None;
                for r in &old {
                    if let Some(v) = table.load(p, &wkey(*r)).await? {
                        acc = Some(match (acc, &self.inner.merge) {
                            (Some(a), Some(m)) => m(a, v),
                            _ => v,
                        });
                    }
                }
                match acc {
                    Some(v) => v,
                    None => table.inner.default_value()?,
                }
            }
        };
        f(&mut value);
        for r in old.iter().filter(|r| **r != new) {
            table.delete_in(p, &wkey(*r)).await?;
        }
        table.set_in(p, wkey(new), value).await
    }

    /// Note `t_ms` as seen in partition `p` and return the windows of `t_ms`
    /// that are not expired, recording `key` in each.
    fn track(&self, p: u32, key: &K, t_ms: i64) -> Vec<WindowRange> {
        let mut state = self.inner.state.lock();
        let part = state.parts.entry(p).or_default();
        if self.inner.relative.is_event_time() {
            part.latest_ms = Some(part.latest_ms.map_or(t_ms, |l| l.max(t_ms)));
        }
        let horizon = self.horizon(part.latest_ms);
        let mut out = self.inner.window.ranges(t_ms);
        out.retain(|r| horizon.is_none_or(|h| r.end_ms > h));
        for r in &out {
            part.index(key, *r, false);
        }
        out
    }

    /// Windows ending at or before this are expired.
    fn horizon(&self, latest_ms: Option<i64>) -> Option<i64> {
        let latest = match self.inner.relative {
            RelativeTo::Now => Some(self.inner.clock.now_ms()),
            RelativeTo::Stream | RelativeTo::Field(_) => latest_ms,
        };
        latest.map(|l| l.saturating_sub(self.inner.expires_ms))
    }

    /// The windows of `key`, read relative to a time.
    pub fn get(&self, key: &K) -> WindowSet<'_, K, V> {
        WindowSet {
            table: self,
            key: key.clone(),
        }
    }

    async fn value_at(&self, key: &K, t_ms: i64) -> Result<Option<V>> {
        if let Window::Session { .. } = self.inner.window {
            // The key's session that contains t.
            let p = self.partition(key)?;
            self.load_stored_windows().await?;
            let r = {
                let state = self.inner.state.lock();
                state
                    .parts
                    .get(&p)
                    .and_then(|part| part.sessions.get(key))
                    .and_then(|m| m.range(..=t_ms).next_back())
                    .filter(|(_, e)| **e > t_ms)
                    .map(|(s, e)| (*s, *e))
            };
            return match r {
                Some((s, e)) => self.inner.table.load(p, &(key.clone(), s, e)).await,
                None => Ok(None),
            };
        }
        let r = self.inner.window.current(t_ms);
        self.inner
            .table
            .get(&(key.clone(), r.start_ms, r.end_ms))
            .await
    }

    /// Every window of `key` in the served partitions with its value, in
    /// window order.
    pub async fn windows(&self, key: &K) -> Result<Vec<(WindowRange, V)>> {
        let candidates: Vec<(u32, WindowRange)> = {
            self.load_stored_windows().await?;
            let state = self.inner.state.lock();
            state
                .parts
                .iter()
                .flat_map(|(p, part)| {
                    part.windows
                        .iter()
                        .filter(|(_, keys)| keys.contains(key))
                        .map(move |((end, start), _)| {
                            (
                                *p,
                                WindowRange {
                                    start_ms: *start,
                                    end_ms: *end,
                                },
                            )
                        })
                })
                .collect()
        };
        let mut out = Vec::new();
        for (p, r) in candidates {
            if let Some(v) = self
                .inner
                .table
                .load(p, &(key.clone(), r.start_ms, r.end_ms))
                .await?
            {
                out.push((r, v));
            }
        }
        out.sort_by_key(|(r, _)| *r);
        Ok(out)
    }

    /// Index the windows stored in partitions served since the last call
    /// (recovered from the changelog or kept in a durable store), and forget
    /// those of partitions no longer served.
    async fn load_stored_windows(&self) -> Result<()> {
        let active: BTreeSet<u32> = self.inner.table.active_partitions().into_iter().collect();
        let missing: Vec<u32> = {
            let mut state = self.inner.state.lock();
            state.loaded.retain(|p| active.contains(p));
            state.parts.retain(|p, _| active.contains(p));
            active
                .iter()
                .filter(|p| !state.loaded.contains(p))
                .copied()
                .collect()
        };
        for p in missing {
            let items = self.inner.table.items_in(p).await?;
            let mut state = self.inner.state.lock();
            let part = state.parts.entry(p).or_default();
            let session = matches!(self.inner.window, Window::Session { .. });
            for ((k, start, end), _) in items {
                let r = WindowRange {
                    start_ms: start,
                    end_ms: end,
                };
                part.index(&k, r, session);
            }
            state.loaded.insert(p);
        }
        Ok(())
    }

    /// Remove every expired window (what the cleanup timer runs every
    /// `table_cleanup_interval`), calling `on_window_close` with its final
    /// value first; returns how many (key, window) entries were removed.
    pub async fn remove_expired(&self) -> Result<usize> {
        self.load_stored_windows().await?;
        let expired: Vec<(u32, WindowRange, Vec<K>)> = {
            let mut state = self.inner.state.lock();
            let mut out = Vec::new();
            for (p, part) in state.parts.iter_mut() {
                let Some(h) = self.horizon(part.latest_ms) else {
                    continue;
                };
                let keep = part.windows.split_off(&(h + 1, i64::MIN));
                let gone = std::mem::replace(&mut part.windows, keep);
                for ((end, start), keys) in gone {
                    for k in &keys {
                        if let Some(m) = part.sessions.get_mut(k) {
                            m.remove(&start);
                            if m.is_empty() {
                                part.sessions.remove(k);
                            }
                        }
                    }
                    out.push((
                        *p,
                        WindowRange {
                            start_ms: start,
                            end_ms: end,
                        },
                        keys.into_iter().collect(),
                    ));
                }
            }
            out
        };
        let mut removed = 0;
        for (p, r, keys) in expired {
            for k in keys {
                let wkey = (k, r.start_ms, r.end_ms);
                let step = async {
                    if let Some(v) = self.inner.table.load(p, &wkey).await? {
                        if let Some(f) = &self.inner.on_close {
                            f(&wkey.0, r, &v);
                        }
                        self.inner.table.delete_in(p, &wkey).await?;
                        return Ok::<bool, Error>(true);
                    }
                    Ok(false)
                };
                match step.await {
                    Ok(true) => removed += 1,
                    Ok(false) => {}
                    // Moved to another worker meanwhile: it expires it there.
                    Err(Error::PartitionNotAssigned { .. }) => {}
                    Err(e) => {
                        tracing::error!(table = self.inner.table.name(), partition = p, window = %r, error = %e, "cannot remove an expired window");
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// The current event's timestamp, if there is one.
fn event_time_ms() -> Option<i64> {
    event::current()?.get()?.timestamp_ms
}

/// The windows of one key; pick the time to read at.
pub struct WindowSet<'a, K, V> {
    table: &'a WindowedTable<K, V>,
    key: K,
}

impl<K, V> WindowSet<'_, K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The window of the current event's message timestamp (wall clock
    /// outside a stream), whatever the table's relative-to setting.
    pub async fn current(&self) -> Result<Option<V>> {
        let t = event_time_ms().unwrap_or_else(|| self.table.now_ms());
        self.table.value_at(&self.key, t).await
    }

    /// The window of the wall clock now.
    pub async fn now(&self) -> Result<Option<V>> {
        self.table.value_at(&self.key, self.table.now_ms()).await
    }

    /// The window of the table's relative time minus `d`.
    pub async fn delta(&self, d: Duration) -> Result<Option<V>> {
        let t = self.table.relative_ms()?.saturating_sub(ms(d));
        self.table.value_at(&self.key, t).await
    }

    /// The window of the table's relative time (message timestamp, wall
    /// clock or the time in the event's value).
    pub async fn value(&self) -> Result<Option<V>> {
        let t = self.table.relative_ms()?;
        self.table.value_at(&self.key, t).await
    }

    /// The window containing `t_ms`.
    pub async fn at(&self, t_ms: i64) -> Result<Option<V>> {
        self.table.value_at(&self.key, t_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_range_contains_the_time(t in -1_000_000i64..1_000_000, size in 1i64..5000, step in 1i64..5000) {
            let tumbling = Window::Tumbling { size_ms: size }.ranges(t);
            prop_assert_eq!(tumbling.len(), 1);
            prop_assert!(tumbling[0].contains(t));
            prop_assert_eq!(tumbling[0].start_ms.rem_euclid(size), 0);
            let hopping = Window::Hopping { size_ms: size, step_ms: step }.ranges(t);
            for r in &hopping {
                prop_assert!(r.contains(t));
                prop_assert_eq!(r.start_ms.rem_euclid(step), 0);
                prop_assert_eq!(r.end_ms - r.start_ms, size);
            }
            // Exactly the windows k*step that contain t: none missed.
            let expected = (-2_000_000i64 / step - 2..=2_000_000 / step + 2)
                .filter(|k| k * step <= t && t < k * step + size)
                .count();
            prop_assert_eq!(hopping.len(), expected);
        }
    }

    #[test]
    fn the_changelog_is_compact_delete_with_retention_expires() {
        let app = crate::App::builder("w")
            .env(Default::default())
            .build()
            .unwrap();
        let t = app
            .table::<String, u64>("views")
            .tumbling(Duration::from_secs(60), Duration::from_secs(3600))
            .build()
            .unwrap();
        let spec = t.inner.table.inner.changelog.spec(&app.inner);
        assert_eq!(spec.name, "w-views-changelog");
        assert!(spec.compacting && spec.deleting);
        assert_eq!(spec.retention, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn sliding_and_current() {
        let w = Window::Sliding {
            before_ms: 10,
            after_ms: 5,
        };
        assert_eq!(
            w.ranges(100),
            vec![WindowRange {
                start_ms: 90,
                end_ms: 106
            }]
        );
        let h = Window::Hopping {
            size_ms: 10,
            step_ms: 5,
        };
        assert_eq!(
            h.current(12),
            WindowRange {
                start_ms: 10,
                end_ms: 20
            }
        );
        assert_eq!(h.ranges(12).len(), 2);
    }
}
