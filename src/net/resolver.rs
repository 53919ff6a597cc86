//! Name resolution off the loop, and connection plans (RFC 8305, Happy Eyeballs v2).
//!
//! Names are resolved by `getaddrinfo` on a small pool of helper threads (as libuv
//! does): at most [`POOL_SIZE`] lookups run at once, the others wait in a queue, so one
//! name whose DNS server never answers (glibc retries for many seconds) holds one
//! place, not every connect by name. No thread exists until a name (not an address
//! literal) is connected to; threads are started as lookups need them, up to the bound.
//! Answers come back through a shared list and the reactor's waker, so the loop never
//! blocks on DNS.
//!
//! A socket closed while its lookup waits in the queue takes the lookup out; one closed
//! while its lookup runs frees its place at once: the answer is dropped when it comes,
//! never delivered, and another thread may take the next lookup meanwhile (a running
//! `getaddrinfo` cannot be interrupted, so that thread stays busy until it returns;
//! at most [`MAX_THREADS`] threads exist, counting those). The threads end when the
//! reactor is dropped (a thread inside `getaddrinfo` when it returns).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use mio::Waker;

use crate::error::Error;
use crate::net::hostname::{interleave_families, resolve_blocking, HostName};
use crate::net::stream::Phase;
use crate::reactor::{Key, Reactor, Source};

/// The delay between two connection attempts (RFC 8305 §5 recommends 250 ms).
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// How many lookups run at once (libuv's default thread pool size).
pub(crate) const POOL_SIZE: usize = 4;

/// How many resolver threads exist at most: the pool, plus threads still inside the
/// lookups of sockets closed meanwhile (whose places were freed).
pub(crate) const MAX_THREADS: usize = 4 * POOL_SIZE;

/// What to look up for one socket: the remote name, and the local one of an
/// [`EndpointPair`](crate::EndpointPair) (literals come back at once).
pub(crate) struct Lookup {
    pub(crate) remote: Option<(HostName, u16)>,
    pub(crate) local: Option<(HostName, u16)>,
    /// Given back with the answer: which of a socket's lookups it answers (a socket
    /// may have several under way, and they run in parallel, so answers can come in
    /// any order).
    pub(crate) tag: u32,
}

/// The addresses found: remote, then local.
pub(crate) type Found = (Option<Vec<SocketAddr>>, Option<Vec<SocketAddr>>);

type Answer = (Key, u32, Result<Found, Error>);

/// The function that resolves one name (`getaddrinfo`, or a test's stand-in).
pub(crate) type LookupFn = dyn Fn(&HostName, u16) -> Result<Vec<SocketAddr>, Error> + Send + Sync;

/// The reactor's side of the pool.
pub(crate) struct Resolver {
    shared: Arc<Shared>,
    /// Lookups requested and neither answered nor cancelled: while 0, closing a
    /// socket does not look at the pool.
    pending: usize,
}

struct Shared {
    pool: Mutex<Pool>,
    work: Condvar,
    waker: Arc<Waker>,
    lookup: Arc<LookupFn>,
}

#[derive(Default)]
struct Pool {
    queue: VecDeque<(Key, Box<Lookup>)>,
    /// The sockets whose lookups are running (a place each).
    running: Vec<Key>,
    /// Running lookups whose socket was closed: a thread each, no place.
    abandoned: usize,
    threads: usize,
    idle: usize,
    /// Idle threads notified and not yet awake: each takes one queued lookup.
    wakeups: usize,
    answers: Vec<Answer>,
    /// The reactor is gone: threads end.
    closed: bool,
}

impl Lookup {
    fn run(&self, lookup: &LookupFn) -> Result<Found, Error> {
        let resolve = |name: &Option<(HostName, u16)>| {
            name.as_ref()
                .map(|(host, port)| lookup(host, *port))
                .transpose()
        };
        Ok((resolve(&self.remote)?, resolve(&self.local)?))
    }
}

impl Resolver {
    /// A pool with no thread yet, resolving with `lookup`.
    pub(crate) fn new(waker: Arc<Waker>, lookup: Arc<LookupFn>) -> Resolver {
        Resolver {
            shared: Arc::new(Shared {
                pool: Mutex::new(Pool::default()),
                work: Condvar::new(),
                waker,
                lookup,
            }),
            pending: 0,
        }
    }

    /// Queues a lookup, starting a thread for it if none is free and the bounds allow.
    fn submit(&mut self, key: Key, lookup: Lookup) -> io::Result<()> {
        let mut pool = self.shared.lock();
        pool.queue.push_back((key, Box::new(lookup)));
        if let Err(e) = self.shared.staff(&mut pool) {
            if pool.threads == 0 {
                pool.queue.retain(|(k, _)| *k != key);
                return Err(e);
            }
            // The threads there are will take it in turn.
            log::warn!("resolver: could not start another thread: {e}");
        }
        self.pending += 1;
        Ok(())
    }

    /// Forgets the lookup of `key` (its socket is closed): out of the queue, or its
    /// place freed if it runs, or its answer dropped if one came.
    pub(crate) fn cancel(&mut self, key: Key) {
        if self.pending == 0 {
            return;
        }
        let mut pool = self.shared.lock();
        let before = pool.queue.len() + pool.answers.len();
        pool.queue.retain(|(k, _)| *k != key);
        pool.answers.retain(|(k, _, _)| *k != key);
        let mut found = before - (pool.queue.len() + pool.answers.len());
        let running = pool.running.len();
        pool.running.retain(|k| *k != key);
        let stopped = running - pool.running.len();
        if stopped > 0 {
            pool.abandoned += stopped;
            found += stopped;
            // Their places are free: the next lookups need not wait for them.
            if let Err(e) = self.shared.staff(&mut pool) {
                log::warn!("resolver: could not start another thread: {e}");
            }
        }
        if found > 0 {
            log::debug!("resolver: {found} lookup(s) for {key:?} cancelled");
            self.pending -= found;
        }
    }

