//! Destination handles (`GetOutputStreamAsync` on Windows): a socket's way to one
//! host and service, its name resolved off the loop, datagrams written before the
//! answer held (bounded) and sent in order once it comes.

use std::net::{IpAddr, SocketAddr};

use super::queue::SendQueue;
use super::{stale, DatagramSocket, Phase};
use crate::error::{Error, SocketErrorStatus};
use crate::net::hostname::{HostName, IntoHostName};
use crate::net::listener::canonical;
use crate::net::resolver::Lookup;
use crate::net::service::IntoService;
use crate::reactor::{Key, Reactor, Source};

/// The most destinations given by name one socket keeps (those given as address
/// literals take no room).
pub(crate) const MAX_NAMED_OUTPUTS: usize = 1024;

/// Where datagrams written to a [`DatagramOutput`] go (`IOutputStream` of a datagram
/// socket on Windows): a `Copy` handle, valid while its socket is open.
///
/// Datagrams written during one handler call leave together when it returns, in
/// order, batched with the socket's other sends (outside a handler, at once). A
/// destination given by name is resolved off the loop: datagrams written before the
/// answer wait, counted against the socket's write limit, and leave in order once it
/// comes; if the name does not resolve, they are reported (with their count) as one
/// [`DatagramEvent::Error`](super::DatagramEvent::Error), and later writes fail with
/// the same status.
///
/// # Examples
///
/// ```
/// use sockloop::{DatagramSocket, Reactor};
///
/// let mut reactor = Reactor::<()>::new()?;
/// let socket = DatagramSocket::bind(&mut reactor, "127.0.0.1", 0, |_, _, _, _| {})?;
/// let me = socket.information(&reactor)?.local_address.unwrap();
/// let out = socket.output_to(&mut reactor, "127.0.0.1", me.port())?;
/// assert_eq!(out.destination(&reactor)?, Some(me));
/// out.write(&mut reactor, b"one")?;
/// out.write(&mut reactor, b"two")?;
/// # Ok::<(), sockloop::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatagramOutput {
    socket: DatagramSocket,
    target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    /// An address literal, or a name already resolved when the handle was made.
    Address(SocketAddr),
    /// A name: entry `n` of the socket's named outputs.
    Named(u32),
}

/// A destination given by name, as its socket keeps it.
#[derive(Debug)]
pub(crate) enum Named {
    /// Waiting for the resolver; what was written meanwhile.
    Resolving(SendQueue),
    Resolved(SocketAddr),
    /// The name did not resolve: the status and detail later writes fail with.
    Failed(SocketErrorStatus, String),
}

impl DatagramSocket {
    /// A destination handle for `host` and `service` (`GetOutputStreamAsync` on
    /// Windows). An address literal is ready at once; a name is resolved off the loop,
    /// as for [`connect`](Self::connect), and what is written before the answer waits
    /// (see [`DatagramOutput`]).
    ///
    /// # Errors
    ///
    /// Name and service syntax errors; `InvalidState` while the socket itself
    /// resolves its peer's name; `NoBufferSpaceAvailable` when the socket already
    /// keeps 1,024 destinations given by name; `InvalidHandle` if closed.
    pub fn output_to<S: 'static>(
        self,
        reactor: &mut Reactor<S>,
        host: impl IntoHostName,
        service: impl IntoService,
    ) -> Result<DatagramOutput, Error> {
        const OPERATION: &str = "output to";
        let host: HostName = host.into_host_name()?;
        let port = service.into_port()?;
        let st = reactor.datagram_mut(self.0, OPERATION)?;
        if st.phase != Phase::Open {
            return Err(Error::new(SocketErrorStatus::InvalidState, OPERATION)
                .with_detail("the socket is still resolving its peer's name"));
        }
        if let Some(addr) = host.socket_addr(port) {
            return Ok(DatagramOutput {
                socket: self,
                target: Target::Address(addr),
            });
        }
        if st.outputs.len() >= MAX_NAMED_OUTPUTS {
            return Err(
                Error::new(SocketErrorStatus::NoBufferSpaceAvailable, OPERATION).with_detail(
                    format!("the socket keeps {MAX_NAMED_OUTPUTS} destinations given by name"),
                ),
            );
        }
        let index = st.outputs.len() as u32;
        st.outputs.push(Named::Resolving(SendQueue::default()));
        st.resolving.push_back(index);
        let lookup = Lookup {
            remote: Some((host, port)),
            local: None,
        };
        if let Err(e) = reactor.request_resolution(self.0, lookup) {
            if let Some(Source::Datagram(st)) = reactor.sources.get_mut(self.0) {
                st.outputs.pop();
                st.resolving.pop_back();
            }
            return Err(e);
        }
        Ok(DatagramOutput {
            socket: self,
            target: Target::Named(index),
        })
    }
}

impl DatagramOutput {
    /// The socket this handle writes through.
    pub fn socket(self) -> DatagramSocket {
        self.socket
    }

