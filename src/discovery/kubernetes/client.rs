//! From a `kubernetes_sd_configs` entry to a kube client, and the key under which entries
//! share one connection (and so one pod watch).

use std::path::{Path, PathBuf};

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use xxhash_rust::xxh3::Xxh3;

use super::Error;
use crate::config::{HttpClientConfig, KubernetesSdConfig};

/// Where the service account's namespace is mounted in a pod.
pub(super) const SERVICE_ACCOUNT_NAMESPACE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The identity of a connection: entries with equal keys share a client and its watches.
/// Secrets are hashed, never kept or shown.
pub(super) fn connection_key(cfg: &KubernetesSdConfig) -> String {
    if let Some(path) = &cfg.kubeconfig_file {
        return format!("kubeconfig:{}", path.display());
    }
    let Some(url) = &cfg.api_server else {
        return "in-cluster".to_owned();
    };
    let mut h = Xxh3::new();
    let mut put = |s: &str| {
        h.update(s.as_bytes());
        h.update(&[0]);
    };
    let http = &cfg.http;
    if let Some(b) = &http.basic_auth {
        put(&b.username);
        put(&path_text(b.username_file.as_deref()));
        put(b.password.as_ref().map_or("", |p| p.expose()));
        put(&path_text(b.password_file.as_deref()));
    }
    if let Some(a) = &http.authorization {
        put(&a.kind);
        put(a.credentials.as_ref().map_or("", |c| c.expose()));
        put(&path_text(a.credentials_file.as_deref()));
    }
    let t = &http.tls_config;
    for file in [&t.ca_file, &t.cert_file, &t.key_file] {
        put(&path_text(file.as_deref()));
    }
    put(t.ca.as_deref().unwrap_or_default());
    put(t.cert.as_deref().unwrap_or_default());
    put(t.key.as_ref().map_or("", |k| k.expose()));
    put(t.server_name.as_deref().unwrap_or_default());
    put(if t.insecure_skip_verify {
        "insecure"
    } else {
        ""
    });
    format!("api-server:{url}#{:016x}", h.digest())
}

fn path_text(p: Option<&Path>) -> String {
    p.map(|p| p.display().to_string()).unwrap_or_default()
}

/// A client for `cfg` (see [`KubernetesSdConfig`] for the order of the sources).
pub(super) async fn client(cfg: &KubernetesSdConfig) -> Result<kube::Client, Error> {
    let config = if let Some(path) = &cfg.kubeconfig_file {
        from_kubeconfig(path).await?
    } else if let Some(url) = &cfg.api_server {
        from_api_server(url, &cfg.http)?
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        kube::Config::incluster().map_err(|source| Error::InCluster { source })?
    } else if let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        // Outside a cluster: the first file of KUBECONFIG.
        let first = std::env::split_paths(&path).next().unwrap_or_default();
        from_kubeconfig(&first).await?
    } else {
        return Err(Error::NoCluster);
    };
    kube::Client::try_from(config).map_err(|source| Error::Client { source })
}

async fn from_kubeconfig(path: &Path) -> Result<kube::Config, Error> {
    let kubeconfig = |source| Error::Kubeconfig {
        path: path.to_owned(),
        source,
    };
    let file = Kubeconfig::read_from(path).map_err(kubeconfig)?;
    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(kubeconfig)
}

fn from_api_server(url: &str, http: &HttpClientConfig) -> Result<kube::Config, Error> {
    let uri = url
        .parse::<http::Uri>()
        .map_err(|source| Error::ApiServer {
            url: url.to_owned(),
            source,
        })?;
    let mut config = kube::Config::new(uri);
    let mut auth = AuthInfo::default();
    if let Some(b) = &http.basic_auth {
        auth.username = Some(match &b.username_file {
            Some(file) => read_text(file)?.trim().to_owned(),
            None => b.username.clone(),
        });
        let password = match (&b.password, &b.password_file) {
            (Some(p), _) => Some(p.expose().to_owned()),
            (None, Some(file)) => Some(read_text(file)?.trim().to_owned()),
            (None, None) => None,
        };
        auth.password = password.map(Into::into);
    }
    if let Some(a) = &http.authorization {
        // kube re-reads a token file as it changes (rotation), like Prometheus.
        if let Some(c) = &a.credentials {
            auth.token = Some(c.expose().to_owned().into());
        }
        if let Some(file) = &a.credentials_file {
            auth.token_file = Some(file.display().to_string());
        }
    }
    let t = &http.tls_config;
    let mut roots = Vec::new();
    if let Some(pem) = &t.ca {
        roots.extend(pem_certificates(
            pem.as_bytes(),
            Path::new("tls_config.ca"),
        )?);
    }
    if let Some(file) = &t.ca_file {
        roots.extend(pem_certificates(read_text(file)?.as_bytes(), file)?);
    }
    if !roots.is_empty() {
        config.root_cert = Some(roots);
    }
    auth.client_certificate = t.cert_file.as_ref().map(|p| p.display().to_string());
    auth.client_key = t.key_file.as_ref().map(|p| p.display().to_string());
    if let Some(cert) = &t.cert {
        auth.client_certificate_data = Some(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            cert.as_bytes(),
        ));
    }
    if let Some(key) = &t.key {
        auth.client_key_data = Some(
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                key.expose().as_bytes(),
            )
            .into(),
        );
    }
    config.tls_server_name = t.server_name.clone();
    config.accept_invalid_certs = t.insecure_skip_verify;
    config.auth_info = auth;
    Ok(config)
}

fn read_text(path: &PathBuf) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })
}

/// The DER certificates of a PEM bundle.
fn pem_certificates(pem: &[u8], origin: &Path) -> Result<Vec<Vec<u8>>, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(Error::Certificate {
            path: origin.to_owned(),
            message: "no PEM certificate found".to_owned(),
        }),
        Err(e) => Err(Error::Certificate {
            path: origin.to_owned(),
            message: e.to_string(),
        }),
    }
}

/// The agent's own namespace, from the service account mount.
pub(super) fn own_namespace(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.to_owned(),
        source,
    })?;
    let ns = text.trim();
    if ns.is_empty() {
        return Err(Error::File {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "empty file"),
        });
    }
    Ok(ns.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Authorization, Secret};

    #[test]
    fn keys_share_equal_connections_and_split_different_ones() {
        let in_cluster = KubernetesSdConfig::default();
        assert_eq!(connection_key(&in_cluster), "in-cluster");
        let with_token = |token: &str| KubernetesSdConfig {
            api_server: Some("https://k8s:6443".to_owned()),
            http: HttpClientConfig {
                authorization: Some(Authorization {
                    kind: "Bearer".to_owned(),
                    credentials: Some(Secret::new(token)),
                    credentials_file: None,
                }),
                ..HttpClientConfig::default()
            },
            ..KubernetesSdConfig::default()
        };
        let a = connection_key(&with_token("t1"));
        assert_eq!(a, connection_key(&with_token("t1")));
        assert_ne!(a, connection_key(&with_token("t2")));
        assert!(!a.contains("t1"), "{a}");
        // Namespaces and selectors do not split connections.
        let mut other = with_token("t1");
        other.namespaces = vec!["prod".to_owned()];
        assert_eq!(a, connection_key(&other));
    }
}
