//! The send queue of a datagram socket: whole datagrams the kernel could not take yet,
//! in order, their bytes in one buffer.
//!
//! Datagrams are kept as runs: consecutive datagrams to the same destination from the
//! same source, all of one size but the last, which may be shorter and then ends the
//! run — exactly the shape a GSO send takes. A socket sending many same-size datagrams
//! (the usual case of a batching sender) adds to one run per destination, and its
//! flush sends and drops a run's datagrams at once, rather than one record each.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

/// A buffer grown past this while the queue was busy is given back once it empties.
const KEEP_CAPACITY: usize = 256 * 1024;

/// Where a queued datagram goes and comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Queued {
    pub(crate) to: Option<SocketAddr>,
    pub(crate) from: Option<IpAddr>,
    /// Sending it already failed once with an error left by an earlier datagram.
    pub(crate) retried: bool,
}

/// Consecutive datagrams with one destination and source: `count` of them, each
/// `size` bytes but the last, which has `last` bytes (at most `size`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) to: Option<SocketAddr>,
    pub(crate) from: Option<IpAddr>,
    /// Where the run's first datagram starts in the buffer.
    start: usize,
    pub(crate) size: usize,
    pub(crate) count: usize,
    pub(crate) last: usize,
    /// The run's first datagram was retried once (see [`Queued::retried`]).
    retried: bool,
}

impl Run {
    /// Datagrams of the run's full size (all, or all but a shorter last one).
    pub(crate) fn full(&self) -> usize {
        if self.last < self.size {
            self.count - 1
        } else {
            self.count
        }
    }

    fn len_of(&self, i: usize) -> usize {
        if i + 1 == self.count {
            self.last
        } else {
            self.size
        }
    }

    fn bytes(&self) -> usize {
        (self.count - 1) * self.size + self.last
    }
}

/// Datagrams waiting for room in the kernel's send buffer. An idle socket's queue owns
/// no memory.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    bytes: Vec<u8>,
    /// Bytes at the start of `bytes` that belong to datagrams already sent.
    head: usize,
    runs: VecDeque<Run>,
    /// Datagrams queued, over all runs.
    datagrams: usize,
}

