//! The real `gatehouse` binary on ephemeral ports, with its own data dir and config file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct GatewayBuilder {
    bin: PathBuf,
    /// A command the binary runs under (e.g. `strace -f -o FILE`), empty for none.
    wrapper: Vec<String>,
    server_extra: String,
    config: String,
    env: Vec<(String, String)>,
    dir: Option<tempfile::TempDir>,
}

pub struct TestGateway {
    child: Child,
    pub data_url: String,
    pub admin_url: String,
    /// Printed at first start only.
    pub admin_token: Option<String>,
    /// The quickstart key, printed at first start only.
    pub api_key: Option<String>,
    pub dir: Option<tempfile::TempDir>,
    pub config_path: PathBuf,
    server_extra: String,
    pub http: reqwest::Client,
}

impl GatewayBuilder {
    /// Extra lines for the `[server]` section.
    pub fn server(mut self, lines: &str) -> Self {
        self.server_extra.push_str(lines);
        self.server_extra.push('\n');
        self
    }

    /// Runs the binary under `argv` (its arguments then follow), e.g. a tracer. The process
    /// the handle signals is then the wrapper; see [`TestGateway::wrapped_pid`].
    pub fn wrapped_in(mut self, argv: &[&str]) -> Self {
        self.wrapper = argv.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// The rest of the config file (providers, models, limits...).
    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Reuse a data dir (restart tests).
    pub fn data_dir(mut self, dir: tempfile::TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    pub async fn spawn(self) -> TestGateway {
        match self.try_spawn().await {
            Ok(g) => g,
            Err(e) => panic!("gateway failed to start: {e:#}"),
        }
    }

    /// For a start that must fail: what it reported (its log included). Fails the test when
    /// the gateway starts.
    pub async fn start_error(self) -> String {
        match self.try_spawn().await {
            Ok(_) => fail("the gateway started, but this start must fail"),
            Err(e) => e.to_string(),
        }
    }

    pub async fn try_spawn(self) -> anyhow::Result<TestGateway> {
        let dir = match self.dir {
            Some(d) => d,
            None => tempfile::tempdir()?,
        };
        let config_path = dir.path().join("gatehouse.toml");
        write_config(&config_path, dir.path(), &self.server_extra, &self.config)?;
        let log = std::fs::File::create(dir.path().join("gatehouse.log"))?;
        let mut cmd = match self.wrapper.split_first() {
            Some((w, args)) => {
                let mut c = Command::new(w);
                c.args(args).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GATEHOUSE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("cannot start gatehouse")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut data_url, mut admin_url, mut admin_token, mut api_key) = (None, None, None, None);
        let read = async {
            while let Some(line) = lines.next_line().await? {
                let line = line.trim();
                if let Some(u) = line.strip_prefix("gatehouse: data plane") {
                    data_url = Some(u.trim().to_owned());
                } else if let Some(u) = line.strip_prefix("gatehouse: control plane") {
                    admin_url = Some(u.trim().to_owned());
                } else if let Some(t) = line.strip_prefix("admin token:") {
                    admin_token = Some(t.trim().to_owned());
                } else if let Some(k) = line.strip_prefix("api key:") {
                    api_key = Some(k.trim().to_owned());
                } else if line == "gatehouse: ready" {
                    return Ok::<_, anyhow::Error>(true);
                }
            }
            Ok(false)
        };
        let ready = tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .context("gateway did not get ready in 60 s")??;
        if !ready {
            let log = std::fs::read_to_string(dir.path().join("gatehouse.log")).unwrap_or_default();
            bail!("gateway exited before it was ready:\n{log}");
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(TestGateway {
            child,
            data_url: data_url.context("no data plane url printed")?,
            admin_url: admin_url.context("no control plane url printed")?,
            admin_token,
            api_key,
            dir: Some(dir),
            config_path,
            server_extra: self.server_extra,
            http,
        })
    }
}

fn write_config(path: &Path, dir: &Path, server_extra: &str, rest: &str) -> anyhow::Result<()> {
    let text = format!(
        "[server]\ndata_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{server_extra}\n{rest}",
        dir.join("data").display()
    );
    std::fs::write(path, text)?;
    Ok(())
}

impl TestGateway {
    pub fn builder(bin: impl Into<PathBuf>) -> GatewayBuilder {
        GatewayBuilder {
            bin: bin.into(),
            wrapper: Vec::new(),
            server_extra: String::new(),
            config: String::new(),
            env: Vec::new(),
            dir: None,
        }
    }

    pub fn key(&self) -> &str {
        self.api_key.as_deref().unwrap_or("")
    }

    pub fn data_path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("."), |d| d.path())
    }

    /// Everything the gateway logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.data_path().join("gatehouse.log")).unwrap_or_default()
    }

    /// The logs once `marker` has appeared in them (they are written by a background thread),
    /// so assertions about what is absent are not vacuously true. Gives up after 30 s.
    pub async fn logs_once(&self, marker: &str) -> String {
        crate::eventually(Duration::from_secs(30), || async { self.logs().contains(marker) }).await;
        self.logs()
    }

    /// The value of one Prometheus series on `/metrics` (`name{labels}` exactly as exported,
    /// e.g. `gatehouse_store_polls_total{what="limit policies"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = match self.http.get(format!("{}/metrics", self.admin_url)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Returns once this replica has completed a whole poll of `what` (a poll loop's name, as
    /// in `gatehouse_store_polls_total`) that started after the call: whatever was written to
    /// the store before the call is now in its copy. Fails the test after 30 s.
    pub async fn polled(&self, what: &str) {
        let series = format!("gatehouse_store_polls_total{{what=\"{what}\"}}");
        let before = self.metric(&series).await;
        // the poll in progress at the call may have read before the write; the one after it did not
        let done =
            crate::eventually(Duration::from_secs(30), || async { self.metric(&series).await >= before + 2.0 }).await;
        if !done {
            fail(&format!("no complete poll of {what} within 30 s"));
        }
    }

    /// Replaces the non-server part of the config file (hot reload tests).
    pub fn rewrite_config(&self, rest: &str) -> anyhow::Result<()> {
        write_config(&self.config_path, self.data_path(), &self.server_extra, rest)
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut rb = self.http.post(format!("{}{path}", self.data_url)).json(body);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send().await.unwrap_or_else(|e| fail(&format!("request failed: {e}")))
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut rb = self.http.get(format!("{}{path}", self.data_url));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send().await.unwrap_or_else(|e| fail(&format!("request failed: {e}")))
    }

    pub async fn chat(&self, key: &str, model: &str) -> reqwest::Response {
        let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
        self.post("/v1/chat/completions", Some(key), &body).await
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> reqwest::Response {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.admin_url))
            .bearer_auth(self.admin_token.as_deref().unwrap_or(""));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        rb.send().await.unwrap_or_else(|e| fail(&format!("admin request failed: {e}")))
    }

