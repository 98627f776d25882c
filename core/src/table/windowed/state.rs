//! Which windows each partition holds, and the clock windows expire by.

use super::*;

/// The wall clock as tokio sees it (so virtual time in tests moves it).
pub(super) struct Clock {
    pub(super) epoch_ms: i64,
    pub(super) started: tokio::time::Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        let epoch_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(ms)
            .unwrap_or(0);
        Clock {
            epoch_ms,
            started: tokio::time::Instant::now(),
        }
    }

    pub(super) fn now_ms(&self) -> i64 {
        self.epoch_ms + ms(self.started.elapsed())
    }
}

/// Per partition: the latest event time seen and the windows it holds.
pub(super) struct PartWindows<K> {
    pub(super) latest_ms: Option<i64>,
    /// (end, start) → keys with a value in that window.
    pub(super) windows: BTreeMap<(i64, i64), HashSet<K>>,
    /// Session windows: key → start → end of its sessions.
    pub(super) sessions: HashMap<K, BTreeMap<i64, i64>>,
}

impl<K> Default for PartWindows<K> {
    fn default() -> Self {
        PartWindows {
            latest_ms: None,
            windows: BTreeMap::new(),
            sessions: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> PartWindows<K> {
    pub(super) fn index(&mut self, key: &K, r: WindowRange, session: bool) {
        let keys = self.windows.entry((r.end_ms, r.start_ms)).or_default();
        if !keys.contains(key) {
            keys.insert(key.clone());
        }
        if session {
            self.sessions
                .entry(key.clone())
                .or_default()
                .insert(r.start_ms, r.end_ms);
        }
    }

    pub(super) fn unindex(&mut self, key: &K, r: WindowRange) {
        if let Some(keys) = self.windows.get_mut(&(r.end_ms, r.start_ms)) {
            keys.remove(key);
            if keys.is_empty() {
                self.windows.remove(&(r.end_ms, r.start_ms));
            }
        }
        if let Some(s) = self.sessions.get_mut(key) {
            s.remove(&r.start_ms);
            if s.is_empty() {
                self.sessions.remove(key);
            }
        }
    }
}

pub(super) struct WindowState<K> {
    pub(super) parts: BTreeMap<u32, PartWindows<K>>,
    /// Partitions whose stored windows are in `parts` (loaded after recovery).
    pub(super) loaded: BTreeSet<u32>,
}

impl<K> Default for WindowState<K> {
    fn default() -> Self {
        WindowState {
            parts: BTreeMap::new(),
            loaded: BTreeSet::new(),
        }
    }
}
