//! Errors: one [`Error`] type carrying a portable [`SocketErrorStatus`].
//!
//! Every failure sockloop reports says three things: *what* failed (the operation),
//! *where* (the socket's address, when there is one) and *which status* applies, so
//! that a program can branch on the status without parsing messages, the way
//! `SocketError.GetStatus` is used on Windows.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::net::SocketAddr;

/// The portable status of a failed socket operation.
///
/// Values `0..=30` have the names and numbers of the Windows
/// `Windows.Networking.Sockets.SocketErrorStatus` enumeration; values from `100` on are
/// sockloop's own, for conditions that enumeration has no word for (a stale handle, a
/// full write queue, an over-long frame). The enum is `#[non_exhaustive]`: more values
/// may be added.
///
/// # Examples
///
/// ```
/// use sockloop::SocketErrorStatus;
///
/// let refused = std::io::Error::from_raw_os_error(libc_econnrefused());
/// assert_eq!(SocketErrorStatus::from_io(&refused), SocketErrorStatus::ConnectionRefused);
/// assert_eq!(SocketErrorStatus::ConnectionRefused as u32, 12);
/// assert!(SocketErrorStatus::ConnectionRefused.is_transient());
/// # fn libc_econnrefused() -> i32 { 111 }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum SocketErrorStatus {
    /// The status is unknown.
    Unknown = 0,
    /// The operation was aborted.
    OperationAborted = 1,
    /// A bad response was received from an HTTP server.
    HttpInvalidServerResponse = 2,
    /// A connection timeout was exceeded.
    ConnectionTimedOut = 3,
    /// The address family is not supported.
    AddressFamilyNotSupported = 4,
    /// The socket type is not supported.
    SocketTypeNotSupported = 5,
    /// The host was not found.
    HostNotFound = 6,
    /// The name is valid but has no data of the requested type.
    NoDataRecordOfRequestedType = 7,
    /// A temporary name resolution failure (no authoritative answer).
    NonAuthoritativeHostNotFound = 8,
    /// The specified class was not found.
    ClassTypeNotFound = 9,
    /// The address is already in use.
    AddressAlreadyInUse = 10,
    /// The requested address cannot be assigned.
    CannotAssignRequestedAddress = 11,
    /// The connection was refused.
    ConnectionRefused = 12,
    /// The network is unreachable.
    NetworkIsUnreachable = 13,
    /// The host is unreachable.
    UnreachableHost = 14,
    /// The network is down.
    NetworkIsDown = 15,
    /// The network dropped the connection on reset.
    NetworkDroppedConnectionOnReset = 16,
    /// Software caused the connection to abort.
    SoftwareCausedConnectionAbort = 17,
    /// The connection was reset by the peer.
    ConnectionResetByPeer = 18,
    /// The host is down.
    HostIsDown = 19,
    /// No addresses were found for the name.
    NoAddressesFound = 20,
    /// Too many open files.
    TooManyOpenFiles = 21,
    /// A message was too long.
    MessageTooLong = 22,
    /// A certificate is outside its validity period.
    CertificateExpired = 23,
    /// A certificate chain ends in an untrusted root.
    CertificateUntrustedRoot = 24,
    /// A certificate's name does not match the host.
    CertificateCommonNameIsIncorrect = 25,
    /// A certificate is not valid for the requested usage.
    CertificateWrongUsage = 26,
    /// A certificate was revoked.
    CertificateRevoked = 27,
    /// Revocation could not be checked.
    CertificateNoRevocationCheck = 28,
    /// The revocation server was offline.
    CertificateRevocationServerOffline = 29,
    /// A certificate is invalid.
    CertificateIsInvalid = 30,

    /// The handle names a socket or timer that no longer exists (closed, or its slot reused).
    InvalidHandle = 100,
    /// An argument was invalid (a malformed host name, an unknown service, a bad option).
    InvalidArgument = 101,
    /// The operation does not fit the socket's state (writing before connect, after close).
    InvalidState = 102,
    /// The write queue is over its hard limit: nothing of this write was queued.
    NoBufferSpaceAvailable = 103,
    /// The peer violated the protocol (a malformed or over-long frame, bad TLS data).
    ProtocolError = 104,
    /// Permission denied by the system.
    AccessDenied = 105,
    /// The operation is not supported on this system or for this socket.
    NotSupported = 106,
    /// A transient condition: try the same operation again later.
    TryAgain = 107,
    /// The socket's handler panicked: the reactor closed that socket (see
    /// [`Builder::catch_handler_panics`](crate::Builder::catch_handler_panics)).
    HandlerPanicked = 108,
}

