//! Running the real agent in-process against test targets and receivers, and reading its
//! HTTP pages.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use scrapelet::Config;
use scrapelet::agent::{Agent, Options};

/// A started agent and its temporary data directory.
pub struct TestAgent {
    pub agent: Agent,
    pub dir: tempfile::TempDir,
}

impl TestAgent {
    /// Starts the agent with the YAML `config` on 127.0.0.1:0.
    pub async fn start(config: &str) -> TestAgent {
        let config = scrapelet::config::parse(config, "test.yml")
            .unwrap_or_else(|e| panic!("test config: {e}"));
        TestAgent::start_config(config, None).await
    }

    /// Starts the agent with a resolved `config` on 127.0.0.1:0; with `node_name`, as the
    /// agent of that node (`--node-name`), which Kubernetes discovery needs.
    pub async fn start_config(config: Config, node_name: Option<&str>) -> TestAgent {
        Self::start_in(config, node_name, tempfile::tempdir().expect("tempdir")).await
    }

    /// Like [`TestAgent::start_config`] with the data directory under `dir` (which may hold
    /// what an earlier agent left: its buffer and cursors).
    pub async fn start_in(
        config: Config,
        node_name: Option<&str>,
        dir: tempfile::TempDir,
    ) -> TestAgent {
        let options = Options {
            node_name: node_name.map(str::to_owned),
            ..test_options(&dir)
        };
        Self::start_with(config, options, dir).await
    }

    /// Like [`TestAgent::start_config`] with the buffer writing through `fs` (a failing or
    /// stalled disk).
    pub async fn start_with_fs(config: Config, fs: scrapelet::agent::BufferFs) -> TestAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = Options {
            buffer_fs: fs,
            ..test_options(&dir)
        };
        Self::start_with(config, options, dir).await
    }

    async fn start_with(config: Config, options: Options, dir: tempfile::TempDir) -> TestAgent {
        let agent = Agent::start(config, options)
            .await
            .unwrap_or_else(|e| panic!("agent start: {e}"));
        TestAgent { agent, dir }
    }

    /// Starts the agent from the config file at `path`, which reloads re-read; the file is
    /// checked for changes every `watch` (zero: never). `POST /-/reload` is enabled
    /// (`--web.enable-lifecycle`), as the tests of reloads need it.
    pub async fn start_file(path: &std::path::Path, watch: Duration) -> TestAgent {
        let config = scrapelet::config::load(path).unwrap_or_else(|e| panic!("test config: {e}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let options = Options {
            config_file: Some(path.to_owned()),
            config_watch_interval: watch,
            enable_lifecycle: true,
            ..test_options(&dir)
        };
        Self::start_with(config, options, dir).await
    }

    /// Starts the agent with the YAML `config` on 127.0.0.1:0 and the options `options`
    /// makes of the test defaults (web server settings and the like).
    pub async fn start_options(
        config: &str,
        options: impl FnOnce(Options) -> Options,
    ) -> TestAgent {
        let config = scrapelet::config::parse(config, "test.yml")
            .unwrap_or_else(|e| panic!("test config: {e}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let options = options(test_options(&dir));
        Self::start_with(config, options, dir).await
    }

    /// Sends a body-less `method` request to `path` on the agent: (status, body).
    pub async fn request(&self, method: http::Method, path: &str) -> (u16, String) {
        request(method, &format!("{}{path}", self.base())).await
    }

    /// POSTs to `path` on the agent: (status, body).
    pub async fn post(&self, path: &str) -> (u16, String) {
        request(http::Method::POST, &format!("{}{path}", self.base())).await
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.agent.local_addr())
    }

    /// GETs `path` from the agent: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        get(&format!("{}{path}", self.base())).await
    }

    /// The value of `name{labels}` in the agent's /metrics (see [`super::metric_in_text`]).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (_, text) = self.get("/metrics").await;
        super::metric_in_text(&text, name, labels)
    }

    /// The sum of every `name` series with `labels` in the agent's /metrics (0 when none),
    /// e.g. a job's targets over all health states.
    pub async fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = self.get("/metrics").await;
        super::metric_sum_in_text(&text, name, labels)
    }

    /// `/api/v1/targets`, parsed.
    pub async fn targets_json(&self) -> serde_json::Value {
        let (status, body) = self.get("/api/v1/targets").await;
        assert_eq!(status, 200, "/api/v1/targets: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/v1/targets: {e}: {body}"))
    }
}

/// Options for an agent on 127.0.0.1:0 with its data in `dir`.
fn test_options(dir: &tempfile::TempDir) -> Options {
    Options {
        listen_address: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.path().join("data"),
        shutdown_grace: Duration::from_secs(5),
        ..Options::default()
    }
}

/// GETs `url`: (status, body).
pub async fn get(url: &str) -> (u16, String) {
    request(http::Method::GET, url).await
}

/// Sends a body-less `method` request to `url`: (status, body).
async fn request(method: http::Method, url: &str) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = http::Request::builder()
        .method(method.clone())
        .uri(url)
        .body(Empty::new())
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {url} timed out"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
