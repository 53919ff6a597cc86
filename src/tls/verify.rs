//! rustls errors as socket errors.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};

use crate::error::{Error, SocketErrorStatus};

/// The status of a rustls error: certificate problems by kind, everything else (bad
/// records, alerts, unsupported parameters) `ProtocolError`, with rustls' description
/// (an alert by its name) in the detail.
pub(crate) fn tls_error(operation: &'static str, e: &TlsError) -> Error {
    let status = match e {
        TlsError::InvalidCertificate(c) => certificate_status(c),
        _ => SocketErrorStatus::ProtocolError,
    };
    Error::new(status, operation).with_detail(e.to_string())
}

fn certificate_status(e: &CertificateError) -> SocketErrorStatus {
    use SocketErrorStatus as S;
    match e {
        // Windows' CERT_E_EXPIRED: outside the validity period, either side.
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => S::CertificateExpired,
        CertificateError::UnknownIssuer => S::CertificateUntrustedRoot,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            S::CertificateCommonNameIsIncorrect
        }
        CertificateError::Revoked => S::CertificateRevoked,
        CertificateError::UnknownRevocationStatus => S::CertificateNoRevocationCheck,
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            S::CertificateWrongUsage
        }
        _ => S::CertificateIsInvalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_map_to_their_statuses() {
        use SocketErrorStatus as S;
        for (e, status) in [
            (CertificateError::Expired, S::CertificateExpired),
            (CertificateError::UnknownIssuer, S::CertificateUntrustedRoot),
            (
                CertificateError::NotValidForName,
                S::CertificateCommonNameIsIncorrect,
            ),
            (CertificateError::Revoked, S::CertificateRevoked),
            (CertificateError::BadSignature, S::CertificateIsInvalid),
        ] {
            let err = tls_error("handshake", &TlsError::InvalidCertificate(e));
            assert_eq!(err.status(), status);
        }
        let alert = tls_error(
            "handshake",
            &TlsError::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert_eq!(alert.status(), S::ProtocolError);
        assert!(alert.detail().unwrap().contains("HandshakeFailure"));
    }
}

/// The statuses a client may ask to ignore: problems of trust, time and name, which
/// a caller can judge (a test server, a device with a fixed certificate). A
/// certificate that cannot be parsed, is badly signed, revoked or for another use is
/// never accepted.
pub(crate) const IGNORABLE: [SocketErrorStatus; 3] = [
    SocketErrorStatus::CertificateExpired,
    SocketErrorStatus::CertificateUntrustedRoot,
    SocketErrorStatus::CertificateCommonNameIsIncorrect,
];

/// The standard verification (webpki) that lets through exactly the statuses it is
/// given, logging a warning each time. Each check still runs: a certificate that is
/// out of date is checked for trust at a time it was valid, an untrusted one for its
/// name. Handshake signatures are always verified.
#[derive(Debug)]
pub(crate) struct IgnoringVerifier {
    roots: Arc<RootCertStore>,
    ignore: Vec<SocketErrorStatus>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// How many times an expired certificate in the chain is looked at again at a time
/// it was valid (once per certificate of a chain this long).
const TIME_RETRIES: usize = 8;

impl IgnoringVerifier {
    pub(crate) fn new(
        roots: Arc<RootCertStore>,
        ignore: Vec<SocketErrorStatus>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> IgnoringVerifier {
        IgnoringVerifier {
            roots,
            ignore,
            algorithms,
        }
    }

    /// `Ok` if `e` is a certificate error of an ignored status (logged).
    fn ignored(&self, e: TlsError, name: &ServerName<'_>) -> Result<(), TlsError> {
        let TlsError::InvalidCertificate(c) = &e else {
            return Err(e);
        };
        let status = certificate_status(c);
        if !self.ignore.contains(&status) {
            return Err(e);
        }
        log::warn!(
            "TLS: ignoring {status:?} for {} as asked: {e}",
            name.to_str()
        );
        Ok(())
    }

    /// The chain up to a root, at `now` — or, for a certificate out of its validity
    /// when that is ignored, at a time inside it, so that trust is still checked.
    fn check_chain(
        &self,
        cert: &ParsedCertificate<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        mut now: UnixTime,
    ) -> Result<(), TlsError> {
        for _ in 0..TIME_RETRIES {
            let Err(e) = verify_server_cert_signed_by_trust_anchor(
                cert,
                &self.roots,
                intermediates,
                now,
                self.algorithms.all,
            ) else {
                return Ok(());
            };
            let retry_at = match &e {
                TlsError::InvalidCertificate(CertificateError::ExpiredContext {
                    not_after,
                    ..
                }) => Some(*not_after),
                TlsError::InvalidCertificate(CertificateError::NotValidYetContext {
                    not_before,
                    ..
                }) => Some(*not_before),
                _ => None,
            };
            let untimed = retry_at.is_none()
                && matches!(&e, TlsError::InvalidCertificate(c)
                    if certificate_status(c) == SocketErrorStatus::CertificateExpired);
            self.ignored(e.clone(), name)?;
            match retry_at {
                Some(at) => now = at,
                // Out of date, and no time to check trust at: only if trust is
                // ignored too.
                None if untimed
                    && !self
                        .ignore
                        .contains(&SocketErrorStatus::CertificateUntrustedRoot) =>
                {
                    return Err(e)
                }
                None => return Ok(()),
            }
        }
        Err(TlsError::InvalidCertificate(CertificateError::Expired))
    }
}

impl ServerCertVerifier for IgnoringVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        self.check_chain(&cert, intermediates, server_name, now)?;
        if let Err(e) = verify_server_name(&cert, server_name) {
            self.ignored(e, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
