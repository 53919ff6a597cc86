//! A slab of slots with a generation in every key.
//!
//! A [`Key`] is a slab index plus the generation the slot had when it was filled. The
//! mio [`Token`] carries both, so an event queued for a socket that was closed earlier
//! in the same batch (and whose index may already hold a new socket) fails the
//! generation check and is dropped instead of reaching the newcomer.

use mio::Token;
use slab::Slab;

/// The token of the reactor's waker; never produced by [`Key::token`] because the
/// generation `u32::MAX` is never handed out.
pub(crate) const WAKER: Token = Token(usize::MAX);

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

/// A slab whose entries are only reachable with the key that created them.
pub(crate) struct Registry<T> {
    slab: Slab<(u32, T)>,
    next_gen: u32,
}

impl<T> Registry<T> {
    pub(crate) fn new() -> Registry<T> {
        Registry {
            slab: Slab::new(),
            next_gen: 0,
        }
    }

    /// Stores `value` and returns its key. Each insertion gets a new generation, so a
    /// reused index never matches an older key.
    pub(crate) fn insert(&mut self, value: T) -> Key {
        let gen = self.next_gen;
        self.next_gen = match self.next_gen.wrapping_add(1) {
            u32::MAX => 0,
            g => g,
        };
        let index = self.slab.insert((gen, value));
        debug_assert!(index < u32::MAX as usize);
        Key {
            index: index as u32,
            gen,
        }
    }

    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        match self.slab.get(key.index as usize) {
            Some((gen, value)) if *gen == key.gen => Some(value),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.slab.get_mut(key.index as usize) {
            Some((gen, value)) if *gen == key.gen => Some(value),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        self.get(key)?;
        Some(self.slab.remove(key.index as usize).1)
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
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
        assert_eq!(a.index, b.index, "slab reuses the index");
        assert_ne!(a.gen, b.gen);
        assert_eq!(r.get(a), None);
        assert_eq!(r.remove(a), None);
        assert_eq!(r.get(b), Some(&"b"));
        assert_ne!(a.token(), b.token());
    }
}
