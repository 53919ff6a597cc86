//! `DatagramSocketControl`: the options of a datagram socket, set before it binds or
//! connects, and `DatagramSocketInformation`.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::Socket;

use crate::io::sys;
use crate::net::control::QualityOfService;
use crate::net::hostname::HostName;
use crate::net::listener::canonical;

/// Options of a datagram socket, set before it binds or connects
/// (`DatagramSocketControl` on Windows).
///
/// Built the way every options struct of the crate is (see
/// [one builder convention](crate#one-builder-convention)): `new()` gives the defaults,
/// each option is a method that takes and returns the struct, and `get_<option>` reads it.
///
/// Whatever the options, a socket receives only the multicast groups it joined itself
/// (`IP_MULTICAST_ALL` and `IPV6_MULTICAST_ALL` are off), not those another socket on
/// the same port joined.
///
/// # Examples
///
/// ```
/// use sockloop::DatagramSocketControl;
///
/// let control = DatagramSocketControl::new()
///     .multicast_only(true)
///     .multicast_hop_limit(Some(4))
///     .inbound_buffer_size(Some(1 << 20));
/// assert!(control.get_multicast_only());
/// assert_eq!(control.get_multicast_hop_limit(), Some(4));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramSocketControl {
    multicast_only: bool,
    inbound_buffer_size: Option<usize>,
    outbound_buffer_size: Option<usize>,
    hop_limit: Option<u32>,
    multicast_hop_limit: Option<u32>,
    multicast_loopback: bool,
    multicast_interface: Option<u32>,
    dont_fragment: bool,
    qos: QualityOfService,
    only_ipv6: bool,
    batching: bool,
}

impl Default for DatagramSocketControl {
    fn default() -> DatagramSocketControl {
        DatagramSocketControl {
            multicast_only: false,
            inbound_buffer_size: None,
            outbound_buffer_size: None,
            hop_limit: None,
            multicast_hop_limit: None,
            multicast_loopback: true,
            multicast_interface: None,
            dont_fragment: false,
            qos: QualityOfService::Normal,
            only_ipv6: false,
            batching: true,
        }
    }
}

impl DatagramSocketControl {
    /// The defaults: no port sharing, the system's buffer sizes and hop limits,
    /// multicast loopback on, fragmentation allowed, dual-stack IPv6 sockets, batched
    /// system calls.
    pub fn new() -> DatagramSocketControl {
        DatagramSocketControl::default()
    }

    /// Shares the local address and port with other sockets bound the same way, ours
    /// or other programs' (`SO_REUSEADDR` and `SO_REUSEPORT`): every one of them
    /// receives each multicast datagram to a group it joined. Unicast datagrams go to
    /// one of them only. Off by default: a second bind to a port in use fails with
    /// `AddressAlreadyInUse`.
    #[must_use]
    pub fn multicast_only(mut self, on: bool) -> Self {
        self.multicast_only = on;
        self
    }

