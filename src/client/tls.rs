//! rustls client configuration from Prometheus's `tls_config`.
//!
//! As in Prometheus (Go's crypto/tls): a configured CA replaces the system roots; without one
//! the system's roots are used. `server_name` overrides the name the certificate is checked
//! against; `insecure_skip_verify` accepts any certificate but still checks handshake
//! signatures.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::Error;
use crate::config::TlsConfig;

/// Builds the rustls client configuration for `cfg`.
pub(super) fn client_config(cfg: &TlsConfig) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version.as_deref() {
        None | Some("") | Some("TLS12") => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some("TLS13") => &[&rustls::version::TLS13],
        Some(other) => {
            return Err(Error::Tls(format!(
                "min_version {other:?} is not supported (use TLS12 or TLS13)"
            )));
        }
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| Error::Tls(e.to_string()))?;

    let roots = Arc::new(root_store(cfg)?);
    let verifier: Arc<dyn ServerCertVerifier> = if cfg.insecure_skip_verify {
        Arc::new(AcceptAny(provider.clone()))
    } else {
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| Error::Tls(format!("cannot build certificate verifier: {e}")))?;
        match &cfg.server_name {
            Some(name) if !name.is_empty() => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|_| Error::Tls(format!("invalid server_name {name:?}")))?;
                Arc::new(FixedName {
                    inner: webpki,
                    name,
                })
            }
            _ => webpki,
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);

    let cert = match (&cfg.cert_file, &cfg.cert) {
        (Some(path), _) => Some(
            CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::Tls(format!("cert_file {}: {e}", path.display())))?,
        ),
        (None, Some(pem)) => Some(
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Tls(format!("cert: {e}")))?,
        ),
        (None, None) => None,
    };
    let key = match (&cfg.key_file, &cfg.key) {
        (Some(path), _) => Some(PrivateKeyDer::from_pem_file(path).map_err(|e| {
            // Only the kind of problem: the file's lines are secret.
            let reason = match e {
                pem::Error::Io(e) => e.to_string(),
                pem::Error::NoItemsFound => "no private key found".to_owned(),
                _ => "not a valid PEM private key".to_owned(),
            };
            Error::Tls(format!("key_file {}: {reason}", path.display()))
        })?),
        (None, Some(pem)) => Some(
            PrivateKeyDer::from_pem_slice(pem.expose().as_bytes())
                .map_err(|_| Error::Tls("key: not a PEM private key".into()))?,
        ),
        (None, None) => None,
    };
    match (cert, key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(cert, key)
            .map_err(|e| Error::Tls(format!("client certificate: {e}"))),
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(Error::Tls(
            "a client certificate needs both a certificate and a key".into(),
        )),
    }
}

fn root_store(cfg: &TlsConfig) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let configured = match (&cfg.ca_file, &cfg.ca) {
        (Some(path), _) => Some(
            CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::Tls(format!("ca_file {}: {e}", path.display())))?,
        ),
        (None, Some(pem)) => Some(
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Tls(format!("ca: {e}")))?,
        ),
        (None, None) => None,
    };
    match configured {
        Some(certs) => {
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::Tls(
                    "the configured CA holds no usable certificate".into(),
                ));
            }
        }
        None => {
            // Missing or unreadable system roots are not fatal: plain HTTP still works, and
            // HTTPS fails per request with a verification error that says why.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    Ok(roots)
}

/// Verifies the certificate against a configured name instead of the URL's host.
#[derive(Debug)]
struct FixedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify: true`: any certificate, but handshake signatures still checked.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_min_version_is_rejected() {
        let cfg = TlsConfig {
            min_version: Some("TLS10".into()),
            ..Default::default()
        };
        let err = client_config(&cfg).expect_err("TLS10");
        assert!(err.to_string().contains("TLS10"), "{err}");
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let cfg = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err = client_config(&cfg).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn certificate_without_key_is_rejected() {
        let cfg = TlsConfig {
            cert: Some(String::new()),
            ..Default::default()
        };
        assert!(client_config(&cfg).is_err());
    }

    #[test]
    fn defaults_build() {
        client_config(&TlsConfig::default()).expect("default TLS config");
    }
}
