//! A small client of the admin API for the CLI.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use comfy_table::Table;
use serde_json::{Value, json};

use crate::cli::{AdminConn, KeysAction, Output};

pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(conn: &AdminConn) -> anyhow::Result<Self> {
        let Some(token) = conn.admin_token.clone() else {
            bail!("no admin token: set GATEHOUSE_ADMIN_TOKEN (or pass --admin-token)");
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build http client")?;
        Ok(Self { base: conn.admin_url.trim_end_matches('/').to_owned(), token, http })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        query: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let mut rb = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token).query(query);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v["error"]["message"].as_str().unwrap_or("request failed");
            let param = v["error"]["param"].as_str().map(|p| format!(" ({p})")).unwrap_or_default();
            bail!("{} {msg}{param}", status.as_u16());
        }
        Ok(v)
    }

    pub async fn keys(&self, action: KeysAction, output: Output) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match action {
            KeysAction::Create { name, org, project, models, expires_in } => {
                let mut body = json!({"name": name});
                if let Some(o) = org {
                    body["org"] = json!(o);
                }
                if let Some(p) = project {
                    body["project"] = json!(p);
                }
                if let Some(m) = models {
                    body["models"] = json!(m);
                }
                if let Some(d) = expires_in {
                    body["expires_in_seconds"] = json!(Duration::from(d).as_secs());
                }
                let v = self.call(reqwest::Method::POST, "/admin/v1/keys", Some(body), &[]).await?;
                match output {
                    Output::Json => writeln!(out, "{v}")?,
                    Output::Table => {
                        writeln!(out, "id:      {}", v["id"].as_str().unwrap_or(""))?;
                        writeln!(out, "name:    {}", v["name"].as_str().unwrap_or(""))?;
                        writeln!(out, "key:     {}", v["key"].as_str().unwrap_or(""))?;
                        writeln!(out, "\nThe key is shown only this once; store it now.")?;
                    }
                }
            }
            KeysAction::List { org, project, limit } => {
                let mut q = Vec::new();
                if let Some(o) = org {
                    q.push(("org", o));
                }
                if let Some(p) = project {
                    q.push(("project", p));
                }
                if let Some(l) = limit {
                    q.push(("limit", l.to_string()));
                }
                let v = self.call(reqwest::Method::GET, "/admin/v1/keys", None, &q).await?;
                match output {
                    Output::Json => writeln!(out, "{v}")?,
                    Output::Table => {
                        let mut t = Table::new();
                        t.set_header(["ID", "NAME", "HINT", "MODELS", "EXPIRES", "REVOKED"]);
                        for k in v["data"].as_array().into_iter().flatten() {
                            let models = k["models"].as_array().map_or("*".to_owned(), |m| {
                                m.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
                            });
                            t.add_row([
                                k["id"].as_str().unwrap_or("").to_owned(),
                                k["name"].as_str().unwrap_or("").to_owned(),
                                k["hint"].as_str().unwrap_or("").to_owned(),
                                models,
                                k["expires_at"].as_i64().map_or("never".into(), |t| t.to_string()),
                                k["revoked_at"].as_i64().map_or("-".into(), |t| t.to_string()),
                            ]);
                        }
                        writeln!(out, "{t}")?;
                    }
                }
            }
            KeysAction::Revoke { id } => {
                let v = self.call(reqwest::Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None, &[]).await?;
                match output {
                    Output::Json => writeln!(out, "{v}")?,
                    Output::Table => writeln!(out, "revoked {}", v["id"].as_str().unwrap_or(&id))?,
                }
            }
        }
        Ok(())
    }
}
