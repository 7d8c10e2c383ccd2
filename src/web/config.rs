//! The web config file (`--web.config.file`): TLS, basic auth and response headers for the
//! agent's own endpoints, in the format of Prometheus's exporter-toolkit (the file every
//! Prometheus exporter and Prometheus itself read), so one file serves them all.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: tls.crt              # or cert: <PEM>
//!   key_file: tls.key               # or key: <PEM>
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt          # or client_ca: <PEM>
//!   min_version: TLS12              # TLS12 or TLS13
//!   max_version: TLS13
//!   cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]   # TLS 1.2 only, as Go
//!   prefer_server_cipher_suites: true
//!   curve_preferences: [X25519, CurveP256]
//! http_server_config:
//!   http2: true
//!   headers: {X-Frame-Options: deny}
//! basic_auth_users:
//!   prometheus: $2y$10$...          # bcrypt
//! ```
//!
//! Reading follows the main config (src/config): unknown keys are errors, every problem is
//! reported at once with file, line and key path, relative file names are relative to the
//! file's directory. What rustls cannot do is refused by name rather than ignored:
//! `min_version` TLS10/TLS11, CBC cipher suites, `CurveP521`, `client_allowed_sans` and
//! `rate_limit` ("not supported by scrapelet").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::config::Problem;
use crate::config::yaml::{KeyIndex, ROOT, yaml_problem};

/// The web config, resolved: defaults applied, everything validated except the contents of
/// the files it names (see `security`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfig {
    /// `tls_server_config`; None serves plain HTTP.
    pub tls: Option<TlsServerConfig>,
    /// `http_server_config.http2` (default true): offer HTTP/2 (with TLS through ALPN).
    pub http2: bool,
    /// `http_server_config.headers`: added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `basic_auth_users`: user name -> bcrypt hash; empty: no basic auth.
    pub users: BTreeMap<String, PasswordHash>,
}

/// `tls_server_config`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsServerConfig {
    /// The server's certificate chain (PEM).
    pub cert: Pem,
    /// Its private key (PEM).
    pub key: Pem,
    /// The CAs client certificates are verified against.
    pub client_ca: Option<Pem>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// TLS 1.2 suites by their IANA (and Go) names, in preference order; empty: rustls's.
    pub cipher_suites: Vec<String>,
    /// Choose by the server's order of `cipher_suites` (default true), not the client's.
    pub prefer_server_cipher_suites: bool,
    /// Key exchange groups by Go's names, in preference order; empty: rustls's.
    pub curve_preferences: Vec<String>,
}

/// PEM text in a file (re-read when it changes) or written in the web config.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Inline(String),
}

/// A bcrypt hash from `basic_auth_users` (never shown).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(pub(super) String);

/// `client_auth_type`: Go's `tls.ClientAuthType` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for (default).
    #[default]
    NoClientCert,
    /// Asked for, not required, not verified.
    RequestClientCert,
    /// Required, not verified against a CA (its handshake signature still is).
    RequireAnyClientCert,
    /// Verified against `client_ca` when given; a client without one is let in.
    VerifyClientCertIfGiven,
    /// Required and verified against `client_ca`: the only setting that authenticates.
    RequireAndVerifyClientCert,
}

/// A TLS protocol version rustls speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The web config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read. At start-up this stops the agent; later the running web
    /// config stays and the file is read again at the next check.
    #[error("cannot read web config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file, or a file it names, is not valid; every problem found is listed.
    #[error("invalid web config:\n{}", .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

/// Where problems go and how their lines are found (shared with the TLS builder, which
/// reports unreadable or unusable files at their keys).
pub(super) struct Reporter {
    origin: String,
    index: KeyIndex,
    pub(super) problems: Vec<Problem>,
}

impl Reporter {
    pub(super) fn report(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.origin.clone(),
            line: self.index.line_of(path),
            key: if path.is_empty() { ROOT } else { path }.to_owned(),
            message: message.into(),
        });
    }

    /// `value` when nothing was reported, else every problem, sorted by line.
    pub(super) fn into_result<T>(self, value: T) -> Result<T, Error> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self.fail())
        }
    }

    fn fail(mut self) -> Error {
        self.problems.sort_by_key(|p| p.line);
        Error::Invalid {
            problems: self.problems,
        }
    }
}