impl SocketErrorStatus {
    /// Maps an I/O error to its status, by errno where there is one, else by kind.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Error, ErrorKind};
    /// use sockloop::SocketErrorStatus;
    ///
    /// let e = Error::from(ErrorKind::ConnectionReset);
    /// assert_eq!(SocketErrorStatus::from_io(&e), SocketErrorStatus::ConnectionResetByPeer);
    /// ```
    pub fn from_io(error: &io::Error) -> SocketErrorStatus {
        if let Some(errno) = error.raw_os_error() {
            if let Some(status) = Self::from_errno(errno) {
                return status;
            }
        }
        Self::from_kind(error.kind())
    }

    /// Maps a Linux errno value, or `None` where no status fits.
    pub fn from_errno(errno: i32) -> Option<SocketErrorStatus> {
        use SocketErrorStatus::*;
        Some(match errno {
            libc::ECANCELED | libc::EINTR => OperationAborted,
            libc::ETIMEDOUT => ConnectionTimedOut,
            libc::EAFNOSUPPORT | libc::EPFNOSUPPORT => AddressFamilyNotSupported,
            libc::ESOCKTNOSUPPORT | libc::EPROTONOSUPPORT | libc::EPROTOTYPE => {
                SocketTypeNotSupported
            }
            libc::EADDRINUSE => AddressAlreadyInUse,
            libc::EADDRNOTAVAIL => CannotAssignRequestedAddress,
            libc::ECONNREFUSED => ConnectionRefused,
            libc::ENETUNREACH => NetworkIsUnreachable,
            libc::EHOSTUNREACH => UnreachableHost,
            libc::ENETDOWN => NetworkIsDown,
            libc::ENETRESET => NetworkDroppedConnectionOnReset,
            libc::ECONNABORTED => SoftwareCausedConnectionAbort,
            libc::ECONNRESET | libc::EPIPE => ConnectionResetByPeer,
            libc::EHOSTDOWN => HostIsDown,
            libc::EMFILE | libc::ENFILE => TooManyOpenFiles,
            libc::EMSGSIZE => MessageTooLong,
            libc::EBADF | libc::ENOTSOCK => InvalidHandle,
            libc::EINVAL | libc::EDESTADDRREQ => InvalidArgument,
            libc::ENOTCONN | libc::EISCONN | libc::EALREADY | libc::EINPROGRESS => InvalidState,
            libc::ENOBUFS | libc::ENOMEM => NoBufferSpaceAvailable,
            libc::EPROTO => ProtocolError,
            libc::EACCES | libc::EPERM => AccessDenied,
            libc::EOPNOTSUPP | libc::ENOPROTOOPT | libc::ENOSYS => NotSupported,
            libc::EAGAIN => TryAgain,
            _ => return None,
        })
    }

    fn from_kind(kind: io::ErrorKind) -> SocketErrorStatus {
        use io::ErrorKind as K;
        use SocketErrorStatus::*;
        match kind {
            K::ConnectionRefused => ConnectionRefused,
            K::ConnectionReset | K::BrokenPipe => ConnectionResetByPeer,
            K::ConnectionAborted => SoftwareCausedConnectionAbort,
            K::TimedOut => ConnectionTimedOut,
            K::AddrInUse => AddressAlreadyInUse,
            K::AddrNotAvailable => CannotAssignRequestedAddress,
            K::NotConnected => InvalidState,
            K::InvalidInput => InvalidArgument,
            K::InvalidData | K::UnexpectedEof => ProtocolError,
            K::PermissionDenied => AccessDenied,
            K::Unsupported => NotSupported,
            K::WouldBlock | K::Interrupted => TryAgain,
            K::OutOfMemory => NoBufferSpaceAvailable,
            _ => Unknown,
        }
    }

