//! TLS for the connectors that speak their own wire protocol (PostgreSQL, LDAP): rustls
//! with the ring provider that reqwest and kube already use, and roots from a CA file or
//! the operating system's store.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::ConnectorError;

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The chain to a trusted root and the host name (libpq `verify-full`, LDAP).
    Full,
    /// The chain only, any host name (libpq `verify-ca`).
    Chain,
    /// Nothing: encrypted, not authenticated (libpq `prefer` / `require` without a root
    /// certificate). The handshake signature is still checked against the certificate.
    Nothing,
}

/// A client certificate and its key, both PEM files.
pub struct ClientCert<'a> {
    pub cert: &'a str,
    pub key: &'a str,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots to trust: the PEM file `ca_file` (named by `setting` in errors), else the
/// operating system's store.
pub fn roots(ca_file: Option<&str>, setting: &str) -> Result<RootCertStore, ConnectorError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect())
                .map_err(|e| {
                    ConnectorError::config(format!(
                        "cannot read {setting} {path}: {e}; it must be a PEM file of CA certificates"
                    ))
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ConnectorError::config(format!(
                    "{setting} {path} holds no CA certificate (expected PEM `BEGIN CERTIFICATE` blocks)"
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(ConnectorError::config(format!(
                    "no CA certificates found in the system's store; set {setting} to the CA that signs the server's certificate"
                )));
            }
        }
    }
    Ok(store)
}

/// A rustls client config: `verify` against `roots`, with an optional client certificate.
pub fn client_config(
    verify: Verify,
    roots: RootCertStore,
    client: Option<ClientCert<'_>>,
) -> Result<ClientConfig, ConnectorError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectorError::config(format!("TLS setup: {e}")))?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ConnectorError::config(format!("TLS setup: {e}")));
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Full => webpki?,
        Verify::Chain => Arc::new(ChainOnly(webpki?)),
        Verify::Nothing => Arc::new(NoVerify(provider.signature_verification_algorithms)),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some(c) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(c.cert)
                .and_then(|it| it.collect())
                .map_err(|e| {
                    ConnectorError::config(format!("cannot read sslcert {}: {e}", c.cert))
                })?;
            let key = PrivateKeyDer::from_pem_file(c.key).map_err(|e| {
                ConnectorError::config(format!("cannot read sslkey {}: {e}", c.key))
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                ConnectorError::config(format!(
                    "sslcert {} and sslkey {} do not make a client certificate: {e}",
                    c.cert, c.key
                ))
            })
        }
    }
}

/// True for `localhost` and loopback addresses, as written: a name is not resolved, so a
/// name that happens to resolve to loopback counts as remote (the safe side).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.eq_ignore_ascii_case("localhost.")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What a TLS failure in `err`'s chain means for the user, naming `ca_setting` (the
/// setting that holds the CA); None when the chain holds no rustls error.
pub fn advice(err: &(dyn std::error::Error + 'static), ca_setting: &str) -> Option<String> {
    let e = rustls_error(err)?;
    Some(match e {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "the server's certificate is not valid for the host name connected to: connect by a name the certificate lists".to_string(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired: the server's operator must renew it".to_string(),
        rustls::Error::InvalidCertificate(_) => format!(
            "the server's certificate is not trusted: set {ca_setting} to a PEM file of the CA that signs it"
        ),
        other => format!("the TLS handshake failed ({other})"),
    })
}

/// The rustls error in `err`'s source chain, also inside an `io::Error`.
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

/// Checks the chain and ignores the host name (libpq `verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (libpq `prefer`/`require` semantics): encryption against a
/// passive listener, no authentication of the server.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_taken_as_written() {
        for host in ["localhost", "127.0.0.1", "127.0.0.2", "::1", "[::1]"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["db.staging", "10.0.0.5", "localhost.example", "0.0.0.0"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn a_missing_ca_file_is_a_config_error() {
        let e = roots(Some("/nonexistent/ca.pem"), "sslrootcert").unwrap_err();
        assert_eq!(e.class, super::super::ErrorClass::Config);
        assert!(
            e.message
                .contains("cannot read sslrootcert /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