/// Parses web config text; `origin` names it in problems, relative file names are joined to
/// `dir`. Returns the config and the reporter with the problems found so far (the config is
/// valid only when there are none), so that the files it names can be checked too and every
/// problem reported at once. Only a YAML syntax or type error stops here.
pub(super) fn parse(
    text: &str,
    origin: &str,
    dir: Option<&Path>,
) -> Result<(WebConfig, Reporter), Error> {
    let index = KeyIndex::build(text);
    let raw: RawWebConfig = match serde_saphyr::from_str::<Option<RawWebConfig>>(text) {
        Ok(raw) => raw.unwrap_or_default(),
        Err(e) => {
            return Err(Error::Invalid {
                problems: vec![yaml_problem(&e, origin, &index)],
            });
        }
    };
    let mut r = Reporter {
        origin: origin.to_owned(),
        index,
        problems: Vec::new(),
    };
    if raw.rate_limit.is_some() {
        r.report(
            "rate_limit",
            "not supported by scrapelet (--web.max-connections caps connections)",
        );
    }
    let http = raw.http_server_config.unwrap_or_default();
    let config = WebConfig {
        tls: raw.tls_server_config.and_then(|t| tls(&mut r, t, dir)),
        http2: http.http2.unwrap_or(true),
        headers: headers(&mut r, http.headers.unwrap_or_default()),
        users: users(&mut r, raw.basic_auth_users.unwrap_or_default()),
    };
    Ok((config, r))
}

/// The headers exporter-toolkit lets a web config set, with the values allowed (empty: any).
/// Private there on purpose, for one behaviour across the Prometheus ecosystem; the same here.
const HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

fn headers(
    r: &mut Reporter,
    raw: BTreeMap<String, Option<String>>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in raw {
        let path = format!("http_server_config.headers.{name}");
        let Some((canonical, allowed)) = HEADERS.iter().find(|(h, _)| *h == name) else {
            let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
            r.report(
                &path,
                format!(
                    "HTTP header {name:?} can not be configured (one of: {})",
                    names.join(", ")
                ),
            );
            continue;
        };
        // Unset if blank, as exporter-toolkit.
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            continue;
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            r.report(&path, format!("expected one of {allowed:?}, got {value:?}"));
            continue;
        }
        match HeaderValue::from_str(&value) {
            Ok(v) => out.push((HeaderName::from_static(lower(canonical)), v)),
            Err(_) => r.report(&path, "not a valid header value"),
        }
    }
    out
}