    /// Whether trying again later can succeed: `true` for conditions of the network or
    /// the peer that may pass (refused, timed out, unreachable, reset, too many files,
    /// a full queue), `false` for errors of the program (invalid argument or handle,
    /// wrong state) and of certificates.
    pub fn is_transient(self) -> bool {
        use SocketErrorStatus::*;
        matches!(
            self,
            OperationAborted
                | ConnectionTimedOut
                | NonAuthoritativeHostNotFound
                | AddressAlreadyInUse
                | ConnectionRefused
                | NetworkIsUnreachable
                | UnreachableHost
                | NetworkIsDown
                | NetworkDroppedConnectionOnReset
                | SoftwareCausedConnectionAbort
                | ConnectionResetByPeer
                | HostIsDown
                | TooManyOpenFiles
                | CertificateRevocationServerOffline
                | NoBufferSpaceAvailable
                | TryAgain
        )
    }
}

impl fmt::Display for SocketErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A failed operation: its status, what was being done, on which address, and why.
///
/// # Examples
///
/// ```
/// use sockloop::{Error, SocketErrorStatus};
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let err = Error::from_io("connect", refused).with_address("127.0.0.1:9".parse().unwrap());
/// assert_eq!(err.status(), SocketErrorStatus::ConnectionRefused);
/// assert_eq!(err.operation(), "connect");
/// println!("{err}"); // connect failed (127.0.0.1:9): ConnectionRefused: ...
/// ```
pub struct Error {
    repr: Repr,
}

/// Errors that happen often under load (a refused write, a stale handle, a closed
/// socket) are made without touching the heap: a status, the operation, and a detail
/// that is static or made of numbers. The rest (an OS error, an address, a formatted
/// detail) are boxed.
enum Repr {
    Plain {
        status: SocketErrorStatus,
        operation: &'static str,
        /// Empty: no detail.
        detail: &'static str,
    },
    /// A write that does not fit the write queue; the status follows from the sizes.
    Refused {
        operation: &'static str,
        queued: usize,
        size: usize,
        limit: usize,
    },
    Full(Box<Inner>),
}

struct Inner {
    status: SocketErrorStatus,
    operation: &'static str,
    address: Option<SocketAddr>,
    detail: Option<Cow<'static, str>>,
    source: Option<io::Error>,
}

impl Error {
    /// An error with a status and the operation that failed.
    pub fn new(status: SocketErrorStatus, operation: &'static str) -> Error {
        Error {
            repr: Repr::Plain {
                status,
                operation,
                detail: "",
            },
        }
    }

    /// An error from an I/O error; the status is derived with [`SocketErrorStatus::from_io`].
    pub fn from_io(operation: &'static str, source: io::Error) -> Error {
        let mut e = Error::new(SocketErrorStatus::from_io(&source), operation);
        e.full().source = Some(source);
        e
    }

    /// A write of `size` bytes refused because `queued` bytes are queued and the
    /// queue's limit is `limit`: `MessageTooLong` if `size` can never fit,
    /// `NoBufferSpaceAvailable` otherwise. Made without allocating: refusals under
    /// backpressure are an ordinary event.
    pub(crate) fn refused(
        operation: &'static str,
        queued: usize,
        size: usize,
        limit: usize,
    ) -> Error {
        Error {
            repr: Repr::Refused {
                operation,
                queued,
                size,
                limit,
            },
        }
    }

    /// The boxed form, made from the inline one on first use.
    fn full(&mut self) -> &mut Inner {
        if !matches!(self.repr, Repr::Full(_)) {
            let inner = Inner {
                status: self.status(),
                operation: self.operation(),
                address: None,
                detail: self.detail().map(|d| Cow::Owned(d.into_owned())),
                source: None,
            };
            self.repr = Repr::Full(Box::new(inner));
        }
        match &mut self.repr {
            Repr::Full(inner) => inner,
            _ => unreachable!("made boxed above"),
        }
    }

    /// Adds the address the operation was about.
    #[must_use]
    pub fn with_address(mut self, address: SocketAddr) -> Error {
        self.full().address = Some(address);
        self
    }

