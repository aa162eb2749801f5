//! A small client of the admin API for the CLI.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use comfy_table::Table;
use serde_json::{Value, json};

use crate::cli::{AdminConn, KeysAction, MembersAction, OrgsAction, Output, ProjectsAction};

/// The CLI's HTTP client: bounded connect and total time, and never a redirect (a token must
/// not follow one to another host).
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build http client")
}

pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(conn: &AdminConn) -> anyhow::Result<Self> {
        // flags and environment first, then the profile written by `gatehouse login`
        let profile = crate::profile::load()?;
        let Some(token) = conn.admin_token.clone().or_else(|| profile.as_ref().map(|p| p.token.clone())) else {
            bail!("no admin token: run `gatehouse login`, or set GATEHOUSE_ADMIN_TOKEN");
        };
        let base = conn
            .admin_url
            .clone()
            .or_else(|| profile.map(|p| p.admin_url))
            .unwrap_or_else(|| "http://127.0.0.1:8081".to_owned());
        Self::with(&base, &token)
    }

    pub fn with(base: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http: http_client()? })
    }

    /// Checks the token against the server (any authenticated read will do).
    pub async fn verify(&self) -> anyhow::Result<()> {
        self.call(reqwest::Method::GET, "/admin/v1/orgs", None, &[("limit", "1".to_owned())]).await.map(|_| ())
    }

    pub(crate) async fn call(
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
            KeysAction::Revoke { id, org } => {
                let q: Vec<_> = org.map(|o| ("org", o)).into_iter().collect();
                let v = self.call(reqwest::Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None, &q).await?;
                match output {
                    Output::Json => writeln!(out, "{v}")?,
                    Output::Table => writeln!(out, "revoked {}", v["id"].as_str().unwrap_or(&id))?,
                }
            }
            KeysAction::Rotate { id, org, grace } => {
                let q: Vec<_> = org.map(|o| ("org", o)).into_iter().collect();
                let body = json!({"grace_seconds": grace.map_or(0, |g| Duration::from(g).as_secs())});
                let v =
                    self.call(reqwest::Method::POST, &format!("/admin/v1/keys/{id}/rotate"), Some(body), &q).await?;
                match output {
                    Output::Json => writeln!(out, "{v}")?,
                    Output::Table => {
                        writeln!(out, "id:      {}", v["key"]["id"].as_str().unwrap_or(""))?;
                        writeln!(out, "key:     {}", v["key"]["key"].as_str().unwrap_or(""))?;
                        writeln!(
                            out,
                            "\nThe old key {id} stops after {} s. The new key is shown only this once.",
                            v["grace_seconds"]
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Prints an API answer: the JSON as is, or the named fields of each item as a table.
pub(crate) fn print(v: &Value, output: Output, columns: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if output == Output::Json {
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let items: Vec<&Value> = match v["data"].as_array() {
        Some(list) => list.iter().collect(),
        None => vec![v],
    };
    let mut t = Table::new();
    t.set_header(columns.iter().map(|(h, _)| *h));
    for item in items {
        t.add_row(columns.iter().map(|(_, f)| match &item[*f] {
            Value::Null => "-".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }));
    }
    writeln!(out, "{t}")?;
    Ok(())
}

const ORG_COLUMNS: &[(&str, &str)] = &[("ID", "id"), ("NAME", "name"), ("DISABLED", "disabled_at")];
const PROJECT_COLUMNS: &[(&str, &str)] =
    &[("ID", "id"), ("NAME", "name"), ("MODELS", "models"), ("DISABLED", "disabled_at")];
const MEMBER_COLUMNS: &[(&str, &str)] =
    &[("USER", "user_id"), ("EMAIL", "email"), ("NAME", "name"), ("KIND", "kind"), ("ROLE", "role")];

impl AdminClient {
    /// An org id, given its id or its name (names are looked up among the orgs this token sees).
    async fn org_id(&self, org: &str) -> anyhow::Result<String> {
        if is_uuid(org) {
            return Ok(org.to_owned());
        }
        let list = self.call(reqwest::Method::GET, "/admin/v1/orgs", None, &[("limit", "1000".to_owned())]).await?;
        find_id(&list, org).with_context(|| format!("no organization named {org}"))
    }

    async fn project_id(&self, org: &str, project: &str) -> anyhow::Result<String> {
        if is_uuid(project) {
            return Ok(project.to_owned());
        }
        let path = format!("/admin/v1/orgs/{org}/projects");
        let list = self.call(reqwest::Method::GET, &path, None, &[("limit", "1000".to_owned())]).await?;
        find_id(&list, project).with_context(|| format!("no project named {project}"))
    }

    pub async fn orgs(&self, action: OrgsAction, output: Output) -> anyhow::Result<()> {
        use reqwest::Method;
        let v = match action {
            OrgsAction::Create { name } => {
                self.call(Method::POST, "/admin/v1/orgs", Some(json!({"name": name})), &[]).await?
            }
            OrgsAction::List => self.call(Method::GET, "/admin/v1/orgs", None, &[]).await?,
            OrgsAction::Disable { org } => {
                let id = self.org_id(&org).await?;
                self.call(Method::POST, &format!("/admin/v1/orgs/{id}/disable"), None, &[]).await?
            }
            OrgsAction::Enable { org } => {
                let id = self.org_id(&org).await?;
                self.call(Method::POST, &format!("/admin/v1/orgs/{id}/enable"), None, &[]).await?
            }
        };
        print(&v, output, ORG_COLUMNS)
    }

    pub async fn projects(&self, action: ProjectsAction, output: Output) -> anyhow::Result<()> {
        use reqwest::Method;
        let v = match action {
            ProjectsAction::Create { org, name, models } => {
                let org = self.org_id(&org).await?;
                let mut body = json!({"name": name});
                if let Some(m) = models {
                    body["models"] = json!(m);
                }
                self.call(Method::POST, &format!("/admin/v1/orgs/{org}/projects"), Some(body), &[]).await?
            }
            ProjectsAction::List { org } => {
                let org = self.org_id(&org).await?;
                self.call(Method::GET, &format!("/admin/v1/orgs/{org}/projects"), None, &[]).await?
            }
            ProjectsAction::Disable { org, project } => self.switch_project(&org, &project, "disable").await?,
            ProjectsAction::Enable { org, project } => self.switch_project(&org, &project, "enable").await?,
        };
        print(&v, output, PROJECT_COLUMNS)
    }

    async fn switch_project(&self, org: &str, project: &str, verb: &str) -> anyhow::Result<Value> {
        let org = self.org_id(org).await?;
        let project = self.project_id(&org, project).await?;
        self.call(reqwest::Method::POST, &format!("/admin/v1/orgs/{org}/projects/{project}/{verb}"), None, &[]).await
    }

    pub async fn members(&self, action: MembersAction, output: Output) -> anyhow::Result<()> {
        use reqwest::Method;
        let v = match action {
            MembersAction::Add { org, email, name, role, service } => {
                let org = self.org_id(&org).await?;
                let kind = if service { "service" } else { "human" };
                let body = json!({"email": email, "name": name, "role": role, "kind": kind});
                self.call(Method::POST, &format!("/admin/v1/orgs/{org}/members"), Some(body), &[]).await?
            }
            MembersAction::List { org } => {
                let org = self.org_id(&org).await?;
                self.call(Method::GET, &format!("/admin/v1/orgs/{org}/members"), None, &[]).await?
            }
            MembersAction::Remove { org, user_id } => {
                let org = self.org_id(&org).await?;
                self.call(Method::DELETE, &format!("/admin/v1/orgs/{org}/members/{user_id}"), None, &[]).await?
            }
        };
        print(&v, output, MEMBER_COLUMNS)
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn find_id(list: &Value, name: &str) -> Option<String> {
    list["data"].as_array()?.iter().find(|o| o["name"] == name).and_then(|o| o["id"].as_str()).map(str::to_owned)
}

impl AdminClient {
    /// Streams `GET /admin/v1/audit/export` to `out` (or standard output) chunk by chunk.
    pub async fn audit_export(&self, q: crate::audit_cmd::ExportArgs) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let mut query = vec![("format", q.format.clone())];
        for (k, v) in [("from", &q.from), ("to", &q.to), ("org", &q.org), ("actor", &q.actor), ("action", &q.action)] {
            if let Some(v) = v {
                query.push((k, v.clone()));
            }
        }
        let resp = self
            .http
            .get(format!("{}/admin/v1/audit/export", self.base))
            .bearer_auth(&self.token)
            .query(&query)
            // an export of a long history may take a while; the connect timeout still applies
            .timeout(Duration::from_secs(6 * 3600))
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let msg = v["error"]["message"].as_str().unwrap_or("request failed");
            let param = v["error"]["param"].as_str().map(|p| format!(" ({p})")).unwrap_or_default();
            bail!("{} {msg}{param}", status.as_u16());
        }
        let mut sink: Box<dyn Write + Send> = match &q.out {
            Some(p) => Box::new(create_private_file(p).with_context(|| format!("cannot create {}", p.display()))?),
            None => Box::new(std::io::stdout()),
        };
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            // a cut transfer is an error, never a silently short export
            sink.write_all(&chunk.context("export interrupted")?)?;
        }
        sink.flush()?;
        Ok(())
    }
}

fn create_private_file(p: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(p)
}

impl AdminClient {
    /// The admin API path of a limits scope.
    async fn limits_path(&self, t: &crate::cli::LimitTarget) -> anyhow::Result<(String, Vec<(&'static str, String)>)> {
        let org = self.org_id(&t.org).await?;
        Ok(match (&t.project, &t.key) {
            // key routes take the org by name
            (_, Some(key)) => {
                let name = if is_uuid(&t.org) {
                    let o = self.call(reqwest::Method::GET, &format!("/admin/v1/orgs/{org}"), None, &[]).await?;
                    o["name"].as_str().unwrap_or_default().to_owned()
                } else {
                    t.org.clone()
                };
                (format!("/admin/v1/keys/{key}/limits"), vec![("org", name)])
            }
            (Some(p), None) => {
                (format!("/admin/v1/orgs/{org}/projects/{}/limits", self.project_id(&org, p).await?), vec![])
            }
            (None, None) => (format!("/admin/v1/orgs/{org}/limits"), vec![]),
        })
    }

    pub async fn limits(&self, action: crate::cli::LimitsAction, output: Output) -> anyhow::Result<()> {
        use crate::cli::LimitsAction;
        use reqwest::Method;
        let v = match action {
            LimitsAction::Show { target } => {
                let (path, q) = self.limits_path(&target).await?;
                self.call(Method::GET, &path, None, &q).await?
            }
            LimitsAction::Set { target, spec } => {
                let body: Value = serde_json::from_str(&spec).context("--spec is not JSON")?;
                let (path, q) = self.limits_path(&target).await?;
                self.call(Method::PUT, &path, Some(body), &q).await?
            }
            LimitsAction::Clear { target } => {
                let (path, q) = self.limits_path(&target).await?;
                self.call(Method::DELETE, &path, None, &q).await?
            }
        };
        if output == Output::Json {
            return print(&v, output, &[]);
        }
        let mut out = std::io::stdout().lock();
        let rpm = v["limits"]["rpm"].as_u64().map_or_else(|| "-".to_owned(), |r| r.to_string());
        writeln!(out, "rpm: {rpm}")?;
        print(&json!({"data": v["standing"]}), output, BUDGET_COLUMNS)
    }

    pub async fn usage(&self, q: crate::cli::UsageArgs, output: Output) -> anyhow::Result<()> {
        let org = self.org_id(&q.org).await?;
        let mut query = Vec::new();
        if let Some(p) = &q.project {
            query.push(("project", self.project_id(&org, p).await?));
        }
        for (k, v) in [("key", q.key), ("token", q.token), ("model", q.model), ("from", q.from), ("to", q.to)] {
            if let Some(v) = v {
                query.push((k, v));
            }
        }
        let mut v = self.call(reqwest::Method::GET, &format!("/admin/v1/orgs/{org}/usage"), None, &query).await?;
        if output == Output::Json {
            return print(&v, output, &[]);
        }
        // dollars for people; the API keeps integer micro-USD
        let usd = |micro: &Value| format!("{:.6}", micro.as_i64().unwrap_or(0) as f64 / 1_000_000.0);
        let mut total = v["total"].clone();
        total["day"] = json!("TOTAL");
        total["cost_usd"] = json!(usd(&total["cost_micro_usd"]));
        if let Some(rows) = v["data"].as_array_mut() {
            for r in rows.iter_mut() {
                r["cost_usd"] = json!(usd(&r["cost_micro_usd"]));
            }
            rows.push(total);
        }
        print(&v, output, USAGE_COLUMNS)
    }
}

const BUDGET_COLUMNS: &[(&str, &str)] =
    &[("PERIOD", "period"), ("UNIT", "unit"), ("LIMIT", "limit"), ("SPENT", "spent"), ("RESERVED", "reserved")];
const USAGE_COLUMNS: &[(&str, &str)] = &[
    ("DAY", "day"),
    ("PROJECT", "project_id"),
    ("CREDENTIAL", "credential"),
    ("MODEL", "model"),
    ("REQUESTS", "requests"),
    ("PROMPT", "prompt_tokens"),
    ("COMPLETION", "completion_tokens"),
    ("COST_USD", "cost_usd"),
];