/// The lowercase form `HeaderName::from_static` needs, for the five names above.
fn lower(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn users(
    r: &mut Reporter,
    raw: BTreeMap<String, Option<String>>,
) -> BTreeMap<String, PasswordHash> {
    let mut out = BTreeMap::new();
    for (user, hash) in raw {
        let path = format!("basic_auth_users.{user}");
        if user.contains(':') {
            r.report(&path, "a basic auth user name cannot contain ':'");
            continue;
        }
        let Some(hash) = hash else {
            r.report(&path, "expected a bcrypt hash, got nothing");
            continue;
        };
        match bcrypt::HashParts::from_str(&hash) {
            Ok(_) => {
                out.insert(user, PasswordHash(hash));
            }
            // The value is not shown: a password written here by mistake stays out of logs.
            Err(_) => r.report(
                &path,
                "not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')",
            ),
        }
    }
    out
}

fn tls(r: &mut Reporter, raw: RawTls, dir: Option<&Path>) -> Option<TlsServerConfig> {
    const P: &str = "tls_server_config";
    // As exporter-toolkit: TLS is on when any of these is set.
    let enabled = [
        &raw.cert,
        &raw.key,
        &raw.client_ca,
        &raw.cert_file,
        &raw.key_file,
    ]
    .iter()
    .chain([&raw.client_ca_file, &raw.client_auth_type].iter())
    .any(|v| v.as_deref().is_some_and(|s| !s.is_empty()));
    if !enabled {
        return None;
    }
    let join = |file: String| {
        let path = PathBuf::from(file);
        match dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    };
    let pem = |r: &mut Reporter,
               inline: Option<String>,
               file: Option<String>,
               (ik, fk): (&str, &str),
               required: bool| {
        let inline = inline.filter(|s| !s.is_empty());
        let file = file.filter(|s| !s.is_empty());
        match (inline, file) {
            (Some(_), Some(_)) => {
                r.report(
                    &format!("{P}.{fk}"),
                    format!("{ik} and {fk} exclude each other"),
                );
                None
            }
            (Some(text), None) => Some(Pem::Inline(text)),
            (None, Some(file)) => Some(Pem::File(join(file))),
            (None, None) => {
                if required {
                    r.report(P, format!("missing one of {ik} or {fk}"));
                }
                None
            }
        }
    };
    let cert = pem(r, raw.cert, raw.cert_file, ("cert", "cert_file"), true);
    let key = pem(r, raw.key, raw.key_file, ("key", "key_file"), true);
    let client_ca = pem(
        r,
        raw.client_ca,
        raw.client_ca_file,
        ("client_ca", "client_ca_file"),
        false,
    );
    let client_auth = match raw.client_auth_type.as_deref().unwrap_or("") {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "RequestClientCert" => ClientAuth::RequestClientCert,
        // RequireClientCert: kept by exporter-toolkit for backwards compatibility.
        "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        other => {
            r.report(
                &format!("{P}.client_auth_type"),
                format!(
                    "invalid client_auth_type {other:?} (NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
                ),
            );
            ClientAuth::NoClientCert
        }
    };
    if client_ca.is_some() && client_auth == ClientAuth::NoClientCert {
        r.report(
            &format!("{P}.client_auth_type"),
            "client CAs are configured without a client auth policy (set client_auth_type, e.g. RequireAndVerifyClientCert)",
        );
    }
    if client_ca.is_none()
        && matches!(
            client_auth,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    {
        // Go would fall back to the system's roots; a public CA vouching for scrapers of a
        // node agent is not what anyone means.
        r.report(
            &format!("{P}.client_ca_file"),
            "client certificates are verified, but no client_ca_file (or client_ca) says against what",
        );
    }
    if raw.client_allowed_sans.is_some() {
        r.report(
            &format!("{P}.client_allowed_sans"),
            "not supported by scrapelet (use a client CA that issues only to the allowed clients)",
        );
    }
    let version = |r: &mut Reporter, key: &str, value: Option<String>, default| match value
        .as_deref()
        .unwrap_or("")
    {
        "" => default,
        "TLS12" => TlsVersion::Tls12,
        "TLS13" => TlsVersion::Tls13,
        "TLS10" | "TLS11" => {
            r.report(
                &format!("{P}.{key}"),
                "not supported by scrapelet (rustls speaks TLS12 and TLS13)",
            );
            default
        }
        other => {
            r.report(
                &format!("{P}.{key}"),
                format!("unknown TLS version {other:?} (TLS12 or TLS13)"),
            );
            default
        }
    };
    let min_version = version(r, "min_version", raw.min_version, TlsVersion::Tls12);
    let max_version = version(r, "max_version", raw.max_version, TlsVersion::Tls13);
    if min_version > max_version {
        r.report(
            &format!("{P}.max_version"),
            "max_version is below min_version",
        );
    }
    let provider = rustls::crypto::ring::default_provider();
    let mut cipher_suites = Vec::new();
    for (i, name) in raw
        .cipher_suites
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        // TLS 1.3's suites (Go's names) are not configurable in Go either: accepted, and
        // left to rustls.
        if TLS13_SUITES.contains(&name.as_str()) {
            continue;
        }
        let known = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .any(|s| s.suite().as_str() == Some(name.as_str()));
        if known {
            cipher_suites.push(name);
        } else {
            let names: Vec<&str> = provider
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS12)
                .filter_map(|s| s.suite().as_str())
                .collect();
            r.report(
                &format!("{P}.cipher_suites[{i}]"),
                format!(
                    "cipher suite {name:?} is not supported by scrapelet (rustls offers {})",
                    names.join(", ")
                ),
            );
        }
    }
    let mut curve_preferences = Vec::new();
    for (i, name) in raw
        .curve_preferences
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if curve_group(&name).is_some() {
            curve_preferences.push(name);
        } else {
            r.report(
                &format!("{P}.curve_preferences[{i}]"),
                format!(
                    "curve {name:?} is not supported by scrapelet (X25519, CurveP256 or CurveP384)"
                ),
            );
        }
    }
    Some(TlsServerConfig {
        cert: cert?,
        key: key?,
        client_ca,
        client_auth,
        min_version,
        max_version,
        cipher_suites,
        prefer_server_cipher_suites: raw.prefer_server_cipher_suites.unwrap_or(true),
        curve_preferences,
    })
}

