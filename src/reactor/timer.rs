//! Timers: a binary heap of deadlines with lazy deletion.
//!
//! Setting, resetting and cancelling are O(log n) or O(1); nothing scans all timers.
//! Each timer has at most one live heap entry, the one its `queued` names. A reset to
//! a later deadline (an idle timeout pushed back on every message) only records the
//! new deadline: O(1), nothing pushed; the entry is moved when it reaches the top of
//! the heap, once per period rather than once per reset. A reset to an earlier
//! deadline pushes a new entry and makes the old one stale. Stale entries are skipped
//! when they reach the top and the heap is rebuilt when they outnumber the live ones,
//! so memory stays proportional to the number of live timers. Equal deadlines fire in
//! the order they were set or last reset (the sequence number breaks ties).
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
    /// When the deadline was set or last reset: orders equal deadlines.
    seq: u64,
    /// The timer's live heap entry (deadline, seq): at or before `deadline`.
    queued: Option<(Instant, u64)>,
    action: Option<A>,
}

pub(crate) struct Timers<A> {
    entries: Registry<Entry<A>>,
    heap: BinaryHeap<Reverse<(Instant, u64, u32, u32)>>,
    seq: u64,
    /// Timers of [`Owner::User`] (firing ones included).
    user: usize,
}

impl<A> Timers<A> {
    pub(crate) fn new() -> Timers<A> {
        Timers {
            // Timer keys are never tokens: 32-bit versions on every target.
            entries: Registry::with_layout(Layout::WIDE),
            heap: BinaryHeap::new(),
            seq: 0,
            user: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn insert(&mut self, deadline: Instant, owner: Owner, action: A) -> Key {
        let seq = self.next_seq();
        if owner == Owner::User {
            self.user += 1;
        }
        let key = self.entries.insert(Entry {
            owner,
            deadline: Some(deadline),
            seq,
            queued: Some((deadline, seq)),
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
        match entry.queued {
            // Later than its heap entry: moved when that entry reaches the top.
            Some((queued, _)) if queued <= deadline => {}
            _ => {
                entry.queued = Some((deadline, seq));
                self.push(deadline, seq, key);
            }
        }
        self.settle_top();
        true
    }

    /// Removes a timer of `owner`; returns its action unless it is the one firing now.
    /// `None` if gone (or not `owner`'s).
    pub(crate) fn cancel(&mut self, key: Key, owner: Owner) -> Option<Option<A>> {
        if !self.contains(key, owner) {
            return None;
        }
        let entry = self.entries.remove(key)?;
        self.forget(entry.owner);
        self.maybe_compact();
        self.settle_top();
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

    /// The earliest live deadline: the top of the heap, which every change leaves
    /// settled (see [`Timers::settle_top`]).
    #[inline]
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|&Reverse((deadline, ..))| deadline)
    }

    /// Drops stale entries from the top of the heap and moves a timer reset to a
    /// later deadline to its place, until the top is a timer's true deadline. Called
    /// after every change that can unsettle the top, so that reading the next
    /// deadline is a peek.
    fn settle_top(&mut self) -> Option<(Instant, Key)> {
        loop {
            let &Reverse((deadline, seq, index, gen)) = self.heap.peek()?;
            let key = Key { index, gen };
            let Some(entry) = self.entries.get_mut(key) else {
                self.heap.pop();
                continue;
            };
            if entry.queued != Some((deadline, seq)) {
                self.heap.pop();
                continue;
            }
            match entry.deadline {
                Some(due) if (due, entry.seq) != (deadline, seq) => {
                    let later = (due, entry.seq);
                    entry.queued = Some(later);
                    self.heap.pop();
                    self.heap.push(Reverse((later.0, later.1, index, gen)));
                }
                _ => return Some((deadline, key)),
            }
        }
    }

    /// Takes out the next timer due at `now`. The entry stays (so the action may
    /// reset or cancel it); hand the action back with [`Timers::finish`].
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(Key, A)> {
        loop {
            let (deadline, key) = self.settle_top()?;
            if deadline > now {
                return None;
            }
            self.heap.pop();
            let action = self.entries.get_mut(key).and_then(|entry| {
                entry.deadline = None;
                entry.queued = None;
                entry.action.take()
            });
            self.settle_top();
            if let Some(action) = action {
                return Some((key, action));
            }
        }
    }

    /// Returns a fired timer's action: kept if the timer was re-armed while it ran,
    /// dropped (and the timer removed) otherwise.
    pub(crate) fn finish(&mut self, key: Key, action: A) {
        if let Some(entry) = self.entries.get_mut(key) {
            if entry.deadline.is_some() {
                entry.action = Some(action);
            } else if let Some(entry) = self.entries.remove(key) {
                self.forget(entry.owner);
            }
        }
    }

    fn forget(&mut self, owner: Owner) {
        if owner == Owner::User {
            self.user -= 1;
        }
    }

    /// Whether timers of the application exist (pending or firing).
    #[inline]
    pub(crate) fn has_user_timers(&self) -> bool {
        self.user > 0
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
        items.retain(|&Reverse((deadline, seq, index, gen))| {
            matches!(entries.get(Key { index, gen }),
                Some(e) if e.queued == Some((deadline, seq)))
        });
        self.heap = BinaryHeap::from(items);
        self.settle_top();
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
    fn the_next_deadline_is_read_without_changing_anything() {
        let mut t = Timers::new();
        let now = Instant::now();
        let ms = |n| now + Duration::from_millis(n);
        let a = t.insert(ms(10), User, 1);
        let b = t.insert(ms(20), User, 2);
        assert_eq!(t.next_deadline(), Some(ms(10)));
        t.reset(a, User, ms(30)); // the top moved later: the next is b
        assert_eq!(t.next_deadline(), Some(ms(20)));
        t.cancel(b, User); // the top cancelled
        assert_eq!(t.next_deadline(), Some(ms(30)));
        t.reset(a, User, ms(5));
        assert_eq!(t.next_deadline(), Some(ms(5)));
        assert_eq!(fire_all(&mut t, ms(5)), vec![1]);
        assert_eq!(t.next_deadline(), None);
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
        // Every reset was to a later deadline: nothing was pushed.
        assert_eq!(t.heap_len(), keys.len());
        assert_eq!(t.len(), 100_000);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(109)));
        // Resets to earlier deadlines push, and the heap stays bounded.
        for round in 0..10u64 {
            for k in &keys {
                t.reset(*k, User, now + Duration::from_secs(99 - round));
            }
        }
        assert!(t.heap_len() <= 2 * keys.len() + 64, "heap {}", t.heap_len());
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(90)));
    }

    #[test]
    fn a_timer_reset_later_fires_at_its_new_deadline_in_reset_order() {
        let mut t = Timers::new();
        let now = Instant::now();
        let ms = |n| now + Duration::from_millis(n);
        let a = t.insert(ms(10), User, 1);
        let b = t.insert(ms(30), User, 2);
        assert!(t.reset(a, User, ms(30))); // after b was set: fires after b
        let c = t.insert(ms(20), User, 3);
        assert!(t.reset(c, User, ms(25)));
        assert!(t.reset(c, User, ms(15))); // earlier again: pushes
        assert_eq!(t.next_deadline(), Some(ms(15)));
        assert_eq!(fire_all(&mut t, ms(12)), Vec::<u32>::new());
        assert_eq!(fire_all(&mut t, ms(29)), vec![3]);
        assert_eq!(t.next_deadline(), Some(ms(30)));
        assert_eq!(fire_all(&mut t, ms(30)), vec![2, 1]);
        assert!(!t.contains(a, User) && !t.contains(b, User) && !t.contains(c, User));
        assert_eq!(t.heap_len(), 0);
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
