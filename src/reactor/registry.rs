//! A paged slab of slots with a version in every slot and every key.
//!
//! A [`Key`] is a slot index plus the version the slot had when it was filled. The
//! mio [`Token`] carries both, so an event queued for a socket that was closed earlier
//! in the same batch (and whose index may already hold a new socket) fails the
//! version check and is dropped instead of reaching the newcomer.
//!
//! Each slot counts its own versions: removing an entry bumps its slot's version, so
//! no key of an earlier occupant ever matches a later one. A slot whose version range
//! is used up is retired (left empty, off the free list for good) rather than wrapped
//! back to version 0, which would let a key kept from 2^32 fills earlier name a new
//! socket. How many bits the index and the version get is a [`Layout`]: tokens fill a
//! `usize`, so on 32-bit targets versions are short (12 bits) and slots retire sooner;
//! keys that never become tokens (timers) get 32 + 32 bits everywhere.
//!
//! Slots live in fixed pages of [`PAGE`] that are allocated as the registry grows and
//! never move. Growing therefore copies nothing (a `Vec`-backed slab doubling from
//! 8,192 to 16,384 sockets would copy every entry in the middle of a turn) and never
//! holds more than one partly used page: memory follows the number of sockets instead
//! of the next power of two above it. Free slots form a LIFO list threaded through the
//! slots themselves, so the most recently freed (cache-warm) slot is reused first.

use mio::Token;

/// Slots per page.
pub(crate) const PAGE: usize = 256;

/// The end of the free list; never a slot index.
const NONE: u32 = u32::MAX;

/// A token outside the range of [`Key::token`], for the reactor's own event sources
/// (`n` counts down from `usize::MAX`).
///
/// Keys never use the all-ones version, and every token from `usize::MAX - 65_535` up
/// has it (an index field is at least 20 bits wide), so none of these is ever a key's.
pub(crate) const fn reserved_token(n: u16) -> Token {
    Token(usize::MAX - n as usize)
}

/// The token of the reactor's waker.
pub(crate) const WAKER: Token = reserved_token(0);

/// How a key's index and version share the bits of a token.
///
/// The version sits above the index. The highest version (all ones) is never handed
/// out, which keeps the top of the token range free for [`reserved_token`]s.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Layout {
    index_bits: u32,
    version_bits: u32,
}

impl Layout {
    /// The layout of mio tokens on this target: the whole `usize`. On 64-bit targets
    /// 32 bits of index and 32 of version; on 32-bit targets 20 bits of index (a
    /// million slots) and 12 of version (4,095 fills of a slot before it retires).
    pub(crate) const TOKEN: Layout = if usize::BITS >= 64 {
        Layout::new(32, 32)
    } else {
        Layout::new(20, 12)
    };

    /// For keys that never become tokens (timers): 32 + 32 bits on every target.
    pub(crate) const WIDE: Layout = Layout::new(32, 32);

    /// A layout of `index_bits` + `version_bits` (each 1 to 32).
    pub(crate) const fn new(index_bits: u32, version_bits: u32) -> Layout {
        assert!(index_bits >= 1 && index_bits <= 32);
        assert!(version_bits >= 1 && version_bits <= 32);
        Layout {
            index_bits,
            version_bits,
        }
    }

    /// How many slot indexes there are ([`NONE`] is not one).
    const fn slots(self) -> u64 {
        let n = 1u64 << self.index_bits;
        if n > NONE as u64 {
            NONE as u64
        } else {
            n
        }
    }

    /// The last version a slot is filled with; after it, the slot retires.
    pub(crate) const fn last_version(self) -> u32 {
        ((1u64 << self.version_bits) - 2) as u32
    }

    /// The bits of `key`: version above index.
    const fn encode(self, key: Key) -> u64 {
        ((key.gen as u64) << self.index_bits) | key.index as u64
    }

    /// The key whose bits `raw` are, unless no key of this layout has them.
    const fn decode(self, raw: u64) -> Option<Key> {
        let index = raw & ((1u64 << self.index_bits) - 1);
        let version = raw >> self.index_bits;
        if version > self.last_version() as u64 || index >= self.slots() {
            return None;
        }
        Some(Key {
            index: index as u32,
            gen: version as u32,
        })
    }
}

