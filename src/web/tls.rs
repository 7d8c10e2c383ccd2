//! The rustls server configuration of `tls_server_config` (ring provider, as the client side
//! in src/client/tls.rs).
//!
//! `client_auth_type` maps to rustls as Go's `tls.ClientAuthType` behaves: the two verifying
//! kinds use rustls's WebPKI client verifier on `client_ca` (`VerifyClientCertIfGiven` lets
//! clients without a certificate in), the two others accept any certificate whose handshake
//! signature holds (exporter-toolkit calls them insecure, and so do we).

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::config::{ClientAuth, Pem, Reporter, TlsServerConfig, TlsVersion, curve_group};

/// The PEM bytes a [`TlsServerConfig`] names, read (or copied from the web config).
pub(super) struct Material {
    pub(super) cert: Vec<u8>,
    pub(super) key: Vec<u8>,
    pub(super) client_ca: Option<Vec<u8>>,
}

/// The key of the web config that holds `pem`'s text, for problems.
pub(super) fn key_of(pem: &Pem, inline: &str, file: &str) -> String {
    match pem {
        Pem::File(_) => format!("tls_server_config.{file}"),
        Pem::Inline(_) => format!("tls_server_config.{inline}"),
    }
}

/// Builds the server configuration; problems go to `r` (None when there were any).
pub(super) fn server_config(
    cfg: &TlsServerConfig,
    m: &Material,
    http2: bool,
    r: &mut Reporter,
) -> Option<Arc<ServerConfig>> {
    let provider = Arc::new(provider(cfg));
    let cert_key = key_of(&cfg.cert, "cert", "cert_file");
    let chain: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_slice_iter(&m.cert).collect::<Result<Vec<_>, _>>() {
            Ok(chain) if !chain.is_empty() => chain,
            Ok(_) => {
                r.report(&cert_key, "no PEM certificate found");
                return None;
            }
            Err(e) => {
                r.report(&cert_key, format!("not a PEM certificate: {e}"));
                return None;
            }
        };
    let key_key = key_of(&cfg.key, "key", "key_file");
    let key = match PrivateKeyDer::from_pem_slice(&m.key) {
        Ok(key) => key,
        Err(e) => {
            // Only the kind of problem: the text is secret.
            let reason = match e {
                pem::Error::NoItemsFound => "no PEM private key found",
                _ => "not a valid PEM private key",
            };
            r.report(&key_key, reason);
            return None;
        }
    };
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match cfg.client_auth {
        ClientAuth::NoClientCert => None,
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Some(Arc::new(AnyClientCert {
                mandatory: cfg.client_auth == ClientAuth::RequireAnyClientCert,
                provider: provider.clone(),
            }))
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let roots = Arc::new(client_roots(cfg, m, r)?);
            let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let builder = if cfg.client_auth == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            match builder.build() {
                Ok(v) => Some(v),
                Err(e) => {
                    r.report(
                        "tls_server_config.client_auth_type",
                        format!("cannot verify client certificates: {e}"),
                    );
                    return None;
                }
            }
        }
    };
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls13, &rustls::version::TLS13),
        (TlsVersion::Tls12, &rustls::version::TLS12),
    ]
    .into_iter()
    .filter(|(v, _)| (cfg.min_version..=cfg.max_version).contains(v))
    .map(|(_, v)| v)
    .collect();
    let builder =
        match ServerConfig::builder_with_provider(provider).with_protocol_versions(&versions) {
            Ok(b) => b,
            Err(e) => {
                // E.g. cipher suites of TLS 1.2 only with min_version TLS13.
                r.report("tls_server_config", format!("no usable TLS settings: {e}"));
                return None;
            }
        };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = match builder.with_single_cert(chain, key) {
        Ok(c) => c,
        Err(e) => {
            r.report(&key_key, format!("unusable certificate and key: {e}"));
            return None;
        }
    };
    config.ignore_client_order = cfg.prefer_server_cipher_suites;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Some(Arc::new(config))
}

/// The ring provider with the configured cipher suites and groups, in their order.
fn provider(cfg: &TlsServerConfig) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if !cfg.cipher_suites.is_empty() {
        let all = std::mem::take(&mut provider.cipher_suites);
        // TLS 1.3's suites stay (not configurable, as in Go), then the chosen TLS 1.2 ones.
        provider.cipher_suites = all
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .chain(cfg.cipher_suites.iter().filter_map(|name| {
                all.iter()
                    .find(|s| s.suite().as_str() == Some(name.as_str()))
                    .copied()
            }))
            .collect();
    }
    if !cfg.curve_preferences.is_empty() {
        let all = std::mem::take(&mut provider.kx_groups);
        provider.kx_groups = cfg
            .curve_preferences
            .iter()
            .filter_map(|name| {
                let group = curve_group(name)?;
                all.iter().find(|g| g.name() == group).copied()
            })
            .collect();
    }
    provider
}

fn client_roots(cfg: &TlsServerConfig, m: &Material, r: &mut Reporter) -> Option<RootCertStore> {
    let (Some(pem), Some(bytes)) = (&cfg.client_ca, &m.client_ca) else {
        // The config check requires a CA for the verifying kinds.
        r.report(
            "tls_server_config.client_ca_file",
            "no client CA to verify against",
        );
        return None;
    };
    let key = key_of(pem, "client_ca", "client_ca_file");
    let certs = match CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>() {
        Ok(certs) => certs,
        Err(e) => {
            r.report(&key, format!("not a PEM certificate: {e}"));
            return None;
        }
    };
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        r.report(&key, "holds no usable CA certificate");
        return None;
    }
    Some(roots)
}

/// `RequestClientCert` and `RequireAnyClientCert`: any certificate, unverified (only the
/// handshake signature is checked, so the client holds its key).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