/// Go's names of the TLS 1.3 cipher suites.
const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The rustls key exchange group of a Go curve name.
pub(super) fn curve_group(name: &str) -> Option<rustls::NamedGroup> {
    match name {
        "X25519" => Some(rustls::NamedGroup::X25519),
        "CurveP256" => Some(rustls::NamedGroup::secp256r1),
        "CurveP384" => Some(rustls::NamedGroup::secp384r1),
        _ => None,
    }
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::File(path) => write!(f, "File({})", path.display()),
            Pem::Inline(_) => f.write_str("Inline(<pem>)"),
        }
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<bcrypt hash>")
    }
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, Option<String>>>,
    rate_limit: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, Option<String>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` as `web.yml` in `/etc/web`: the config, or every problem as
    /// `line: key: message`.
    fn check(text: &str) -> Result<WebConfig, Vec<String>> {
        match parse(text, "web.yml", Some(Path::new("/etc/web")))
            .and_then(|(config, r)| r.into_result(config))
        {
            Ok(config) => Ok(config),
            Err(Error::Invalid { problems }) => Err(problems
                .iter()
                .map(|p| format!("{}: {}: {}", p.line, p.key, p.message))
                .collect()),
            Err(e) => panic!("{e}"),
        }
    }

    fn problems(text: &str) -> Vec<String> {
        check(text).expect_err("problems")
    }

    const HASH: &str = "$2y$04$V0WdTr7NgNDZuj.rqT2qKOJYUiYZhwUcaUkfDD4bRq/ZxJoK6Ls0G";

    #[test]
    fn empty_files_serve_plain_http_without_auth() {
        for text in ["", "{}\n", "http_server_config: {}\n"] {
            let config = check(text).unwrap_or_else(|p| panic!("{text:?}: {p:?}"));
            assert_eq!(config.tls, None);
            assert!(config.http2);
            assert!(config.users.is_empty() && config.headers.is_empty());
        }
    }

    #[test]
    fn a_full_file_resolves_with_paths_relative_to_its_directory() {
        let text = format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: /abs/tls.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS13\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n  \
             curve_preferences: [X25519]\n  prefer_server_cipher_suites: false\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: \"\"\n\
             basic_auth_users:\n  prometheus: {HASH}\n"
        );
        let config = check(&text).unwrap_or_else(|p| panic!("{p:?}"));
        let tls = config.tls.expect("tls");
        assert_eq!(tls.cert, Pem::File(PathBuf::from("/etc/web/tls.crt")));
        assert_eq!(tls.key, Pem::File(PathBuf::from("/abs/tls.key")));
        assert_eq!(tls.client_ca, Some(Pem::File("/etc/web/ca.crt".into())));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(
            (tls.min_version, tls.max_version),
            (TlsVersion::Tls13, TlsVersion::Tls13)
        );
        assert_eq!(
            tls.cipher_suites,
            ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]
        );
        assert_eq!(tls.curve_preferences, ["X25519"]);
        assert!(!tls.prefer_server_cipher_suites);
        assert!(!config.http2);
        // A blank header is unset, as exporter-toolkit.
        assert_eq!(
            config.headers,
            [(
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("deny")
            )]
        );
        assert_eq!(config.users.len(), 1);
        assert!(format!("{:?}", config.users).contains("<bcrypt hash>"));
        assert!(!format!("{:?}", config.users).contains(HASH));
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_key() {
        let text = "\
tls_server_config:
  cert_file: a.crt
  client_auth_type: RequireItPlease
  min_version: TLS10
  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]
  curve_preferences: [CurveP521]
  client_allowed_sans: [a]
http_server_config:
  headers:
    X-Powered-By: scrapelet
    X-Frame-Options: allow
basic_auth_users:
  alice: hunter2
  'bob:x': $2y$10$abc
rate_limit: {interval: 1s}
";
        assert_eq!(
            problems(text),
            [
                "1: tls_server_config: missing one of key or key_file",
                "3: tls_server_config.client_auth_type: invalid client_auth_type \"RequireItPlease\" (NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)",
                "4: tls_server_config.min_version: not supported by scrapelet (rustls speaks TLS12 and TLS13)",
                "5: tls_server_config.cipher_suites[0]: cipher suite \"TLS_RSA_WITH_AES_128_CBC_SHA\" is not supported by scrapelet (rustls offers TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)",
                "6: tls_server_config.curve_preferences[0]: curve \"CurveP521\" is not supported by scrapelet (X25519, CurveP256 or CurveP384)",
                "7: tls_server_config.client_allowed_sans: not supported by scrapelet (use a client CA that issues only to the allowed clients)",
                "10: http_server_config.headers.X-Powered-By: HTTP header \"X-Powered-By\" can not be configured (one of: Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)",
                "11: http_server_config.headers.X-Frame-Options: expected one of [\"deny\", \"sameorigin\"], got \"allow\"",
                "13: basic_auth_users.alice: not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')",
                "14: basic_auth_users.bob:x: a basic auth user name cannot contain ':'",
                "15: rate_limit: not supported by scrapelet (--web.max-connections caps connections)",
            ]
        );
        // The wrong value of a password field is never echoed.
        assert!(!problems(text).concat().contains("hunter2"));
    }

    #[test]
    fn client_auth_and_its_ca_go_together() {
        assert_eq!(
            problems("tls_server_config:\n  cert: x\n  key: y\n  client_ca_file: ca.crt\n"),
            [
                "1: tls_server_config.client_auth_type: client CAs are configured without a client auth policy (set client_auth_type, e.g. RequireAndVerifyClientCert)"
            ]
        );
        assert_eq!(
            problems(
                "tls_server_config:\n  cert: x\n  key: y\n  client_auth_type: RequireAndVerifyClientCert\n"
            ),
            [
                "1: tls_server_config.client_ca_file: client certificates are verified, but no client_ca_file (or client_ca) says against what"
            ]
        );
        assert_eq!(
            problems("tls_server_config:\n  cert: x\n  cert_file: c\n  key: y\n"),
            ["3: tls_server_config.cert_file: cert and cert_file exclude each other"]
        );
        // RequireAnyClientCert needs no CA; RequireClientCert is its old name.
        let config = check(
            "tls_server_config:\n  cert: x\n  key: y\n  client_auth_type: RequireClientCert\n",
        )
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(
            config.tls.map(|t| t.client_auth),
            Some(ClientAuth::RequireAnyClientCert)
        );
    }

    #[test]
    fn yaml_errors_name_the_key() {
        assert_eq!(
            problems("tls_server_config:\n  cert_fle: a\n"),
            [
                "2: tls_server_config.cert_fle: unknown key \"cert_fle\" (did you mean \"cert_file\"?)"
            ]
        );
        assert_eq!(
            problems("http_server_config:\n  http2: maybe\n"),
            ["2: http_server_config.http2: expected true or false"]
        );
    }
}