// Every token a key makes fits a `usize`, with the reserved ones above them all.
const _: () = assert!(Layout::TOKEN.index_bits + Layout::TOKEN.version_bits == usize::BITS);
const _: () = assert!(Layout::TOKEN.index_bits >= 16);

/// A slot index and the version of the slot that it was filled with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) index: u32,
    /// The slot's version (generation) when this key was made.
    pub(crate) gen: u32,
}

impl Key {
    /// The mio token for this key, in [`Layout::TOKEN`]. Only keys of a registry with
    /// that layout (the reactor's sources) become tokens.
    pub(crate) fn token(self) -> Token {
        debug_assert!(Layout::TOKEN.decode(Layout::TOKEN.encode(self)) == Some(self));
        // Lossless: the layout fills a `usize` exactly (checked above).
        Token(Layout::TOKEN.encode(self) as usize)
    }
}

struct Slot<T> {
    /// The version of the current occupant, or of the next one while the slot is
    /// free. A retired slot stays empty at its layout's last version.
    gen: u32,
    /// The next free slot, while this one is free.
    next_free: u32,
    value: Option<T>,
}

/// A slab whose entries are only reachable with the key that created them.
pub(crate) struct Registry<T> {
    pages: Vec<Box<[Slot<T>; PAGE]>>,
    /// The first free slot, or [`NONE`].
    free: u32,
    len: usize,
    layout: Layout,
}

impl<T> Registry<T> {
    /// A registry whose keys become mio tokens ([`Layout::TOKEN`]).
    pub(crate) fn new() -> Registry<T> {
        Registry::with_layout(Layout::TOKEN)
    }

    /// A registry with other widths: [`Layout::WIDE`] for keys that are never
    /// tokens, or a tiny layout in tests to use up versions and indexes quickly.
    pub(crate) fn with_layout(layout: Layout) -> Registry<T> {
        Registry {
            pages: Vec::new(),
            free: NONE,
            len: 0,
            layout,
        }
    }

