//! A table's cache: per partition, the values of recently used keys (with
//! second-chance eviction), the keys changed since the last flush, and a
//! growing Bloom filter of the keys a partition's store may hold.

use std::collections::HashMap;
use std::hash::Hash;

use bytes::Bytes;

use crate::drivers::transport::Delivery;

/// An encoded table write: key and value (`None` deletes).
pub(super) type Op = (Bytes, Option<Bytes>);

pub(super) struct Slot<V> {
    /// `None`: known to be absent (deleted or never written).
    pub(super) value: Option<V>,
    /// Changed since the last flush.
    pub(super) dirty: bool,
    /// Used since the last eviction sweep passed it (second chance).
    pub(super) used: bool,
}

impl<V> Slot<V> {
    pub(super) fn new(value: Option<V>, dirty: bool) -> Self {
        Slot {
            value,
            dirty,
            used: true,
        }
    }
}

/// Keys a table caches by default (see [`TableBuilder::cache_capacity`](super::TableBuilder::cache_capacity)).
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

pub(super) struct Part<K, V> {
    pub(super) cache: HashMap<K, Slot<V>, ahash::RandomState>,
    /// Keys changed since the last flush, each once (coalescing mode).
    pub(super) dirty: Vec<K>,
    /// Encoded ops not yet in the store (per-write mode).
    pub(super) pending: Vec<(Bytes, Option<Bytes>)>,
    /// Changelog deliveries not yet awaited (per-write mode).
    pub(super) deliveries: Vec<Delivery>,
    /// What a cache miss may skip (see `Table::read_missing`).
    pub(super) known: Known,
    /// Bumped whenever a flush starts moving this partition's changes to the store.
    pub(super) store_epoch: u64,
}

/// What is known of a partition's store, for cache misses.
pub(super) enum Known {
    /// Not looked yet.
    Unchecked,
    /// The store held data (or may be written by others): read on every miss.
    Unfiltered,
    /// The store was empty: it holds at most the keys in this filter.
    Filter(KeyFilter),
}

/// A growing Bloom filter of key hashes: layers of 10 bits per key, each
/// twice the size of the one before, 4 probes. No false negatives.
#[derive(Default)]
pub(super) struct KeyFilter {
    pub(super) layers: Vec<(Vec<u64>, usize)>,
}

impl KeyFilter {
    pub(super) const FIRST_KEYS: usize = 4096;

    pub(super) fn probes(hash: u64, bits: usize) -> impl Iterator<Item = usize> {
        let h2 = hash.rotate_left(32) | 1;
        let mask = bits as u64 - 1;
        (0..4u64).map(move |i| (hash.wrapping_add(i.wrapping_mul(h2)) & mask) as usize)
    }

    pub(super) fn insert(&mut self, hash: u64) {
        let full = match self.layers.last() {
            None => true,
            Some((words, n)) => *n * 10 >= words.len() * 64,
        };
        if full {
            let keys = Self::FIRST_KEYS << self.layers.len().min(20);
            let bits = (keys * 10).next_power_of_two();
            self.layers.push((vec![0; bits / 64], 0));
        }
        if let Some((words, n)) = self.layers.last_mut() {
            let bits = words.len() * 64;
            for b in Self::probes(hash, bits) {
                words[b / 64] |= 1 << (b % 64);
            }
            *n += 1;
        }
    }

    pub(super) fn may_contain(&self, hash: u64) -> bool {
        self.layers.iter().any(|(words, _)| {
            let bits = words.len() * 64;
            Self::probes(hash, bits).all(|b| words[b / 64] & (1 << (b % 64)) != 0)
        })
    }
}

impl<K: Hash + Eq, V> Part<K, V> {
    /// `key` (by hash) may reach the store from here.
    pub(super) fn note_stored(&mut self, hash: u64) {
        if let Known::Filter(f) = &mut self.known {
            f.insert(hash);
        }
    }

    /// Cache a key that was not cached, changed (it goes out at the next flush).
    pub(super) fn insert_changed(
        &mut self,
        key: K,
        hash: u64,
        value: Option<V>,
        capacity: usize,
        flushing: bool,
    ) where
        K: Clone,
    {
        self.make_room(capacity, flushing);
        self.note_stored(hash);
        self.cache.insert(key.clone(), Slot::new(value, true));
        self.dirty.push(key);
    }

    /// Make room for one more key when the cache holds `capacity` keys:
    /// evict about an eighth of the capacity of clean entries, unused ones
    /// first (second chance: a sweep clears the used mark of those it keeps).
    /// Changed keys, and everything while a flush is storing values or while
    /// per-write ops wait for the store, stay: their values are in no store.
    pub(super) fn make_room(&mut self, capacity: usize, flushing: bool) {
        if self.cache.len() >= capacity {
            self.shrink(capacity, flushing);
        }
    }

    /// After a flush stored the changed keys: back within `capacity`.
    pub(super) fn trim(&mut self, capacity: usize) {
        if self.cache.len() > capacity {
            self.shrink(capacity, false);
        }
    }

    pub(super) fn shrink(&mut self, capacity: usize, flushing: bool) {
        let len = self.cache.len();
        if flushing || !self.pending.is_empty() {
            return;
        }
        let target = capacity - capacity / 8 - 1;
        let mut excess = (len - target.min(len)).max(1);
        if len - self.dirty.len().min(len) < excess {
            // Mostly changed keys: grow until the next flush cleans them.
            return;
        }
        for pass in 0..2 {
            self.cache.retain(|_, slot| {
                if excess == 0 || slot.dirty {
                    return true;
                }
                if slot.used && pass == 0 {
                    slot.used = false;
                    return true;
                }
                excess -= 1;
                false
            });
            if excess == 0 {
                break;
            }
        }
    }
}

impl<K, V> Default for Part<K, V> {
    fn default() -> Self {
        Part {
            cache: HashMap::default(),
            dirty: Vec::new(),
            pending: Vec::new(),
            deliveries: Vec::new(),
            known: Known::Unchecked,
            store_epoch: 0,
        }
    }
}

/// The partitions this worker serves, indexed by partition number.
pub(super) struct Parts<K, V>(pub(super) Vec<Option<Part<K, V>>>);

impl<K, V> Parts<K, V> {
    pub(super) fn get(&self, p: &u32) -> Option<&Part<K, V>> {
        self.0.get(*p as usize).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, p: &u32) -> Option<&mut Part<K, V>> {
        self.0.get_mut(*p as usize).and_then(Option::as_mut)
    }

    /// Served partition numbers, ascending.
    pub(super) fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some())
            .map(|(i, _)| i as u32)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Part<K, V>> + '_ {
        self.0.iter().flatten()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut Part<K, V>)> + '_ {
        self.0
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| p.as_mut().map(|p| (i as u32, p)))
    }

    pub(super) fn activate(&mut self, p: u32) {
        let i = p as usize;
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        if self.0[i].is_none() {
            self.0[i] = Some(Part::default());
        }
    }

    pub(super) fn remove(&mut self, p: &u32) {
        if let Some(slot) = self.0.get_mut(*p as usize) {
            *slot = None;
        }
    }
}