    /// Creates a key through the admin API; returns (id, secret).
    pub async fn create_key(&self, body: Value) -> (String, String) {
        let resp = self.admin(reqwest::Method::POST, "/admin/v1/keys", Some(&body)).await;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 201 {
            fail(&format!("create key answered {status}: {v}"));
        }
        (v["id"].as_str().unwrap_or("").to_owned(), v["key"].as_str().unwrap_or("").to_owned())
    }

    pub async fn revoke_key(&self, id: &str) -> reqwest::Response {
        self.admin(reqwest::Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// For a gateway started [`GatewayBuilder::wrapped_in`] a wrapper: the gateway's own pid
    /// (the wrapper's first child), read from /proc.
    pub fn wrapped_pid(&self) -> Option<u32> {
        let pid = self.pid()?;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
    }

    /// Sends SIGHUP (config reload).
    pub fn hangup(&self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status();
        }
    }

    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait()).await.ok().and_then(Result::ok)
    }

    /// SIGKILL: no drain, no flush (crash tests). Hands back the data dir.
    pub async fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.start_kill();
        let _ = self.wait_exit(Duration::from_secs(10)).await;
        self.dir.take().unwrap_or_else(|| tempfile::tempdir().unwrap_or_else(|_| fail("no tempdir")))
    }

    /// Stops the process and hands back its data dir (restart tests).
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.terminate();
        let _ = self.wait_exit(Duration::from_secs(10)).await;
        self.dir.take().unwrap_or_else(|| tempfile::tempdir().unwrap_or_else(|_| fail("no tempdir")))
    }
}

fn fail(msg: &str) -> ! {
    panic!("{msg}")
}
