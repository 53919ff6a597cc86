//! Name resolution off the loop, and connection plans (RFC 8305, Happy Eyeballs v2).
//!
//! Names are resolved by `getaddrinfo` on one helper thread, started the first time a
//! name (not an address literal) is connected to; results come back through a channel
//! and the reactor's waker, so the loop never blocks on DNS. The thread ends when the
//! reactor is dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mio::Waker;

use crate::error::{Error, SocketErrorStatus};
use crate::net::hostname::{interleave_families, resolve_blocking, HostName};
use crate::net::stream::Phase;
use crate::reactor::{Key, Reactor, Source};

/// The delay between two connection attempts (RFC 8305 §5 recommends 250 ms).
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// What to look up for one socket: the remote name, and the local one of an
/// [`EndpointPair`](crate::EndpointPair) (literals come back at once).
pub(crate) struct Lookup {
    pub(crate) remote: Option<(HostName, u16)>,
    pub(crate) local: Option<(HostName, u16)>,
}

/// The addresses found: remote, then local.
type Found = (Option<Vec<SocketAddr>>, Option<Vec<SocketAddr>>);

type Answer = (Key, Result<Found, Error>);

pub(crate) struct Resolver {
    requests: Sender<(Key, Box<Lookup>)>,
    answers: Receiver<Answer>,
}

impl Lookup {
    fn run(&self) -> Result<Found, Error> {
        let resolve = |name: &Option<(HostName, u16)>| {
            name.as_ref()
                .map(|(host, port)| resolve_blocking(host, *port))
                .transpose()
        };
        Ok((resolve(&self.remote)?, resolve(&self.local)?))
    }
}

impl Resolver {
    fn start(waker: Arc<Waker>) -> io::Result<Resolver> {
        let (requests, jobs) = mpsc::channel::<(Key, Box<Lookup>)>();
        let (done, answers) = mpsc::channel();
        thread::Builder::new()
            .name("sockloop-resolver".into())
            .spawn(move || {
                for (key, lookup) in jobs {
                    let answer = lookup.run();
                    if done.send((key, answer)).is_err() {
                        return;
                    }
                    let _ = waker.wake();
                }
            })?;
        Ok(Resolver { requests, answers })
    }
}

impl<S: 'static> Reactor<S> {
    pub(crate) fn request_resolution(&mut self, key: Key, lookup: Lookup) -> Result<(), Error> {
        if self.resolver.is_none() {
            let resolver = Resolver::start(self.waker())
                .map_err(|e| Error::from_io("start resolver thread", e))?;
            self.resolver = Some(resolver);
        }
        let sent = self
            .resolver
            .as_ref()
            .map(|r| r.requests.send((key, Box::new(lookup))));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => {
                self.resolver = None;
                Err(Error::new(SocketErrorStatus::Unknown, "resolve host name")
                    .with_detail("the resolver thread is gone"))
            }
        }
    }

    /// Takes the resolver's answers and starts connecting (streams) or connects
    /// (datagram sockets).
    pub(crate) fn resolved(&mut self) {
        loop {
            let Some(resolver) = &self.resolver else {
                return;
            };
            let Ok((key, answer)) = resolver.answers.try_recv() else {
                return;
            };
            if let Some(Source::Datagram(_)) = self.sources.get(key) {
                self.datagram_resolved(key, answer.map(|(remote, _)| remote.unwrap_or_default()));
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