    /// Where datagrams go: `None` while the name is being resolved.
    ///
    /// # Errors
    ///
    /// The resolver's status if the name did not resolve; `InvalidHandle` if the
    /// socket is closed.
    pub fn destination<S: 'static>(
        self,
        reactor: &Reactor<S>,
    ) -> Result<Option<SocketAddr>, Error> {
        let st = reactor.datagram_ref(self.socket.0, "output destination")?;
        match self.target {
            Target::Address(addr) => Ok(Some(addr)),
            Target::Named(i) => match st.outputs.get(i as usize) {
                Some(Named::Resolving(_)) => Ok(None),
                Some(Named::Resolved(addr)) => Ok(Some(*addr)),
                Some(Named::Failed(status, detail)) => {
                    Err(Error::new(*status, "output destination").with_detail(detail.clone()))
                }
                None => Err(stale("output destination")),
            },
        }
    }

    /// Writes `data` as one datagram to the destination, as
    /// [`send_to`](DatagramSocket::send_to) does; while the name is being resolved,
    /// it waits, and leaves in order once the answer comes.
    ///
    /// # Errors
    ///
    /// As [`send_to`](DatagramSocket::send_to); while the name is being resolved,
    /// `MessageTooLong` over 65,507 bytes and `NoBufferSpaceAvailable` when what waits
    /// (here and in the socket's queue) would pass the write limit; the resolver's
    /// status (`HostNotFound`, `NoAddressesFound`, …) if the name did not resolve.
    pub fn write<S: 'static>(self, reactor: &mut Reactor<S>, data: &[u8]) -> Result<(), Error> {
        const OPERATION: &str = "write to output";
        let index = match self.target {
            Target::Address(addr) => return self.socket.send_to(reactor, addr, data),
            Target::Named(i) => i as usize,
        };
        let limit = reactor.config.write_limit;
        let st = reactor.datagram_mut(self.socket.0, OPERATION)?;
        let queued = st.out.len() + st.waiting_bytes();
        match st.outputs.get_mut(index) {
            Some(Named::Resolved(addr)) => {
                let addr = *addr;
                self.socket.send_to(reactor, addr, data)
            }
            Some(Named::Failed(status, detail)) => {
                Err(Error::new(*status, OPERATION).with_detail(detail.clone()))
            }
            Some(Named::Resolving(waiting)) => {
                if data.len() > super::transfer::MAX_PAYLOAD_V4 {
                    return Err(Error::new(SocketErrorStatus::MessageTooLong, OPERATION)
                        .with_detail(format!(
                            "{} bytes; one UDP datagram carries at most {} (IPv4)",
                            data.len(),
                            super::transfer::MAX_PAYLOAD_V4
                        )));
                }
                if queued.saturating_add(data.len()) > limit {
                    return Err(Error::refused(OPERATION, queued, data.len(), limit));
                }
                waiting.push(data, None, None);
                Ok(())
            }
            None => Err(stale(OPERATION)),
        }
    }
}

impl<S: 'static> super::DatagramState<S> {
    /// Forgets what waits for names to resolve; returns how many datagrams that was.
    pub(crate) fn discard_waiting(&mut self) -> usize {
        self.resolving.clear();
        self.outputs
            .iter_mut()
            .map(|o| match o {
                Named::Resolving(q) => q.clear(),
                _ => 0,
            })
            .sum()
    }

    /// Bytes written to destinations still being resolved.
    pub(crate) fn waiting_bytes(&self) -> usize {
        self.outputs
            .iter()
            .map(|o| match o {
                Named::Resolving(q) => q.len(),
                _ => 0,
            })
            .sum()
    }
}

impl<S: 'static> Reactor<S> {
    /// The resolver's answer for the oldest destination of an open socket still being
    /// resolved (answers come in the order asked): what waited is queued to the first
    /// address of the socket's family and sent; if there is none, or the name did not
    /// resolve, what waited is reported as one error.
    pub(crate) fn output_resolved(&mut self, key: Key, answer: Result<Vec<SocketAddr>, Error>) {
        let Some(Source::Datagram(st)) = self.sources.get_mut(key) else {
            return;
        };
        let Some(index) = st.resolving.pop_front() else {
            return;
        };
        let ipv6 = st.ipv6;
        let chosen = answer.and_then(|addrs| {
            addrs
                .iter()
                .find(|a| ipv6 || a.is_ipv4())
                .map(|a| match (ipv6, a) {
                    (true, SocketAddr::V4(v4)) => {
                        SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
                    }
                    _ => *a,
                })
                .ok_or_else(|| {
                    Error::new(SocketErrorStatus::NoAddressesFound, "resolve output").with_detail(
                        format!("no IPv4 address among {addrs:?} for an IPv4 socket"),
                    )
                })
        });
        let Some(entry) = st.outputs.get_mut(index as usize) else {
            return;
        };
        let waiting = match std::mem::replace(entry, Named::Resolved(SocketAddr::from(([0; 4], 0))))
        {
            Named::Resolving(q) => q,
            other => {
                *entry = other;
                return;
            }
        };
        match chosen {
            Ok(addr) => {
                *entry = Named::Resolved(canonical(addr));
                st.out.append(waiting, addr);
                self.flush_datagram(key);
            }
            Err(e) => {
                let count = waiting.count();
                *entry = Named::Failed(e.status(), e.to_string());
                if count > 0 {
                    let err = Error::new(e.status(), "write to output").with_detail(format!(
                        "{count} datagrams written before the name resolved were not sent: {e}"
                    ));
                    st.errors.push(err);
                    if !st.report_queued {
                        st.report_queued = true;
                        self.drained_later(key);
                    }
                }
            }
        }
    }
}
