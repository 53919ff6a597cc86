//! TLS with rustls, sans-IO: protection levels and options turned into rustls
//! configurations, the session that sits between a stream's socket and its receive and
//! send paths, and rustls errors as [`SocketErrorStatus`](crate::SocketErrorStatus).
//!
//! Nothing here knows sockets: the stream feeds the session ciphertext it read and
//! hands it a writer for the ciphertext to send.

mod config;
mod session;
mod verify;

pub use config::{ProtectionLevel, TlsClientOptions, TlsInformation, TlsServerConfig, TrustRoots};
pub(crate) use session::{Announce, Plaintext, TlsSession, HANDSHAKE_TIMEOUT, MAX_RECORD};
