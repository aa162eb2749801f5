//! Limits and budgets per scope — `/admin/v1/orgs/{org}/limits`,
//! `/admin/v1/orgs/{org}/projects/{project}/limits`, `/admin/v1/keys/{id}/limits` — and the
//! usage ledger (`/admin/v1/orgs/{org}/usage`). A spec is validated before it is stored; it
//! applies on this replica at once and on the others within their poll interval (1 s). A read
//! shows the scope's own spec and each budget's standing (spent and reserved) this period.

use gatehouse_core::{Denial, DenyCode, KeyId, OrgId, ProjectId};
use gatehouse_limits::spec::{LimitSpec, Unit};
use gatehouse_store::{LimitScope, UsageFilter};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AdminState;
use crate::keys::OrgQuery;
use crate::rbac::{Operator, Permission};
use crate::reply::{bad, store_err};
use crate::service::{Call, Pending, Reply, services};

/// The scope a request addresses, resolved and permission-checked.
#[derive(Clone, Copy)]
struct Target {
    org: OrgId,
    project: Option<ProjectId>,
    key: Option<KeyId>,
}

impl Target {
    fn scope(self) -> LimitScope {
        gatehouse_gates::limits::store_scope(self.project, self.key)
    }

    fn label(self) -> String {
        match (self.project, self.key) {
            (_, Some(k)) => format!("key:{k}"),
            (Some(p), None) => format!("project:{p}"),
            (None, None) => format!("org:{}", self.org),
        }
    }
}

enum Addr<'a> {
    Org(&'a str),
    Project(&'a str, &'a str),
    Key(&'a str, Option<&'a str>),
}

async fn target(s: &AdminState, op: &Operator, addr: &Addr<'_>, write: bool) -> Result<Target, Denial> {
    match *addr {
        Addr::Org(org) => {
            let perm = if write { Permission::OrgUpdate } else { Permission::OrgRead };
            let (org, _) = crate::policies::scope(s, op, org, None, perm).await?;
            Ok(Target { org, project: None, key: None })
        }
        Addr::Project(org, project) => {
            let perm = if write { Permission::ProjectWrite } else { Permission::ProjectRead };
            let (org, project) = crate::policies::scope(s, op, org, Some(project), perm).await?;
            Ok(Target { org, project, key: None })
        }
        Addr::Key(id, org) => {
            let perm = if write { Permission::KeyWriteAny } else { Permission::KeyRead };
            let (org, key) = crate::keys::scoped_key(s, op, org, id, perm).await?;
            s.store.key(org, key).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
            Ok(Target { org, project: None, key: Some(key) })
        }
    }
}

fn amount(unit: Unit, v: u64) -> Value {
    match unit {
        // micro-USD as a decimal USD amount
        #[expect(clippy::cast_precision_loss, reason = "display only; exact below 2^53 micro-USD")]
        Unit::Usd => json!(v as f64 / 1_000_000.0),
        Unit::Tokens => json!(v),
    }
}

/// The scope's own spec and each of its budgets' standing in the current period.
async fn view(s: &AdminState, t: Target) -> Result<(StatusCode, Value), Denial> {
    let row = s.store.limit_policy(t.org, t.scope()).await.map_err(store_err)?;
    let spec = row.as_ref().and_then(|r| serde_json::from_str::<LimitSpec>(&r.spec).ok());
    let day = gatehouse_gates::limits::utc_day(std::time::SystemTime::now());
    let mut standing = Vec::new();
    for b in spec.as_ref().and_then(|sp| sp.compile().ok()).unwrap_or_default() {
        let budget = gatehouse_gates::limits::period_key(&t.label(), &b, &day);
        let st = s.control.budget_standing(&budget.key).await.map_err(|_| Denial::new(DenyCode::Unavailable))?;
        standing.push(json!({
            "period": b.period.as_str(),
            "unit": b.unit.as_str(),
            "limit": amount(b.unit, b.limit),
            "spent": amount(b.unit, st.spent),
            "reserved": amount(b.unit, st.reserved),
        }));
    }
    Ok((
        StatusCode::OK,
        json!({
            "org_id": t.org,
            "project_id": t.project,
            "key_id": t.key,
            "limits": spec,
            "standing": standing,
            "updated_at": row.as_ref().map(|r| r.updated_at),
            "updated_by": row.as_ref().map(|r| r.updated_by.clone()),
        }),
    ))
}

async fn reload(s: &AdminState) -> Result<(), Denial> {
    s.control.reload_limit_policies().await.map_err(store_err)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Org,
    Project,
    Key,
}

/// The scope the path (and for keys the query's org) addresses, named in the audit row and
/// checked for the read or write right.
async fn resolve(c: &mut Call, kind: Kind, write: bool) -> Result<Target, Denial> {
    if kind == Kind::Key {
        c.target_path("id");
        let q: OrgQuery = c.query()?;
        let id = c.path("id").to_owned();
        return target(&c.s, &c.op, &Addr::Key(&id, q.org.as_deref()), write).await;
    }
    c.target_path(if kind == Kind::Project { "project" } else { "org" });
    c.org = OrgId::parse(c.path("org"));
    let (org, project) = (c.path("org").to_owned(), c.path("project").to_owned());
    let addr = if kind == Kind::Project { Addr::Project(&org, &project) } else { Addr::Org(&org) };
    target(&c.s, &c.op, &addr, write).await
}