    /// The kernel receive buffer size (`SO_RCVBUF`); the system default if `None`.
    #[must_use]
    pub fn inbound_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.inbound_buffer_size = bytes;
        self
    }

    /// The kernel send buffer size (`SO_SNDBUF`); the system default if `None`.
    #[must_use]
    pub fn outbound_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.outbound_buffer_size = bytes;
        self
    }

    /// The hop limit of outgoing unicast datagrams (IPv4 TTL, IPv6 unicast hops).
    #[must_use]
    pub fn outbound_unicast_hop_limit(mut self, hops: Option<u32>) -> Self {
        self.hop_limit = hops;
        self
    }

    /// The hop limit of outgoing multicast datagrams (`IP_MULTICAST_TTL`,
    /// `IPV6_MULTICAST_HOPS`); the system's (1) if `None`.
    #[must_use]
    pub fn multicast_hop_limit(mut self, hops: Option<u32>) -> Self {
        self.multicast_hop_limit = hops;
        self
    }

    /// Whether multicast datagrams this socket sends are looped back to the group's
    /// members on this host (`IP_MULTICAST_LOOP`, `IPV6_MULTICAST_LOOP`); on by
    /// default.
    #[must_use]
    pub fn multicast_loopback(mut self, on: bool) -> Self {
        self.multicast_loopback = on;
        self
    }

    /// The interface, by index, multicast datagrams leave through (`IP_MULTICAST_IF`,
    /// `IPV6_MULTICAST_IF`); the routing table decides if `None`.
    #[must_use]
    pub fn multicast_interface(mut self, index: Option<u32>) -> Self {
        self.multicast_interface = index;
        self
    }

    /// Sets the Don't Fragment bit (IPv4: path MTU discovery, `IP_PMTUDISC_DO`; IPv6:
    /// `IPV6_DONTFRAG`): a datagram larger than the path allows fails with
    /// `MessageTooLong` instead of leaving in fragments.
    #[must_use]
    pub fn dont_fragment(mut self, on: bool) -> Self {
        self.dont_fragment = on;
        self
    }

    /// The quality of service: `LowLatency` marks datagrams Expedited Forwarding
    /// (DSCP 46).
    #[must_use]
    pub fn quality_of_service(mut self, qos: QualityOfService) -> Self {
        self.qos = qos;
        self
    }

    /// On an IPv6 address, IPv6 only (`IPV6_V6ONLY`); by default an IPv6 wildcard
    /// socket also sends and receives IPv4.
    #[must_use]
    pub fn only_ipv6(mut self, on: bool) -> Self {
        self.only_ipv6 = on;
        self
    }

    /// Batched system calls (on by default): datagrams queued together leave with
    /// `sendmmsg`, and a run of same-size datagrams to one destination with one
    /// `sendmsg` and UDP GSO (`UDP_SEGMENT`); on receive, the kernel may coalesce a
    /// flow's datagrams (UDP GRO), delivered one message each as always. A kernel or
    /// device that refuses GSO turns it off for the socket, and the datagrams go
    /// without it. Off: one `sendmsg` and one `recvmsg` per datagram.
    #[must_use]
    pub fn batching(mut self, on: bool) -> Self {
        self.batching = on;
        self
    }

    /// Whether system calls are batched.
    pub fn get_batching(&self) -> bool {
        self.batching
    }

    /// Whether the address and port are shared.
    pub fn get_multicast_only(&self) -> bool {
        self.multicast_only
    }

    /// The kernel receive buffer size asked for, `None` for the system default.
    pub fn get_inbound_buffer_size(&self) -> Option<usize> {
        self.inbound_buffer_size
    }

    /// The kernel send buffer size asked for, `None` for the system default.
    pub fn get_outbound_buffer_size(&self) -> Option<usize> {
        self.outbound_buffer_size
    }

    /// The unicast hop limit, `None` for the system default.
    pub fn get_outbound_unicast_hop_limit(&self) -> Option<u32> {
        self.hop_limit
    }

    /// The multicast hop limit, `None` for the system default.
    pub fn get_multicast_hop_limit(&self) -> Option<u32> {
        self.multicast_hop_limit
    }

    /// Whether multicast loopback is on.
    pub fn get_multicast_loopback(&self) -> bool {
        self.multicast_loopback
    }

    /// The index of the interface multicast leaves through, `None` for the routing
    /// table's choice.
    pub fn get_multicast_interface(&self) -> Option<u32> {
        self.multicast_interface
    }

    /// Whether the Don't Fragment bit is set.
    pub fn get_dont_fragment(&self) -> bool {
        self.dont_fragment
    }

    /// The quality of service.
    pub fn get_quality_of_service(&self) -> QualityOfService {
        self.qos
    }

    /// Whether an IPv6 socket is IPv6 only.
    pub fn get_only_ipv6(&self) -> bool {
        self.only_ipv6
    }

    /// Applies every option to a new socket of `addr`'s family, before it binds.
    pub(crate) fn apply(&self, socket: &Socket, addr: &SocketAddr) -> io::Result<()> {
        let v6 = addr.is_ipv6();
        if self.multicast_only {
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
        }
        if v6 {
            socket.set_only_v6(self.only_ipv6)?;
        }
        if let Some(n) = self.inbound_buffer_size {
            socket.set_recv_buffer_size(n)?;
        }
        if let Some(n) = self.outbound_buffer_size {
            socket.set_send_buffer_size(n)?;
        }
        self.apply_ip(socket, v6)?;
        self.apply_multicast(socket, v6)?;
        // A socket bound to one address receives only datagrams sent to it: each
        // one's destination is then known without asking the kernel for it.
        if canonical(*addr).ip().is_unspecified() {
            sys::set_packet_info(socket, v6, true)?;
        }
        Ok(())
    }

    fn apply_ip(&self, socket: &Socket, v6: bool) -> io::Result<()> {
        if let Some(hops) = self.hop_limit {
            if v6 {
                socket.set_unicast_hops_v6(hops)?;
            } else {
                socket.set_ttl_v4(hops)?;
            }
        }
        if self.qos == QualityOfService::LowLatency {
            // DSCP 46 (Expedited Forwarding) in the upper six bits of the TOS byte.
            const EF: u32 = 46 << 2;
            if v6 {
                socket.set_tclass_v6(EF)?;
            } else {
                socket.set_tos_v4(EF)?;
            }
        }
        if self.dont_fragment {
            if v6 {
                sys::set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)?;
            } else {
                sys::set_int_option(
                    socket,
                    libc::IPPROTO_IP,
                    libc::IP_MTU_DISCOVER,
                    libc::IP_PMTUDISC_DO,
                )?;
            }
        }
        Ok(())
    }

    fn apply_multicast(&self, socket: &Socket, v6: bool) -> io::Result<()> {
        // Group isolation: only the groups this socket joined. The IPv4 option also
        // governs the IPv4 datagrams of a dual-stack IPv6 socket.
        if v6 {
            socket.set_multicast_all_v6(false)?;
            let _ = socket.set_multicast_all_v4(false);
        } else {
            socket.set_multicast_all_v4(false)?;
        }
        if let Some(hops) = self.multicast_hop_limit {
            if v6 {
                socket.set_multicast_hops_v6(hops)?;
            } else {
                socket.set_multicast_ttl_v4(hops)?;
            }
        }
        if v6 {
            socket.set_multicast_loop_v6(self.multicast_loopback)?;
        } else {
            socket.set_multicast_loop_v4(self.multicast_loopback)?;
        }
        if let Some(index) = self.multicast_interface {
            if v6 {
                socket.set_multicast_if_v6(index)?;
                let _ = sys::set_multicast_if_v4_index(socket, index);
            } else {
                sys::set_multicast_if_v4_index(socket, index)?;
            }
        }
        Ok(())
    }
}