    /// The answers that came, in the order they came.
    fn take_answers(&mut self) -> Vec<Answer> {
        if self.pending == 0 {
            return Vec::new();
        }
        let answers = std::mem::take(&mut self.shared.lock().answers);
        self.pending -= answers.len();
        answers
    }

    /// Threads alive (idle, resolving, or finishing an abandoned lookup).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn threads(&self) -> usize {
        self.shared.lock().threads
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pool> {
        // A poisoned lock means a lookup panicked outside the lock's sections, which
        // leave the pool consistent: go on with it.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes an idle thread for queued work, or starts one when there is a free
    /// place and no idle thread.
    fn staff(self: &Arc<Self>, pool: &mut Pool) -> io::Result<()> {
        if pool.queue.is_empty() || pool.running.len() >= POOL_SIZE {
            return Ok(());
        }
        if pool.idle > pool.wakeups {
            pool.wakeups += 1;
            self.work.notify_one();
            return Ok(());
        }
        if pool.threads >= MAX_THREADS {
            return Ok(());
        }
        let shared = self.clone();
        thread::Builder::new()
            .name("sockloop-resolver".into())
            .spawn(move || shared.work_loop())?;
        pool.threads += 1;
        Ok(())
    }

    fn work_loop(&self) {
        let mut pool = self.lock();
        loop {
            if pool.closed {
                break;
            }
            let job = if pool.running.len() < POOL_SIZE {
                pool.queue.pop_front()
            } else {
                None
            };
            if let Some((key, lookup)) = job {
                pool.running.push(key);
                drop(pool);
                let answer = lookup.run(&*self.lookup);
                let tag = lookup.tag;
                drop(lookup);
                pool = self.lock();
                if let Some(i) = pool.running.iter().position(|k| *k == key) {
                    pool.running.swap_remove(i);
                    pool.answers.push((key, tag, answer));
                    let _ = self.waker.wake();
                } else {
                    // The socket was closed meanwhile: the answer goes nowhere.
                    pool.abandoned -= 1;
                }
                continue;
            }
            // More threads than places (some were busy with abandoned lookups): the
            // surplus ends instead of waiting.
            if pool.threads > POOL_SIZE {
                break;
            }
            pool.idle += 1;
            pool = self.work.wait(pool).unwrap_or_else(|e| e.into_inner());
            pool.idle -= 1;
            pool.wakeups = pool.wakeups.saturating_sub(1);
        }
        pool.threads -= 1;
    }
}

impl<S: 'static> Reactor<S> {
    pub(crate) fn request_resolution(&mut self, key: Key, lookup: Lookup) -> Result<(), Error> {
        let waker = self.waker();
        let resolver = self.resolver.get_or_insert_with(|| {
            Resolver::new(
                waker,
                Arc::new(|host: &HostName, port| resolve_blocking(host, port)),
            )
        });
        resolver
            .submit(key, lookup)
            .map_err(|e| Error::from_io("start resolver thread", e))
    }

    /// A socket that may be resolving is closed: forget its lookup.
    pub(crate) fn cancel_resolution(&mut self, key: Key) {
        if let Some(resolver) = self.resolver.as_mut() {
            resolver.cancel(key);
        }
    }

    /// Resolves names with `lookup` instead of `getaddrinfo`, for tests (a lookup
    /// that hangs, counts or fails); takes effect for lookups requested afterwards.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn set_name_lookup(
        &mut self,
        lookup: impl Fn(&HostName, u16) -> Result<Vec<SocketAddr>, Error> + Send + Sync + 'static,
    ) {
        self.resolver = Some(Resolver::new(self.waker(), Arc::new(lookup)));
    }

    /// How many resolver threads are alive, for tests.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn resolver_threads(&self) -> usize {
        self.resolver.as_ref().map_or(0, Resolver::threads)
    }

    /// Takes the resolver's answers and starts connecting (streams) or connects
    /// (datagram sockets).
    pub(crate) fn resolved(&mut self) {
        let Some(resolver) = self.resolver.as_mut() else {
            return;
        };
        for (key, tag, answer) in resolver.take_answers() {
            if let Some(Source::Datagram(_)) = self.sources.get(key) {
                self.datagram_resolved(key, tag, answer);
                continue;
            }
            let Some(Source::Stream(st)) = self.sources.get_mut(key) else {
                continue;
            };
            if st.phase != Phase::Resolving {
                continue;
            }
            match (answer, st.cold.as_mut().and_then(|c| c.connect.as_mut())) {
                (Ok((remote, local)), Some(plan)) => {
                    log::debug!("stream {key:?}: resolved to {remote:?} (local {local:?})");
                    if let Some(addrs) = remote {
                        // getaddrinfo sorted them (RFC 6724): the family of the first
                        // goes first (RFC 8305 §4).
                        let first_is_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
                        plan.addrs = interleave_families(addrs, first_is_v6);
                    }
                    if let Some(addrs) = local {
                        plan.local_addrs = addrs;
                    }
                    self.start_connecting(key);
                }
                (Err(e), _) => self.fail_connect(key, e),
                (Ok(_), None) => {}
            }
        }
    }
}
