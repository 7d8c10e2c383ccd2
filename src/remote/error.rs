//! Errors of setting up remote write. Sending never fails upward: send errors are retried or
//! counted (see `write_client::SendError`).

/// An endpoint could not be set up. None of these is retryable: the configuration must change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint's URL is not a valid URI.
    #[error("remote_write {endpoint}: invalid url {url:?}")]
    Url {
        endpoint: String,
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    /// The endpoint's HTTP client could not be built (TLS settings).
    #[error("remote_write {endpoint}: cannot build the HTTP client")]
    Client {
        endpoint: String,
        #[source]
        source: crate::client::Error,
    },
    /// A configured header name or value is not valid HTTP.
    #[error("remote_write {endpoint}: header {name:?} is not a valid HTTP header")]
    Header { endpoint: String, name: String },
}
