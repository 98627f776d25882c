//! A partition's offsets as messages arrive: where a fetch answer skipped
//! offsets, and whether fetching them again found them.
//!
//! Offsets can be missing for good (compaction, transaction markers), but a
//! broker may also answer a fetch with a later batch while an earlier one is
//! not stored yet (tansu 0.6 with concurrent producers). A consumer trusting
//! that answer moves past records it never saw, and a commit after them
//! loses them silently. So a jump is fetched again once from the offset
//! expected; a jump that is there again is taken as it is. The conductor
//! uses this for the group consumer, drivers may for their partition readers.

/// See the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffsetSequence {
    /// The offset after the last message passed (`None` before the first).
    next: Option<i64>,
    /// The offset a jump is being fetched again from.
    refetched: Option<i64>,
}

/// What a message's offset says about its partition's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The first message, the expected offset, or one passed before.
    InOrder,
    /// The offset expected after fetching again: the fetch answer had
    /// skipped it.
    Recovered(i64),
    /// A jump past the expected offset that was fetched again: the offsets
    /// from the one given are missing for good (the message is passed).
    Missing(i64),
    /// A jump past the expected offset: fetch again from it, drop this
    /// message (it comes again) and call [`OffsetSequence::refetching`];
    /// if fetching again is impossible, call [`OffsetSequence::passed`].
    Jump(i64),
}

impl OffsetSequence {
    /// Take note of a message at `offset`.
    pub fn observe(&mut self, offset: i64) -> Seen {
        let Some(expected) = self.next else {
            self.passed(offset);
            return Seen::InOrder;
        };
        if offset < expected {
            return Seen::InOrder;
        }
        let seen = if offset == expected {
            match self.refetched {
                Some(r) if r == expected => Seen::Recovered(offset),
                _ => Seen::InOrder,
            }
        } else if self.refetched == Some(expected) {
            Seen::Missing(expected)
        } else {
            return Seen::Jump(expected);
        };
        self.passed(offset);
        seen
    }

    /// The partition is fetched again from `expected`.
    pub fn refetching(&mut self, expected: i64) {
        self.refetched = Some(expected);
    }

    /// A message at `offset` was passed on (a jump taken as it is).
    pub fn passed(&mut self, offset: i64) {
        self.next = Some(offset + 1);
        self.refetched = None;
    }
}

#[cfg(test)]
mod tests {
    use super::{OffsetSequence, Seen};

    fn at(offset: i64) -> OffsetSequence {
        let mut s = OffsetSequence::default();
        s.passed(offset - 1);
        s
    }

    #[test]
    fn the_first_message_sets_the_sequence() {
        let mut s = OffsetSequence::default();
        assert_eq!(s.observe(42), Seen::InOrder);
        assert_eq!(s, at(43));
    }

    #[test]
    fn a_skip_is_fetched_again_once_and_recovered() {
        let mut s = at(10);
        assert_eq!(s.observe(10), Seen::InOrder);
        assert_eq!(s.observe(13), Seen::Jump(11), "11 and 12 skipped");
        s.refetching(11);
        assert_eq!(s.observe(11), Seen::Recovered(11));
        assert_eq!(s.observe(12), Seen::InOrder);
        assert_eq!(s.observe(13), Seen::InOrder);
        assert_eq!(s, at(14));
    }

    #[test]
    fn a_gap_that_is_there_again_is_taken() {
        let mut s = at(3);
        assert_eq!(s.observe(4), Seen::Jump(3));
        s.refetching(3);
        assert_eq!(s.observe(4), Seen::Missing(3), "3 is a marker");
        assert_eq!(s.observe(5), Seen::InOrder);
        assert_eq!(s.observe(8), Seen::Jump(6), "a later gap is checked again");
    }

    #[test]
    fn offsets_passed_before_are_in_order() {
        let mut s = at(7);
        assert_eq!(s.observe(5), Seen::InOrder);
        assert_eq!(s, at(7), "the expected offset does not go back");
    }
}