    /// Adds a human-readable explanation. A `&'static str` is kept without
    /// allocating.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Error {
        match (&mut self.repr, detail.into()) {
            (Repr::Plain { detail: slot, .. }, Cow::Borrowed(d)) => *slot = d,
            (_, d) => self.full().detail = Some(d),
        }
        self
    }

    /// The portable status.
    pub fn status(&self) -> SocketErrorStatus {
        match &self.repr {
            Repr::Plain { status, .. } => *status,
            Repr::Refused { size, limit, .. } if size > limit => SocketErrorStatus::MessageTooLong,
            Repr::Refused { .. } => SocketErrorStatus::NoBufferSpaceAvailable,
            Repr::Full(inner) => inner.status,
        }
    }

    /// The operation that failed, such as `"connect"`, `"write"` or `"parse host name"`.
    pub fn operation(&self) -> &'static str {
        match &self.repr {
            Repr::Plain { operation, .. } | Repr::Refused { operation, .. } => operation,
            Repr::Full(inner) => inner.operation,
        }
    }

    /// The address the operation was about, when there is one.
    pub fn address(&self) -> Option<SocketAddr> {
        match &self.repr {
            Repr::Full(inner) => inner.address,
            _ => None,
        }
    }

    /// The explanation, when there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use sockloop::{Error, SocketErrorStatus};
    ///
    /// let err = Error::new(SocketErrorStatus::InvalidState, "write").with_detail("the socket is closing");
    /// assert_eq!(err.detail().as_deref(), Some("the socket is closing"));
    /// ```
    pub fn detail(&self) -> Option<Cow<'_, str>> {
        match &self.repr {
            Repr::Plain { detail: "", .. } => None,
            Repr::Plain { detail, .. } => Some(Cow::Borrowed(detail)),
            Repr::Refused {
                queued,
                size,
                limit,
                ..
            } => {
                Some(Cow::Owned(if size > limit {
                    format!("{size} bytes can never fit the write queue (limit {limit}): split the write")
                } else {
                    format!(
                    "{queued} bytes queued, {size} more would exceed the limit of {limit}; wait for Drained"
                )
                }))
            }
            Repr::Full(inner) => inner.detail.as_deref().map(Cow::Borrowed),
        }
    }

    /// The underlying OS error, when there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.repr {
            Repr::Full(inner) => inner.source.as_ref(),
            _ => None,
        }
    }

    /// Whether trying again later can succeed; see [`SocketErrorStatus::is_transient`].
    pub fn is_transient(&self) -> bool {
        self.status().is_transient()
    }
}

