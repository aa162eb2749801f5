//! A real OpenID Provider (node `oidc-provider`, tests/oidc/provider.mjs) as a child process.
//! Under `CI=true` a missing Node.js or missing `tests/oidc/node_modules` fails the test;
//! elsewhere the test is skipped loudly (run `npm ci --prefix tests/oidc`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct OpenIdProvider {
    pub issuer: String,
    pub port: u16,
    /// Where the provider wrote its private keys (`<kid>.pem`, `attacker.pem`).
    pub keys: tempfile::TempDir,
    child: Child,
    http: reqwest::Client,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

impl OpenIdProvider {
    /// Starts the provider (on `port`, 0 for any) signing with key generation `generation`.
    /// `None` when it cannot run here outside CI.
    #[expect(clippy::print_stderr, reason = "test setup: fail or skip loudly")]
    pub async fn start(port: u16, generation: &str) -> Option<OpenIdProvider> {
        let d = dir();
        if !d.join("node_modules/oidc-provider").exists() {
            let msg = format!("{}/node_modules is missing; run `npm ci --prefix tests/oidc`", d.display());
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        let keys = tempfile::tempdir().ok()?;
        let mut child = match Command::new("node")
            .arg(d.join("provider.mjs"))
            .arg(port.to_string())
            .arg(generation)
            .arg(keys.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("cannot run node: {e}"),
            Err(e) => {
                eprintln!("SKIPPED: cannot run node: {e}");
                return None;
            }
        };
        let stdout = child.stdout.take()?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.ok()?.ok()??;
        let v: serde_json::Value = serde_json::from_str(&line).ok()?;
        let issuer = v["issuer"].as_str()?.to_owned();
        let port = u16::try_from(v["port"].as_u64()?).ok()?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().ok()?;
        Some(OpenIdProvider { issuer, port, keys, child, http })
    }

    /// A client-credentials access token for `client` (see provider.mjs) and audience.
    pub async fn token(&self, client: &str, audience: &str) -> String {
        let secret = format!("{client}-secret");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret.as_str()),
            ("scope", "api"),
            ("resource", audience),
        ];
        let resp = self.http.post(format!("{}/token", self.issuer)).form(&form).send().await;
        let v: serde_json::Value = match resp {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(e) => panic!("token request failed: {e}"),
        };
        v["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {v}")).to_owned()
    }

    /// How many times the provider's JWKS was fetched.
    pub async fn jwks_fetches(&self) -> u64 {
        let r = self.http.get(format!("{}/__stats", self.issuer)).send().await;
        match r {
            Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|v| v["jwks"].as_u64()).unwrap_or(0),
            Err(_) => 0,
        }
    }

    pub fn key_pem(&self, kid: &str) -> Vec<u8> {
        std::fs::read(self.keys.path().join(format!("{kid}.pem"))).unwrap_or_default()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}
