//! Windows: ranges, the windowing strategies and the time a table reads.

use super::*;

/// A window: `[start_ms, end_ms)` in milliseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowRange {
    /// First millisecond in the window.
    pub start_ms: i64,
    /// First millisecond after the window.
    pub end_ms: i64,
}

impl WindowRange {
    /// Whether `t_ms` falls in the window.
    pub fn contains(&self, t_ms: i64) -> bool {
        self.start_ms <= t_ms && t_ms < self.end_ms
    }
}

impl fmt::Display for WindowRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}) ms", self.start_ms, self.end_ms)
    }
}

/// A windowing strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Back-to-back windows of `size`, aligned to the epoch.
    Tumbling {
        /// Window length (ms).
        size_ms: i64,
    },
    /// Windows of `size` starting every `step` (aligned to the epoch); a time
    /// falls in `size / step` of them.
    Hopping {
        /// Window length (ms).
        size_ms: i64,
        /// Distance between window starts (ms).
        step_ms: i64,
    },
    /// One window per event time `t`: `[t - before, t + after]`.
    Sliding {
        /// Reach before the event (ms).
        before_ms: i64,
        /// Reach after the event (ms).
        after_ms: i64,
    },
    /// Per key, sessions of events less than `gap` apart: `[first event,
    /// last event + gap)`. An event joins every session it comes within
    /// `gap` of (merging them). `ranges(t)` gives the session an event
    /// starts when it joins none.
    Session {
        /// Inactivity that ends a session (ms).
        gap_ms: i64,
    },
}

impl Window {
    /// The windows that contain `t_ms`, earliest start first.
    pub fn ranges(&self, t_ms: i64) -> Vec<WindowRange> {
        match *self {
            Window::Tumbling { size_ms } => {
                let start = t_ms - t_ms.rem_euclid(size_ms);
                vec![WindowRange {
                    start_ms: start,
                    end_ms: start + size_ms,
                }]
            }
            Window::Hopping { size_ms, step_ms } => {
                // Starts k*step with start <= t < start + size.
                let last = t_ms.div_euclid(step_ms);
                let first = (t_ms - size_ms).div_euclid(step_ms) + 1;
                (first..=last)
                    .map(|k| WindowRange {
                        start_ms: k * step_ms,
                        end_ms: k * step_ms + size_ms,
                    })
                    .collect()
            }
            Window::Sliding {
                before_ms,
                after_ms,
            } => vec![WindowRange {
                start_ms: t_ms - before_ms,
                end_ms: t_ms + after_ms + 1,
            }],
            Window::Session { gap_ms } => vec![WindowRange {
                start_ms: t_ms,
                end_ms: t_ms + gap_ms,
            }],
        }
    }

    /// The window a read at `t_ms` looks at: the latest-starting one that
    /// contains it (as Faust's `current`).
    pub fn current(&self, t_ms: i64) -> WindowRange {
        match self.ranges(t_ms).last() {
            Some(r) => *r,
            None => WindowRange {
                start_ms: t_ms,
                end_ms: t_ms + 1,
            },
        }
    }
}

/// Which time updates and [`WindowSet::value`] use.
pub(super) enum RelativeTo {
    /// The current event's message timestamp.
    Stream,
    /// The wall clock.
    Now,
    /// A field of the current event's value.
    Field(FieldTime),
}

impl RelativeTo {
    /// Whether the time is event time (so it advances the partition's
    /// latest time, against which windows expire).
    pub(super) fn is_event_time(&self) -> bool {
        !matches!(self, RelativeTo::Now)
    }
}

/// Decodes a message value with its codec and returns the time in it
/// (`relative_to_field`'s extractor, its input type erased).
pub(super) type FieldTime = Arc<dyn Fn(&Bytes, &CodecChain) -> Result<i64, String> + Send + Sync>;

/// Called with the key, the window and its final value when a window expires.
pub type OnWindowClose<K, V> = Arc<dyn Fn(&K, WindowRange, &V) + Send + Sync>;
