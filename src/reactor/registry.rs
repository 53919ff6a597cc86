//! A paged slab of slots with a generation in every key.
//!
//! A [`Key`] is a slot index plus the generation the slot had when it was filled. The
//! mio [`Token`] carries both, so an event queued for a socket that was closed earlier
//! in the same batch (and whose index may already hold a new socket) fails the
//! generation check and is dropped instead of reaching the newcomer.
//!
//! Slots live in fixed pages of [`PAGE`] that are allocated as the registry grows and
//! never move. Growing therefore copies nothing (a `Vec`-backed slab doubling from
//! 8,192 to 16,384 sockets would copy every entry in the middle of a turn) and never
//! holds more than one partly used page: memory follows the number of sockets instead
//! of the next power of two above it. Free slots form a LIFO list threaded through the
//! slots themselves, so the most recently freed (cache-warm) slot is reused first.

use mio::Token;

/// The token of the reactor's waker; never produced by [`Key::token`] because the
/// generation `u32::MAX` is never handed out.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// Slots per page.
pub(crate) const PAGE: usize = 256;

/// The end of the free list.
const NONE: u32 = u32::MAX;

/// A slot index and the generation that filled it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) index: u32,
    pub(crate) gen: u32,
}

impl Key {
    /// The mio token for this key: generation in the high 32 bits, index in the low.
    pub(crate) fn token(self) -> Token {
        Token(((self.gen as usize) << 32) | self.index as usize)
    }

    /// The key a token was made from.
    pub(crate) fn from_token(token: Token) -> Key {
        Key {
            index: token.0 as u32,
            gen: (token.0 >> 32) as u32,
        }
    }
}

struct Slot<T> {
    /// The generation of the current (or last) occupant.
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
    next_gen: u32,
}

impl<T> Registry<T> {
    pub(crate) fn new() -> Registry<T> {
        Registry {
            pages: Vec::new(),
            free: NONE,
            len: 0,
            next_gen: 0,
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

    /// Adds a page and threads its slots onto the (empty) free list.
    fn grow(&mut self) {
        let base = self.pages.len() * PAGE;
        assert!(
            base + PAGE < NONE as usize,
            "registry full: more than 2^32 - 1 slots"
        );
        let page: Box<[Slot<T>]> = (0..PAGE)
            .map(|i| Slot {
                gen: 0,
                next_free: if i + 1 < PAGE {
                    (base + i + 1) as u32
                } else {
                    NONE
                },
                value: None,
            })
            .collect();
        // A fixed-size page: indexing inside it needs no bounds check.
        let Ok(page) = page.try_into() else {
            unreachable!("a page has PAGE slots")
        };
        self.pages.push(page);
        self.free = base as u32;
    }

    /// Stores `value` and returns its key. Each insertion gets a new generation, so a
    /// reused index never matches an older key.
    pub(crate) fn insert(&mut self, value: T) -> Key {
        let gen = self.next_gen;
        self.next_gen = match self.next_gen.wrapping_add(1) {
            u32::MAX => 0,
            g => g,
        };
        if self.free == NONE {
            self.grow();
        }
        let index = self.free;
        let slot = self.slot_mut(index).expect("free slot exists");
        debug_assert!(slot.value.is_none());
        let next = slot.next_free;
        slot.gen = gen;
        slot.value = Some(value);
        self.free = next;
        self.len += 1;
        Key { index, gen }
    }

    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        match self.slot(key.index) {
            Some(slot) if slot.gen == key.gen => slot.value.as_ref(),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.slot_mut(key.index) {
            Some(slot) if slot.gen == key.gen => slot.value.as_mut(),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let free = self.free;
        let slot = self.slot_mut(key.index)?;
        if slot.gen != key.gen {
            return None;
        }
        let value = slot.value.take()?;
        slot.next_free = free;
        self.free = key.index;
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

    #[test]
    fn token_round_trip() {
        for (index, gen) in [(0, 0), (1, 7), (u32::MAX - 1, u32::MAX - 1), (12345, 3)] {
            let key = Key { index, gen };
            assert_eq!(Key::from_token(key.token()), key);
            assert_ne!(key.token(), WAKER);
        }
    }

    #[test]
    fn reused_index_gets_new_generation() {
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
