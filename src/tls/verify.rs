//! rustls errors as socket errors.

use rustls::{CertificateError, Error as TlsError};

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
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            S::CertificateExpired
        }
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