/// What is known about a datagram socket (`DatagramSocketInformation` on Windows).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatagramSocketInformation {
    /// The local address, with the port the system chose for `0`; `None` while a
    /// connecting socket resolves its peer's name.
    pub local_address: Option<SocketAddr>,
    /// The peer of a connected socket.
    pub remote_address: Option<SocketAddr>,
    /// The host name a connected socket was asked to connect to, or its peer's
    /// address.
    pub remote_host_name: Option<HostName>,
    /// Bytes of datagrams accepted by `send`/`send_to` and not yet taken by the kernel.
    pub queued_bytes: usize,
    /// Datagrams accepted and not yet taken by the kernel.
    pub queued_datagrams: usize,
    /// Datagrams the kernel took so far (each segment of a GSO send counts).
    pub datagrams_sent: u64,
    /// Send system calls made so far (`sendmsg`, `sendmmsg`, a GSO `sendmsg`),
    /// including those that failed or would have blocked: `datagrams_sent /
    /// send_calls` is how many datagrams left per call.
    pub send_calls: u64,
    /// Datagrams delivered to the handler so far (each segment of a coalesced
    /// receive counts).
    pub datagrams_received: u64,
    /// Receive system calls made so far (`recvmsg`, `recvmmsg`), including the last
    /// one of each read, which finds nothing.
    pub receive_calls: u64,
}

/// A multicast group address, checked.
pub(crate) fn multicast_group(group: &HostName) -> Result<IpAddr, crate::Error> {
    match group.ip() {
        Some(ip) if ip.is_multicast() => Ok(ip),
        _ => Err(crate::Error::new(
            crate::SocketErrorStatus::InvalidArgument,
            "join multicast group",
        )
        .with_detail(format!(
            "{} is not a multicast address (224.0.0.0/4 or ff00::/8)",
            group.raw_name()
        ))),
    }
}
