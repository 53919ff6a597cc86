//! Timers: a binary heap of deadlines with lazy deletion.
//!
//! Setting, resetting and cancelling are O(log n) or O(1); nothing scans all timers.
//! A reset pushes a new heap entry and makes the old one stale (its sequence number
//! no longer matches the timer's); stale entries are skipped when they reach the top
//! and the heap is rebuilt when they outnumber the live ones, so memory stays
//! proportional to the number of live timers. Equal deadlines fire in the order they
//! were set (the sequence number breaks ties).
//!
//! Every timer has an [`Owner`], and every call that names a timer by its key says
//! whose timer it means: a user's `TimerId` (stale, or forged from another timer's
//! key) never reaches the reactor's own timers (connect timeouts, linger), and an
//! internal key never reaches a user's timer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::registry::{Key, Layout, Registry};

/// Who set a timer, and so who may move or cancel it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Owner {
    /// The application, through a `TimerId`.
    User,
    /// The reactor itself (connect timeouts, linger, accept retries).
    Reactor,
}

struct Entry<A> {
    owner: Owner,
    /// `None` while the timer's action is running (it fired and was not re-armed yet).
    deadline: Option<Instant>,
    seq: u64,
    action: Option<A>,
}

pub(crate) struct Timers<A> {
    entries: Registry<Entry<A>>,
    heap: BinaryHeap<Reverse<(Instant, u64, u32, u32)>>,
    seq: u64,
}