/// A key route's audit row names the key's org once the answer shows it.
fn after(c: &mut Call, kind: Kind, reply: Reply) -> Reply {
    if kind == Kind::Key {
        c.org = reply.as_ref().ok().and_then(|(_, v)| v["org_id"].as_str()).and_then(OrgId::parse);
    }
    reply
}

async fn get(c: &mut Call, kind: Kind) -> Reply {
    let reply = match resolve(c, kind, false).await {
        Ok(t) => view(&c.s, t).await,
        Err(d) => Err(d),
    };
    after(c, kind, reply)
}

async fn put(c: &mut Call, kind: Kind) -> Reply {
    let reply = async {
        let t = resolve(c, kind, true).await?;
        let spec: LimitSpec = c.body().await?;
        if let Err(e) = spec.compile() {
            tracing::info!(org = %t.org, field = e.field, rule = e.rule, "limit policy refused");
            return Err(bad(e.field));
        }
        let text = serde_json::to_string(&spec).map_err(|_| Denial::new(DenyCode::Internal))?;
        c.s.store.put_limit_policy(t.org, t.scope(), &text, &c.op.actor().render()).await.map_err(store_err)?;
        reload(&c.s).await?;
        view(&c.s, t).await
    }
    .await;
    after(c, kind, reply)
}

async fn delete(c: &mut Call, kind: Kind) -> Reply {
    let reply = async {
        let t = resolve(c, kind, true).await?;
        c.s.store.delete_limit_policy(t.org, t.scope()).await.map_err(store_err)?;
        reload(&c.s).await?;
        view(&c.s, t).await
    }
    .await;
    after(c, kind, reply)
}

services! {
    get_org => get(Kind::Org);
    put_org => put(Kind::Org);
    delete_org => delete(Kind::Org);
    get_project => get(Kind::Project);
    put_project => put(Kind::Project);
    delete_project => delete(Kind::Project);
    get_key => get(Kind::Key);
    put_key => put(Kind::Key);
    delete_key => delete(Kind::Key);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    project: Option<String>,
    key: Option<String>,
    /// A capability token's registered id.
    token: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    /// Inclusive UTC days, `YYYY-MM-DD`.
    from: Option<String>,
    to: Option<String>,
}

fn day(v: Option<String>, field: &'static str) -> Result<Option<String>, Denial> {
    match v {
        None => Ok(None),
        Some(d) if d.len() == 10 && humantime::parse_rfc3339(&format!("{d}T00:00:00Z")).is_ok() => Ok(Some(d)),
        Some(_) => Err(bad(field)),
    }
}

async fn usage(
    s: &AdminState,
    op: &Operator,
    org: &str,
    q: Result<UsageQuery, Denial>,
) -> Result<(StatusCode, Value), Denial> {
    let (org, _) = crate::policies::scope(s, op, org, None, Permission::OrgRead).await?;
    let q = q?;
    let project = match q.project {
        Some(p) => Some(ProjectId::parse(&p).ok_or(bad("project"))?.to_string()),
        None => None,
    };
    let credential = match (q.key, q.token) {
        (Some(_), Some(_)) => return Err(bad("key")),
        (Some(k), None) => Some(format!("key:{}", KeyId::parse(&k).ok_or(bad("key"))?)),
        (None, Some(t)) => Some(format!("capability:{}", gatehouse_core::TokenId::parse(&t).ok_or(bad("token"))?)),
        (None, None) => None,
    };
    if q.model.as_ref().is_some_and(|m| m.is_empty() || m.len() > 256) {
        return Err(bad("model"));
    }
    if q.provider.as_ref().is_some_and(|m| m.is_empty() || m.len() > 128) {
        return Err(bad("provider"));
    }
    let filter = UsageFilter {
        project_id: project,
        credential,
        model: q.model,
        provider: q.provider,
        from_day: day(q.from, "from")?,
        to_day: day(q.to, "to")?,
    };
    let rows = s.store.usage(org, &filter).await.map_err(store_err)?;
    let (mut requests, mut prompt, mut completion, mut cost) = (0i64, 0i64, 0i64, 0i64);
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            requests += r.requests;
            prompt += r.prompt_tokens;
            completion += r.completion_tokens;
            cost += r.cost_micro_usd;
            json!({
                "day": r.day, "project_id": r.project_id, "credential": r.credential, "model": r.model,
                "provider": r.provider,
                "requests": r.requests, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                "cached_tokens": r.cached_tokens, "cost_micro_usd": r.cost_micro_usd,
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        json!({
            "object": "list",
            "data": data,
            "total": {"requests": requests, "prompt_tokens": prompt, "completion_tokens": completion, "cost_micro_usd": cost},
        }),
    ))
}

pub fn get_usage(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.target_path("org");
        c.org = OrgId::parse(c.path("org"));
        let q = c.query::<UsageQuery>();
        let org = c.path("org").to_owned();
        usage(&c.s, &c.op, &org, q).await
    })
}