/// The error of an operation on a handle whose object is gone: `kind` names the type
/// of handle (`"StreamSocket"`), so the message says which one was stale.
pub(crate) fn stale_handle(kind: &'static str, operation: &'static str) -> Error {
    Error::new(SocketErrorStatus::InvalidHandle, operation).with_detail(format!(
        "stale {kind} handle in {operation}: it is closed, or its slot was reused"
    ))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.operation())?;
        if let Some(addr) = self.address() {
            write!(f, " ({addr})")?;
        }
        write!(f, ": {}", self.status())?;
        if let Some(detail) = self.detail() {
            write!(f, ": {detail}")?;
        }
        if let Some(source) = self.io_error() {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("status", &self.status())
            .field("operation", &self.operation())
            .field("address", &self.address())
            .field("detail", &self.detail())
            .field("source", &self.io_error())
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io_error()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e.io_error() {
            Some(s) => s.kind(),
            None => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! errno_table {
        ($($errno:ident => $status:ident),* $(,)?) => {$(
            assert_eq!(
                SocketErrorStatus::from_io(&io::Error::from_raw_os_error(libc::$errno)),
                SocketErrorStatus::$status,
                stringify!($errno)
            );
        )*};
    }

    #[test]
    fn refusals_are_inline_and_keep_their_numbers() {
        // Six words at most: a `Result<(), Error>` stays cheap to return.
        assert!(std::mem::size_of::<Error>() <= 6 * std::mem::size_of::<usize>());
        let full = Error::refused("write", 100, 50, 120);
        assert_eq!(full.status(), SocketErrorStatus::NoBufferSpaceAvailable);
        assert_eq!(
            full.to_string(),
            "write failed: NoBufferSpaceAvailable: 100 bytes queued, 50 more would exceed the limit of 120; wait for Drained"
        );
        let never = Error::refused("write frame", 0, 121, 120);
        assert_eq!(never.status(), SocketErrorStatus::MessageTooLong);
        // Boxed on demand, keeping what the inline form said.
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let boxed = never.with_address(addr);
        assert_eq!(boxed.status(), SocketErrorStatus::MessageTooLong);
        assert_eq!(boxed.address(), Some(addr));
        assert!(boxed.detail().unwrap().contains("can never fit"), "{boxed}");
        let plain = Error::new(SocketErrorStatus::InvalidState, "close").with_detail("closing");
        assert_eq!(plain.detail().as_deref(), Some("closing"));
        let owned = plain.with_detail(format!("{} bytes", 3));
        assert_eq!(owned.detail().as_deref(), Some("3 bytes"));
    }

    #[test]
    fn errno_mapping() {
        errno_table! {
            ECONNREFUSED => ConnectionRefused,
            ECONNRESET => ConnectionResetByPeer,
            EPIPE => ConnectionResetByPeer,
            ETIMEDOUT => ConnectionTimedOut,
            EADDRINUSE => AddressAlreadyInUse,
            EADDRNOTAVAIL => CannotAssignRequestedAddress,
            ENETUNREACH => NetworkIsUnreachable,
            EHOSTUNREACH => UnreachableHost,
            ENETDOWN => NetworkIsDown,
            ECONNABORTED => SoftwareCausedConnectionAbort,
            EMFILE => TooManyOpenFiles,
            ENFILE => TooManyOpenFiles,
            EMSGSIZE => MessageTooLong,
            EAFNOSUPPORT => AddressFamilyNotSupported,
            EACCES => AccessDenied,
            EINVAL => InvalidArgument,
            ENOBUFS => NoBufferSpaceAvailable,
            EHOSTDOWN => HostIsDown,
        }
        assert_eq!(
            SocketErrorStatus::from_io(&io::Error::from_raw_os_error(libc::EXDEV)),
            SocketErrorStatus::Unknown
        );
    }

    #[test]
    fn windows_numbers() {
        use SocketErrorStatus::*;
        let table = [
            (Unknown, 0),
            (OperationAborted, 1),
            (HttpInvalidServerResponse, 2),
            (ConnectionTimedOut, 3),
            (AddressFamilyNotSupported, 4),
            (SocketTypeNotSupported, 5),
            (HostNotFound, 6),
            (NoDataRecordOfRequestedType, 7),
            (NonAuthoritativeHostNotFound, 8),
            (ClassTypeNotFound, 9),
            (AddressAlreadyInUse, 10),
            (CannotAssignRequestedAddress, 11),
            (ConnectionRefused, 12),
            (NetworkIsUnreachable, 13),
            (UnreachableHost, 14),
            (NetworkIsDown, 15),
            (NetworkDroppedConnectionOnReset, 16),
            (SoftwareCausedConnectionAbort, 17),
            (ConnectionResetByPeer, 18),
            (HostIsDown, 19),
            (NoAddressesFound, 20),
            (TooManyOpenFiles, 21),
            (MessageTooLong, 22),
            (CertificateExpired, 23),
            (CertificateUntrustedRoot, 24),
            (CertificateCommonNameIsIncorrect, 25),
            (CertificateWrongUsage, 26),
            (CertificateRevoked, 27),
            (CertificateNoRevocationCheck, 28),
            (CertificateRevocationServerOffline, 29),
            (CertificateIsInvalid, 30),
        ];
        for (status, n) in table {
            assert_eq!(status as u32, n, "{status:?}");
        }
    }

    #[test]
    fn transient_hint() {
        assert!(SocketErrorStatus::ConnectionRefused.is_transient());
        assert!(SocketErrorStatus::TooManyOpenFiles.is_transient());
        assert!(!SocketErrorStatus::InvalidHandle.is_transient());
        assert!(!SocketErrorStatus::CertificateExpired.is_transient());
        assert!(!SocketErrorStatus::InvalidArgument.is_transient());
    }

    #[test]
    fn display_names_operation_address_and_status() {
        let e = Error::from_io("connect", io::Error::from_raw_os_error(libc::ECONNREFUSED))
            .with_address("127.0.0.1:9".parse().unwrap());
        let text = e.to_string();
        assert!(
            text.starts_with("connect failed (127.0.0.1:9): ConnectionRefused"),
            "{text}"
        );
        assert_eq!(e.status(), SocketErrorStatus::ConnectionRefused);
        assert!(std::error::Error::source(&e).is_some());
    }
}