impl<A> Timers<A> {
    pub(crate) fn new() -> Timers<A> {
        Timers {
            // Timer keys are never tokens: 32-bit versions on every target.
            entries: Registry::with_layout(Layout::WIDE),
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn insert(&mut self, deadline: Instant, owner: Owner, action: A) -> Key {
        let seq = self.next_seq();
        let key = self.entries.insert(Entry {
            owner,
            deadline: Some(deadline),
            seq,
            action: Some(action),
        });
        self.push(deadline, seq, key);
        key
    }

    /// Moves the deadline of a pending (or currently firing) timer of `owner`.
    /// `false` if gone (or not `owner`'s).
    pub(crate) fn reset(&mut self, key: Key, owner: Owner, deadline: Instant) -> bool {
        let seq = self.next_seq();
        let Some(entry) = self.entries.get_mut(key).filter(|e| e.owner == owner) else {
            return false;
        };
        entry.deadline = Some(deadline);
        entry.seq = seq;
        self.push(deadline, seq, key);
        true
    }

    /// Removes a timer of `owner`; returns its action unless it is the one firing now.
    /// `None` if gone (or not `owner`'s).
    pub(crate) fn cancel(&mut self, key: Key, owner: Owner) -> Option<Option<A>> {
        if !self.contains(key, owner) {
            return None;
        }
        let entry = self.entries.remove(key)?;
        self.maybe_compact();
        Some(entry.action)
    }

    pub(crate) fn contains(&self, key: Key, owner: Owner) -> bool {
        matches!(self.entries.get(key), Some(e) if e.owner == owner)
    }

    pub(crate) fn deadline(&self, key: Key, owner: Owner) -> Option<Instant> {
        self.entries
            .get(key)
            .filter(|e| e.owner == owner)
            .and_then(|e| e.deadline)
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, seq, index, gen))) = self.heap.peek() {
            if self.is_live(seq, Key { index, gen }) {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes out the next timer due at `now`. The entry stays (so the action may
    /// reset or cancel it); hand the action back with [`Timers::finish`].
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(Key, A)> {
        loop {
            let &Reverse((deadline, seq, index, gen)) = self.heap.peek()?;
            let key = Key { index, gen };
            if !self.is_live(seq, key) {
                self.heap.pop();
                continue;
            }
            if deadline > now {
                return None;
            }
            self.heap.pop();
            let entry = self.entries.get_mut(key)?;
            entry.deadline = None;
            match entry.action.take() {
                Some(action) => return Some((key, action)),
                None => continue,
            }
        }
    }

    /// Returns a fired timer's action: kept if the timer was re-armed while it ran,
    /// dropped (and the timer removed) otherwise.
    pub(crate) fn finish(&mut self, key: Key, action: A) {
        if let Some(entry) = self.entries.get_mut(key) {
            if entry.deadline.is_some() {
                entry.action = Some(action);
            } else {
                self.entries.remove(key);
            }
        }
    }

    fn is_live(&self, seq: u64, key: Key) -> bool {
        matches!(self.entries.get(key), Some(e) if e.seq == seq && e.deadline.is_some())
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push(&mut self, deadline: Instant, seq: u64, key: Key) {
        self.heap.push(Reverse((deadline, seq, key.index, key.gen)));
        self.maybe_compact();
    }

    /// Rebuilds the heap without stale entries once they outnumber the live ones.
    fn maybe_compact(&mut self) {
        if self.heap.len() <= 2 * self.entries.len() + 64 {
            return;
        }
        let entries = &self.entries;
        let mut items = std::mem::take(&mut self.heap).into_vec();
        items.retain(|Reverse((_, seq, index, gen))| {
            matches!(entries.get(Key { index: *index, gen: *gen }),
                Some(e) if e.seq == *seq && e.deadline.is_some())
        });
        self.heap = BinaryHeap::from(items);
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use Owner::{Reactor, User};

    fn fire_all(t: &mut Timers<u32>, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some((key, a)) = t.pop_expired(now) {
            out.push(a);
            t.finish(key, a);
        }
        out
    }

    #[test]
    fn equal_deadlines_fire_in_insertion_order() {
        let mut t = Timers::new();
        let now = Instant::now();
        for i in 0..100 {
            t.insert(now, User, i);
        }
        assert_eq!(fire_all(&mut t, now), (0..100).collect::<Vec<_>>());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn reset_and_cancel() {
        let mut t = Timers::new();
        let now = Instant::now();
        let a = t.insert(now + Duration::from_millis(10), User, 1);
        let b = t.insert(now + Duration::from_millis(20), User, 2);
        let c = t.insert(now + Duration::from_millis(30), User, 3);
        assert!(t.reset(a, User, now + Duration::from_millis(40)));
        assert_eq!(t.cancel(b, User), Some(Some(2)));
        assert_eq!(t.cancel(b, User), None);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_millis(30)));
        assert_eq!(fire_all(&mut t, now + Duration::from_millis(35)), vec![3]);
        assert!(!t.contains(c, User));
        assert_eq!(fire_all(&mut t, now + Duration::from_millis(45)), vec![1]);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn rearm_while_firing_keeps_the_action() {
        let mut t = Timers::new();
        let now = Instant::now();
        let a = t.insert(now, User, 7);
        let (key, action) = t.pop_expired(now).unwrap();
        assert_eq!(key, a);
        assert!(t.reset(a, User, now + Duration::from_millis(5)));
        t.finish(key, action);
        assert!(t.contains(a, User));
        assert_eq!(t.pop_expired(now), None);
        assert_eq!(fire_all(&mut t, now + Duration::from_millis(5)), vec![7]);
    }

    #[test]
    fn many_resets_keep_the_heap_bounded() {
        let mut t = Timers::new();
        let now = Instant::now();
        let keys: Vec<_> = (0..100_000u32)
            .map(|i| t.insert(now + Duration::from_secs(1 + u64::from(i % 50)), User, i))
            .collect();
        for round in 0..10u64 {
            for k in &keys {
                t.reset(*k, User, now + Duration::from_secs(100 + round));
            }
        }
        assert!(t.heap_len() <= 2 * keys.len() + 64, "heap {}", t.heap_len());
        assert_eq!(t.len(), 100_000);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(109)));
    }

    #[test]
    fn a_key_reaches_only_its_owners_timers() {
        let mut t = Timers::new();
        let now = Instant::now();
        let internal = t.insert(now + Duration::from_secs(60), Reactor, 1);
        let user = t.insert(now + Duration::from_secs(60), User, 2);
        assert!(!t.reset(internal, User, now));
        assert_eq!(t.cancel(internal, User), None);
        assert_eq!(t.deadline(internal, User), None);
        assert!(!t.contains(internal, User));
        assert!(!t.reset(user, Reactor, now));
        assert_eq!(t.cancel(user, Reactor), None);
        assert_eq!(
            t.deadline(internal, Reactor),
            Some(now + Duration::from_secs(60))
        );
        assert_eq!(t.cancel(internal, Reactor), Some(Some(1)));
        assert_eq!(t.cancel(user, User), Some(Some(2)));
        assert_eq!(t.len(), 0);
    }
}