    fn slot(&self, index: u32) -> Option<&Slot<T>> {
        let index = index as usize;
        self.pages.get(index / PAGE).map(|page| &page[index % PAGE])
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot<T>> {
        let index = index as usize;
        self.pages
            .get_mut(index / PAGE)
            .map(|page| &mut page[index % PAGE])
    }

    /// Adds a page and threads its slots (those the layout can name) onto the (empty)
    /// free list. `false` when the layout has no index left.
    fn grow(&mut self) -> bool {
        let base = self.pages.len() * PAGE;
        let end = (self.layout.slots()).min((base + PAGE) as u64) as usize;
        if base >= end {
            return false;
        }
        let page: Box<[Slot<T>]> = (base..base + PAGE)
            .map(|i| Slot {
                gen: 0,
                next_free: if i + 1 < end { (i + 1) as u32 } else { NONE },
                value: None,
            })
            .collect();
        // A fixed-size page: indexing inside it needs no bounds check.
        let Ok(page) = page.try_into() else {
            unreachable!("a page has PAGE slots")
        };
        self.pages.push(page);
        self.free = base as u32;
        true
    }

    /// Stores `value` and returns its key; gives `value` back when every index of
    /// the layout is taken or retired.
    pub(crate) fn try_insert(&mut self, value: T) -> Result<Key, T> {
        if self.free == NONE && !self.grow() {
            return Err(value);
        }
        let index = self.free;
        let slot = self.slot_mut(index).expect("free slot exists");
        debug_assert!(slot.value.is_none());
        let next = slot.next_free;
        let gen = slot.gen;
        slot.value = Some(value);
        self.free = next;
        self.len += 1;
        Ok(Key { index, gen })
    }

    /// Stores `value` and returns its key.
    ///
    /// # Panics
    ///
    /// When the registry is exhausted (see [`try_insert`](Registry::try_insert)): on a
    /// 64-bit target after some 2^64 insertions, on a 32-bit one after some 2^32.
    pub(crate) fn insert(&mut self, value: T) -> Key {
        match self.try_insert(value) {
            Ok(key) => key,
            Err(_) => panic!(
                "registry exhausted: all {} slot indexes are in use or retired",
                self.layout.slots()
            ),
        }
    }

    /// The key `token` names, if it names one; whether its entry is still there is
    /// for [`get`](Registry::get) to say. Only for a registry of [`Layout::TOKEN`]
    /// (the one keys become tokens in), whose constant widths make this a mask and a
    /// shift.
    #[inline]
    pub(crate) fn key_of(&self, token: Token) -> Option<Key> {
        debug_assert_eq!(self.layout, Layout::TOKEN);
        Layout::TOKEN.decode(token.0 as u64)
    }

    #[inline]
    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        match self.slot(key.index) {
            Some(slot) if slot.gen == key.gen => slot.value.as_ref(),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.slot_mut(key.index) {
            Some(slot) if slot.gen == key.gen => slot.value.as_mut(),
            _ => None,
        }
    }

    /// Takes an entry out. Its slot moves to the next version and back onto the free
    /// list, or retires if that version was the last.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let free = self.free;
        let last = self.layout.last_version();
        let slot = self.slot_mut(key.index)?;
        if slot.gen != key.gen {
            return None;
        }
        let value = slot.value.take()?;
        // At the last version the slot retires: it stays empty and off the free list.
        if slot.gen < last {
            slot.gen += 1;
            slot.next_free = free;
            self.free = key.index;
        }
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys at the edges of a layout's range.
    fn edge_keys(layout: Layout) -> Vec<Key> {
        let top_index = (layout.slots() - 1) as u32;
        let last = layout.last_version();
        let mut keys = Vec::new();
        for index in [0, 1.min(top_index), top_index / 2, top_index] {
            for gen in [0, 1.min(last), last / 2, last] {
                keys.push(Key { index, gen });
            }
        }
        keys
    }

    #[test]
    fn token_layout_round_trips_and_keeps_clear_of_reserved_tokens() {
        // Runs on any width: `TOKEN` is this target's layout, and the 32-bit one is
        // checked by value wherever the test runs.
        assert_eq!(
            Layout::TOKEN.index_bits + Layout::TOKEN.version_bits,
            usize::BITS
        );
        let thirty_two = Layout::new(20, 12);
        assert_eq!(thirty_two.slots(), 1 << 20);
        assert_eq!(thirty_two.last_version(), 4094);
        assert_eq!(Layout::WIDE.slots(), u64::from(u32::MAX));
        assert_eq!(Layout::WIDE.last_version(), u32::MAX - 1);
        for layout in [Layout::TOKEN, Layout::WIDE, thirty_two, Layout::new(3, 1)] {
            let width = layout.index_bits + layout.version_bits;
            let reserved_from = ((1u64 << layout.version_bits) - 1) << layout.index_bits;
            for key in edge_keys(layout) {
                let raw = layout.encode(key);
                assert_eq!(layout.decode(raw), Some(key), "{layout:?} {key:?}");
                assert!(raw < reserved_from, "{layout:?} {key:?}");
            }
            // The all-ones version is never a key's, nor is anything wider.
            assert_eq!(layout.decode(reserved_from), None);
            assert_eq!(layout.decode(u64::MAX >> (64 - width)), None);
            if width < 64 {
                assert_eq!(layout.decode(1u64 << width), None);
            }
        }
        let sources: Registry<()> = Registry::new();
        for key in edge_keys(Layout::TOKEN) {
            assert_eq!(sources.key_of(key.token()), Some(key));
        }
        for n in 0..=u16::MAX {
            assert_eq!(sources.key_of(reserved_token(n)), None, "reserved {n}");
        }
        assert_eq!(WAKER, Token(usize::MAX));
    }

    #[test]
    fn reused_index_gets_new_version() {
        let mut r = Registry::new();
        let a = r.insert("a");
        assert_eq!(r.remove(a), Some("a"));
        let b = r.insert("b");
        assert_eq!(a.index, b.index, "the freed index is reused first");
        assert_ne!(a.gen, b.gen);
        assert_eq!(r.get(a), None);
        assert_eq!(r.remove(a), None);
        assert_eq!(r.get(b), Some(&"b"));
        assert_ne!(a.token(), b.token());
        assert_eq!(r.key_of(b.token()), Some(b));
        assert_eq!(r.key_of(WAKER), None);
    }

    #[test]
    fn versions_are_counted_per_slot() {
        let mut r = Registry::new();
        let steady = r.insert(0);
        let mut busy = r.insert(1);
        for round in 1..=1000u32 {
            assert_eq!(busy.gen, round - 1);
            r.remove(busy).unwrap();
            busy = r.insert(1);
            assert_eq!(busy.index, 1);
        }
        // Churn in one slot uses no version of another.
        assert_eq!(steady.gen, 0);
        assert_eq!(r.get(steady), Some(&0));
        r.remove(steady).unwrap();
        assert_eq!(r.insert(2).gen, 1);
    }

    #[test]
    fn a_used_up_slot_retires_instead_of_wrapping() {
        // Four slots of three versions each (0, 1, 2): twelve fills in all.
        let mut r = Registry::with_layout(Layout::new(2, 2));
        let mut seen: Vec<Key> = Vec::new();
        let mut i = 0;
        while let Ok(key) = r.try_insert(i) {
            assert!(!seen.contains(&key), "{key:?} handed out twice");
            // No earlier key names the newcomer (or anything else).
            for old in &seen {
                assert_eq!(r.get(*old), None, "stale {old:?} matched {key:?}");
            }
            seen.push(key);
            assert_eq!(r.remove(key), Some(i));
            i += 1;
        }
        assert_eq!(seen.len(), 12);
        // Every index is retired: nothing more fits, and the value comes back.
        assert_eq!(r.try_insert(7), Err(7));
        assert_eq!(r.len(), 0);
        assert!(seen.iter().all(|k| k.gen <= 2 && k.index < 4), "{seen:?}");
    }

    #[test]
    fn live_entries_keep_their_slots_when_the_rest_retire() {
        let mut r = Registry::with_layout(Layout::new(2, 1));
        let keep = r.insert("keep");
        for _ in 0..3 {
            let k = r.insert("churn");
            r.remove(k);
        }
        assert_eq!(r.try_insert("more"), Err("more"));
        assert_eq!(r.get(keep), Some(&"keep"));
        assert_eq!(r.remove(keep), Some("keep"));
        assert_eq!(r.try_insert("last"), Err("last"));
    }

    #[test]
    fn pages_grow_without_moving_and_reuse_is_lifo() {
        let mut r = Registry::new();
        let keys: Vec<Key> = (0..3 * PAGE + 7).map(|i| r.insert(i)).collect();
        assert_eq!(r.len(), 3 * PAGE + 7);
        assert_eq!(r.pages.len(), 4);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k.index as usize, i);
            assert_eq!(r.get(*k), Some(&i));
        }
        let first = &r.pages[0][0] as *const Slot<usize>;
        for k in keys.iter().step_by(3) {
            assert!(r.remove(*k).is_some());
            assert!(r.remove(*k).is_none(), "removed twice");
        }
        let removed = keys.len().div_ceil(3);
        assert_eq!(r.len(), keys.len() - removed);
        // The last freed slot is reused first; no page is added while slots are free.
        let last_freed = keys.iter().step_by(3).next_back().unwrap().index;
        let k = r.insert(usize::MAX);
        assert_eq!(k.index, last_freed);
        for i in 1..removed {
            r.insert(i);
        }
        assert_eq!(r.pages.len(), 4);
        assert_eq!(r.len(), keys.len());
        assert_eq!(
            &r.pages[0][0] as *const Slot<usize>, first,
            "pages never move"
        );
        // Stale keys stay stale.
        for k in keys.iter().step_by(3) {
            assert_eq!(r.get(*k), None);
        }
        // Filling the free slots and one more adds exactly one page.
        let full = 4 * PAGE - r.len();
        for i in 0..=full {
            r.insert(i);
        }
        assert_eq!(r.pages.len(), 5);
    }

    #[test]
    fn unknown_index_is_none() {
        let mut r: Registry<u8> = Registry::new();
        let ghost = Key {
            index: 10 * PAGE as u32,
            gen: 0,
        };
        assert_eq!(r.get(ghost), None);
        assert_eq!(r.get_mut(ghost), None);
        assert_eq!(r.remove(ghost), None);
    }
}