impl SendQueue {
    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len() - self.head
    }

    /// Datagrams queued.
    pub(crate) fn count(&self) -> usize {
        self.datagrams
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.datagrams == 0
    }

    #[inline]
    pub(crate) fn push(&mut self, data: &[u8], to: Option<SocketAddr>, from: Option<IpAddr>) {
        if !self.join(data, to, from) {
            self.push_run(data, to, from);
        }
    }

    /// Queues `data` at the end of the last run if it can join it: same way, the run
    /// not ended by a shorter datagram, and not longer than the run's datagrams (a
    /// zero-length one never joins). Returns whether it did.
    #[inline]
    fn join(&mut self, data: &[u8], to: Option<SocketAddr>, from: Option<IpAddr>) -> bool {
        let Some(run) = self.runs.back_mut() else {
            return false;
        };
        if run.last == run.size
            && !data.is_empty()
            && data.len() <= run.size
            && run.to == to
            && run.from == from
        {
            run.count += 1;
            run.last = data.len();
            self.datagrams += 1;
            self.bytes.extend_from_slice(data);
            return true;
        }
        false
    }

    /// Queues `data` as the first datagram of a new run.
    #[inline(never)]
    fn push_run(&mut self, data: &[u8], to: Option<SocketAddr>, from: Option<IpAddr>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.datagrams += 1;
        self.runs.push_back(Run {
            to,
            from,
            start,
            size: data.len(),
            count: 1,
            last: data.len(),
            retried: false,
        });
    }

    /// Queues `data` as datagrams of `segment` bytes each, the last maybe shorter
    /// (`0 < segment < data.len()`).
    pub(crate) fn push_segments(
        &mut self,
        data: &[u8],
        segment: usize,
        to: Option<SocketAddr>,
        from: Option<IpAddr>,
    ) {
        debug_assert!(segment > 0 && segment < data.len());
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        let count = data.len().div_ceil(segment);
        let last = data.len() - (count - 1) * segment;
        self.datagrams += count;
        if let Some(run) = self.runs.back_mut() {
            if run.last == run.size && run.size == segment && run.to == to && run.from == from {
                run.count += count;
                run.last = last;
                return;
            }
        }
        self.runs.push_back(Run {
            to,
            from,
            start,
            size: segment,
            count,
            last,
            retried: false,
        });
    }

    /// The oldest datagram and its bytes.
    pub(crate) fn front(&self) -> Option<(Queued, &[u8])> {
        let run = self.runs.front()?;
        let len = run.len_of(0);
        Some((
            Queued {
                to: run.to,
                from: run.from,
                retried: run.retried,
            },
            &self.bytes[run.start..run.start + len],
        ))
    }

    /// The oldest run.
    pub(crate) fn front_run(&self) -> Option<&Run> {
        self.runs.front()
    }

    /// The runs, oldest first.
    pub(crate) fn runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter()
    }

    /// The oldest datagrams, at most `n`, in order.
    pub(crate) fn first(&self, n: usize) -> impl Iterator<Item = (Queued, &[u8])> {
        self.runs
            .iter()
            .flat_map(move |run| {
                (0..run.count).map(move |i| {
                    let start = run.start + i * run.size;
                    let item = Queued {
                        to: run.to,
                        from: run.from,
                        retried: run.retried && i == 0,
                    };
                    (item, &self.bytes[start..start + run.len_of(i)])
                })
            })
            .take(n)
    }

    /// The bytes of the oldest `n` datagrams, which lie one after the other.
    pub(crate) fn contiguous(&self, n: usize) -> &[u8] {
        let Some(first) = self.runs.front() else {
            return &[];
        };
        let mut end = first.start;
        let mut left = n.max(1);
        for run in &self.runs {
            if left <= run.count {
                end = run.start + (left - 1) * run.size + run.len_of(left - 1);
                break;
            }
            end = run.start + run.bytes();
            left -= run.count;
        }
        &self.bytes[first.start..end]
    }

    /// Marks the oldest datagram as tried once already.
    pub(crate) fn set_front_retried(&mut self) {
        if let Some(run) = self.runs.front_mut() {
            run.retried = true;
        }
    }

    /// Drops the oldest datagram (sent, or failed and reported).
    pub(crate) fn pop(&mut self) {
        self.pop_n(1);
    }

    /// Drops the oldest `n` datagrams (sent).
    pub(crate) fn pop_n(&mut self, mut n: usize) {
        while n > 0 {
            let Some(run) = self.runs.front_mut() else {
                break;
            };
            if n >= run.count {
                n -= run.count;
                self.datagrams -= run.count;
                self.head = run.start + run.bytes();
                self.runs.pop_front();
            } else {
                // Only datagrams before the last: all of the run's size.
                run.start += n * run.size;
                run.count -= n;
                run.retried = false;
                self.datagrams -= n;
                self.head = run.start;
                n = 0;
            }
        }
        if self.runs.is_empty() {
            self.head = 0;
            self.datagrams = 0;
            if self.bytes.capacity() > KEEP_CAPACITY {
                self.bytes = Vec::new();
            } else {
                self.bytes.clear();
            }
        } else if self.head > KEEP_CAPACITY && self.head > self.bytes.len() / 2 {
            // Mostly sent: move what is left to the front, so the buffer does not grow
            // without bound while the queue never quite empties.
            self.bytes.drain(..self.head);
            for run in &mut self.runs {
                run.start -= self.head;
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
        let n = self.datagrams;
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
        q.push(&[], None, None);
        q.push(b"x", None, None);
        assert_eq!(q.count(), 3);
        assert_eq!(q.front().unwrap().1, b"");
        q.pop();
        assert_eq!(q.front().unwrap().1, b"");
        q.pop();
        assert_eq!(q.front().unwrap().1, b"x");
    }

    fn addr(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Runs form as GSO needs them, and every way of reading the queue gives back
    /// each datagram as pushed, whatever the runs.
    #[test]
    fn runs_keep_every_datagram_as_pushed() {
        // (size, destination port)
        let pushes: &[(usize, u16)] = &[
            (100, 1),
            (100, 1),
            (100, 1),
            (40, 1),
            (100, 1),
            (100, 2),
            (0, 2),
            (0, 2),
            (5, 2),
            (5, 2),
            (6, 2),
            (3, 1),
        ];
        let mut q = SendQueue::default();
        let mut model: Vec<(Vec<u8>, Option<SocketAddr>)> = Vec::new();
        for (i, &(size, port)) in pushes.iter().enumerate() {
            let data = vec![i as u8; size];
            q.push(&data, addr(port), None);
            model.push((data, addr(port)));
        }
        let runs: Vec<(usize, usize, usize)> =
            q.runs().map(|r| (r.size, r.count, r.last)).collect();
        assert_eq!(
            runs,
            [
                (100, 4, 40),
                (100, 1, 100),
                (100, 1, 100),
                (0, 1, 0),
                (0, 1, 0),
                (5, 2, 5),
                (6, 1, 6),
                (3, 1, 3)
            ]
        );
        for skip in 0..=model.len() {
            let mut q2 = SendQueue::default();
            for (data, to) in &model {
                q2.push(data, *to, None);
            }
            q2.pop_n(skip);
            let rest = &model[skip..];
            assert_eq!(q2.count(), rest.len());
            assert_eq!(q2.len(), rest.iter().map(|(d, _)| d.len()).sum::<usize>());
            let got: Vec<(Vec<u8>, Option<SocketAddr>)> = q2
                .first(usize::MAX)
                .map(|(item, data)| (data.to_vec(), item.to))
                .collect();
            assert_eq!(got, rest, "after popping {skip}");
            for n in 1..=rest.len() {
                let want: Vec<u8> = rest[..n].iter().flat_map(|(d, _)| d.clone()).collect();
                assert_eq!(q2.contiguous(n), &want[..], "{n} after {skip}");
            }
            match rest.first() {
                Some((data, _)) => assert_eq!(q2.front().unwrap().1, &data[..]),
                None => assert!(q2.front().is_none()),
            }
        }
    }

    /// A train pushed at once is the datagrams pushed one by one, joined to a run it
    /// continues.
    #[test]
    fn segments_are_the_datagrams_one_by_one() {
        let data: Vec<u8> = (0..1_050u32).map(|i| i as u8).collect();
        for before in [0usize, 1, 3] {
            let (mut a, mut b) = (SendQueue::default(), SendQueue::default());
            for _ in 0..before {
                a.push(&data[..100], addr(1), None);
                b.push(&data[..100], addr(1), None);
            }
            a.push_segments(&data, 100, addr(1), None);
            for chunk in data.chunks(100) {
                b.push(chunk, addr(1), None);
            }
            a.push(b"x", addr(1), None);
            b.push(b"x", addr(1), None);
            let runs = |q: &SendQueue| -> Vec<(usize, usize, usize)> {
                q.runs().map(|r| (r.size, r.count, r.last)).collect()
            };
            assert_eq!(runs(&a), runs(&b), "{before} before");
            assert_eq!(a.count(), b.count());
            let all = |q: &SendQueue| -> Vec<Vec<u8>> {
                q.first(usize::MAX).map(|(_, d)| d.to_vec()).collect()
            };
            assert_eq!(all(&a), all(&b));
        }
    }

    #[test]
    fn retried_marks_only_the_front_datagram() {
        let mut q = SendQueue::default();
        for _ in 0..3 {
            q.push(&[1; 10], addr(1), None);
        }
        q.set_front_retried();
        let flags: Vec<bool> = q.first(3).map(|(item, _)| item.retried).collect();
        assert_eq!(flags, [true, false, false]);
        q.pop();
        assert!(!q.front().unwrap().0.retried);
    }
}
