//! The send queue of a datagram socket: whole datagrams the kernel could not take yet,
//! in order, their bytes in one buffer.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

/// A buffer grown past this while the queue was busy is given back once it empties.
const KEEP_CAPACITY: usize = 256 * 1024;

/// One queued datagram: where it goes, where from, and its bytes in the buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Queued {
    pub(crate) to: Option<SocketAddr>,
    pub(crate) from: Option<IpAddr>,
    start: usize,
    len: usize,
    /// Sending it already failed once with an error left by an earlier datagram.
    pub(crate) retried: bool,
}

/// Datagrams waiting for room in the kernel's send buffer. An idle socket's queue owns
/// no memory.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    bytes: Vec<u8>,
    /// Bytes at the start of `bytes` that belong to datagrams already sent.
    head: usize,
    items: VecDeque<Queued>,
}

impl SendQueue {
    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len() - self.head
    }

    /// Datagrams queued.
    pub(crate) fn count(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn push(&mut self, data: &[u8], to: Option<SocketAddr>, from: Option<IpAddr>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.items.push_back(Queued {
            to,
            from,
            start,
            len: data.len(),
            retried: false,
        });
    }

    /// The oldest datagram and its bytes.
    pub(crate) fn front(&self) -> Option<(Queued, &[u8])> {
        let item = *self.items.front()?;
        Some((item, &self.bytes[item.start..item.start + item.len]))
    }

    /// The oldest datagrams, at most `n`, in order.
    pub(crate) fn first(&self, n: usize) -> impl Iterator<Item = (Queued, &[u8])> {
        self.items
            .iter()
            .take(n)
            .map(|item| (*item, &self.bytes[item.start..item.start + item.len]))
    }

    /// The bytes of the oldest `n` datagrams, which lie one after the other.
    pub(crate) fn contiguous(&self, n: usize) -> &[u8] {
        let (Some(first), Some(last)) = (self.items.front(), self.items.get(n.max(1) - 1)) else {
            return &[];
        };
        &self.bytes[first.start..last.start + last.len]
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut Queued> {
        self.items.front_mut()
    }

    /// Drops the oldest datagram (sent, or failed and reported).
    pub(crate) fn pop(&mut self) {
        let Some(item) = self.items.pop_front() else {
            return;
        };
        self.head = item.start + item.len;
        if self.items.is_empty() {
            self.head = 0;
            if self.bytes.capacity() > KEEP_CAPACITY {
                self.bytes = Vec::new();
            } else {
                self.bytes.clear();
            }
        } else if self.head > KEEP_CAPACITY && self.head > self.bytes.len() / 2 {
            // Mostly sent: move what is left to the front, so the buffer does not grow
            // without bound while the queue never quite empties.
            self.bytes.drain(..self.head);
            for item in &mut self.items {
                item.start -= self.head;
            }
            self.head = 0;
        }
    }

    /// Queues everything `other` holds, in order, to `to`.
    pub(crate) fn append(&mut self, other: SendQueue, to: SocketAddr) {
        for (item, data) in other.first(usize::MAX) {
            self.push(data, Some(to), item.from);
        }
    }

    /// Forgets everything queued; returns how many datagrams that was.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.items.len();
        *self = SendQueue::default();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_compacted() {
        let mut q = SendQueue::default();
        let big = vec![7u8; 100 * 1024];
        for i in 0..10u8 {
            q.push(&big, None, None);
            q.push(&[i], None, None);
        }
        assert_eq!(q.count(), 20);
        for i in 0..10u8 {
            assert_eq!(q.front().unwrap().1.len(), big.len());
            q.pop();
            assert_eq!(q.front().unwrap().1, &[i]);
            q.pop();
        }
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
        assert_eq!(q.bytes.capacity(), 0, "a grown buffer is given back");
    }

    #[test]
    fn zero_length_datagrams_queue() {
        let mut q = SendQueue::default();
        q.push(&[], None, None);
        q.push(b"x", None, None);
        assert_eq!(q.count(), 2);
        assert_eq!(q.front().unwrap().1, b"");
        q.pop();
        assert_eq!(q.front().unwrap().1, b"x");
    }
}
