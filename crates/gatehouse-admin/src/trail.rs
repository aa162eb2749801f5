//! `/admin/v1/audit`: the newest events, the streamed export, the checkpoint key, and
//! verification of the chains in the store.
//! Scoped like everything else: an org's operators see their org's chain only; platform
//! admins see every chain or pick one with `?org=`.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use gatehouse_audit::EventKind as K;
use gatehouse_audit::export::{ExportRequest, Format, Selection};
use gatehouse_audit::verify::{ChainReport, Failure};
use gatehouse_core::{Denial, DenyCode, OrgId};
use gatehouse_store::AuditFilter;
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AdminState;
use crate::audit::{AuditCx, Outcome, record};
use crate::rbac::{Operator, Permission, Role, check};
use crate::reply::{bad, page_limit, store_err};
use crate::service::{Call, Pending};

/// The org whose chain an operator reads: their own, or (platform admins) the one asked for.
fn scope(op: &Operator, org: Option<&str>) -> Result<Option<OrgId>, Denial> {
    let asked = match org {
        Some(s) => Some(OrgId::parse(s).ok_or(Denial::new(gatehouse_core::DenyCode::NotFound))?),
        None => None,
    };
    let target = if op.role == Role::PlatformAdmin { asked } else { asked.or(op.org) };
    check(op, Permission::AuditRead, target.or(op.org))?;
    Ok(target)
}

fn action(s: Option<&str>) -> Result<Option<String>, Denial> {
    s.map(|a| K::parse(a).map(|k| k.as_str().to_owned()).ok_or(bad("action"))).transpose()
}

/// An actor filter has the shape the trail renders actors in (`key:<id>`, `capability:<id>`,
/// `token:<id>`, `oidc:<subject>`, `anonymous`, `system`); anything else (a pasted credential)
/// is refused before it is used or reflected in an export's selection.
fn actor(s: Option<&str>) -> Result<Option<String>, Denial> {
    let Some(a) = s else { return Ok(None) };
    let ok = match a.split_once(':') {
        Some(("key" | "capability" | "token", id)) => gatehouse_core::is_id(id),
        Some(("oidc", subject)) => {
            !subject.is_empty() && a.len() <= 128 && !subject.chars().any(|c| c.is_control() || c.is_whitespace())
        }
        Some(_) => false,
        None => matches!(a, "anonymous" | "system"),
    };
    if ok { Ok(Some(a.to_owned())) } else { Err(bad("actor")) }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u32>,
    org: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    /// Where the previous page stopped (its `next_after`).
    after: Option<String>,
}

/// Events one listing call looks at, at most: a filter that matches little costs a bounded
/// page, and `next_after` goes on from there.
pub const MAX_SCAN: usize = 10_000;

/// `GET /admin/v1/audit`: newest first, each event as its line plus its chain hash; paged by
/// `next_after`, each call looking at no more than [`MAX_SCAN`] events.
pub fn list(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.org = c.op.org;
        let q: ListQuery = c.query()?;
        let limit = page_limit(q.limit)?;
        let org = scope(&c.op, q.org.as_deref())?;
        c.org = org;
        let f = AuditFilter {
            chain: org.map(|o| gatehouse_audit::chain_of(Some(o))),
            action: action(q.action.as_deref())?,
            actor: actor(q.actor.as_deref())?,
            ..AuditFilter::default()
        };
        let after = match q.after.as_deref() {
            Some(a) => Some(gatehouse_store::AuditCursor::decode(a).ok_or(bad("after"))?),
            None => None,
        };
        let (rows, next) = c.s.store.audit_latest_page(&f, limit, after.as_ref(), MAX_SCAN).await.map_err(store_err)?;
        let data: Vec<Value> = rows
            .into_iter()
            .map(|r| {
                let mut v: Value = serde_json::from_str(&r.line).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("hash".into(), Value::String(hex::encode(&r.hash)));
                }
                v
            })
            .collect();
        let next = next.map(|n| n.encode());
        Ok((StatusCode::OK, json!({"object": "list", "data": data, "next_after": next})))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    format: Option<String>,
    from: Option<String>,
    to: Option<String>,
    org: Option<String>,
    actor: Option<String>,
    action: Option<String>,
}

fn millis(s: Option<&str>, param: &'static str) -> Result<Option<i64>, Denial> {
    s.map(|t| {
        let at = humantime::parse_rfc3339(t).map_err(|_| bad(param))?;
        let d = at.duration_since(UNIX_EPOCH).map_err(|_| bad(param))?;
        i64::try_from(d.as_millis()).map_err(|_| bad(param))
    })
    .transpose()
}

/// `GET /admin/v1/audit/export`: streamed NDJSON (verifiable offline) or CSV. The export
/// itself is audited before the first byte is sent.
pub async fn export(
    State(s): State<AdminState>,
    op: Operator,
    acx: AuditCx,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    export_for(&s, &op, &acx, q.map(|Query(q)| q).map_err(|_| bad("query"))).await.unwrap_or_else(|d| d.into_response())
}

/// The export for an operator authenticated elsewhere (the console's session): the same
/// checks, audit row and stream as `GET /admin/v1/audit/export`. A refusal is audited before it
/// is returned.
pub async fn export_for(
    s: &AdminState,
    op: &Operator,
    acx: &AuditCx,
    q: Result<ExportQuery, Denial>,
) -> Result<Response, Denial> {
    let actor_id = op.actor();
    let mut scoped = op.org;
    let plan = async {
        let q = q?;
        let format = match q.format.as_deref() {
            None | Some("ndjson") => Format::Ndjson,
            Some("csv") => Format::Csv,
            Some(_) => return Err(bad("format")),
        };
        let org = scope(op, q.org.as_deref())?;
        scoped = org;
        let (from_ms, to_ms) = (millis(q.from.as_deref(), "from")?, millis(q.to.as_deref(), "to")?);
        let filter = AuditFilter {
            chain: None,
            from_ms,
            to_ms,
            actor: actor(q.actor.as_deref())?,
            action: action(q.action.as_deref())?,
        };
        let selection = Selection {
            org: org.map(|o| o.to_string()),
            from: q.from,
            to: q.to,
            actor: filter.actor.clone(),
            action: filter.action.clone(),
        };
        let chains = org.map(|o| vec![gatehouse_audit::chain_of(Some(o))]);
        Ok(ExportRequest { chains, filter, selection, format })
    }
    .await;
    let req = match plan {
        Ok(req) => req,
        Err(d) => {
            let _ = record(s, acx, actor_id, K::AuditExport, scoped, None, Outcome::Denied(d.code)).await;
            return Err(d);
        }
    };
    let target = Some(if req.format == Format::Csv { "csv" } else { "ndjson" }.to_owned());
    if record(s, acx, actor_id, K::AuditExport, scoped, target, Outcome::Allowed(StatusCode::OK)).await.is_err() {
        return Err(Denial::new(gatehouse_core::DenyCode::Unavailable));
    }
    let (content_type, name) = match req.format {
        Format::Ndjson => ("application/x-ndjson", "gatehouse-audit.ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "gatehouse-audit.csv"),
    };
    let rx = gatehouse_audit::export::spawn(s.store.clone(), req, s.audit.signer());
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        // a store failure mid-way ends the body with an error: the client sees a cut
        // transfer, never a short export that looks complete
        rx.recv().await.map(|chunk| (chunk.map_err(std::io::Error::other), rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /admin/v1/audit/key`: the signed-note verifier key checkpoints are signed under.
/// Public, but auditors should pin it out of band rather than trust it per export.
pub fn key(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.org = c.op.org;
        check(&c.op, Permission::AuditRead, c.op.org)?;
        let v = c.s.audit.verifier();
        Ok((
            StatusCode::OK,
            json!({"key": v.to_vkey(), "name": v.name, "origin_prefix": gatehouse_audit::origin(""),
                   "algorithm": "Ed25519"}),
        ))
    })
}

/// The last verification of each chain on this replica, behind the lock that lets only one
/// run at a time (a verification reads a whole chain: it must not be something a caller can
/// start a hundred of side by side).
#[derive(Default)]
pub struct Verifications(tokio::sync::Mutex<BTreeMap<String, ChainStatus>>);

/// What the last verification of one chain found.
#[derive(Clone, Debug, Serialize)]
pub struct ChainStatus {
    pub chain: String,
    /// The org the chain belongs to (`None`: the platform chain).
    pub org_id: Option<String>,
    pub checked_at: i64,
    /// Every record from the anchor (or genesis) to the head links, hashes and matches every
    /// signed checkpoint.
    pub ok: bool,
    pub records: u64,
    /// The seq the verified range starts after (the retention anchor).
    pub anchored_at: u64,
    pub last_seq: u64,
    /// The newest seq a valid signed checkpoint covers.
    pub signed_through: u64,
    /// Records newer than the last checkpoint: linked, not yet signed.
    pub unsigned: u64,
    /// Where it broke, and how (`modified`, `unlinked`, `seq_gap`, `rewritten`, ...).
    pub broken_at: Option<u64>,
    pub problem: Option<&'static str>,
}

impl ChainStatus {
    fn of(chain: &str, result: Result<ChainReport, Failure>) -> ChainStatus {
        let org_id = chain.strip_prefix("org/").map(str::to_owned);
        let checked_at = gatehouse_store::now_ms();
        match result {
            Ok(r) => ChainStatus {
                chain: chain.to_owned(),
                org_id,
                checked_at,
                ok: true,
                records: r.records,
                anchored_at: r.anchored_at,
                last_seq: r.last_seq,
                signed_through: r.signed_through,
                unsigned: r.last_seq.saturating_sub(r.signed_through.max(r.anchored_at)),
                broken_at: None,
                problem: None,
            },
            Err(f) => ChainStatus {
                chain: chain.to_owned(),
                org_id,
                checked_at,
                ok: false,
                records: 0,
                anchored_at: 0,
                last_seq: 0,
                signed_through: 0,
                unsigned: 0,
                broken_at: Some(f.seq),
                problem: Some(f.problem.as_str()),
            },
        }
    }
}

/// The chains an operator may see: their org's, or (platform admins) every chain or one org's.
async fn chains_in_scope(s: &AdminState, org: Option<OrgId>, platform: bool) -> Result<Vec<String>, Denial> {
    if let Some(o) = org {
        return Ok(vec![gatehouse_audit::chain_of(Some(o))]);
    }
    if !platform {
        return Ok(Vec::new());
    }
    s.store.audit_chains().await.map_err(store_err)
}

/// How long an operator's verification waits for the one running before it (the schedule's,
/// or another operator's) before it gives up with 429.
pub const VERIFY_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Verifies the given chains now, records what was found, and audits each broken chain
/// (`audit.broken`, in that chain, so its webhooks and operators hear of it). With `wait`, it
/// waits that long for a verification already running to finish; `None`: one was still
/// running (or, without `wait`, was running at all).
pub async fn verify_chains(
    s: &AdminState,
    chains: &[String],
    wait: Option<std::time::Duration>,
) -> Result<Option<Vec<ChainStatus>>, Denial> {
    let lock = &s.verifications.0;
    let mut last = match wait {
        None => match lock.try_lock() {
            Ok(g) => g,
            Err(_) => return Ok(None),
        },
        Some(w) => match tokio::time::timeout(w, lock.lock()).await {
            Ok(g) => g,
            Err(_) => return Ok(None),
        },
    };
    let key = s.audit.verifier();
    let mut out = Vec::with_capacity(chains.len());
    for chain in chains {
        let status = match gatehouse_audit::verify::verify_chain(&s.store, key, chain, None).await {
            Ok(r) => ChainStatus::of(chain, Ok(r)),
            Err(gatehouse_audit::verify::VerifyError::Broken(f)) => ChainStatus::of(chain, Err(f)),
            Err(e) => {
                tracing::warn!(error = %e, chain, "audit chain verification could not read the store");
                return Err(Denial::new(DenyCode::Unavailable));
            }
        };
        if let (Some(seq), Some(problem)) = (status.broken_at, status.problem) {
            tracing::error!(target: "gatehouse::audit", chain, seq, problem, "audit chain verification failed");
            let mut e = gatehouse_audit::Event::new(
                K::AuditBroken,
                gatehouse_audit::Outcome::Failed,
                500,
                problem,
                gatehouse_audit::Actor::System,
            );
            e.org = status.org_id.as_deref().and_then(OrgId::parse);
            e.target = Some(format!("{chain}@{seq}"));
            if s.audit.record(e).await.is_err() {
                tracing::error!(target: "gatehouse::audit", "audit.broken not recorded");
            }
        }
        last.insert(chain.clone(), status.clone());
        out.push(status);
    }
    Ok(Some(out))
}

/// The last verification of each chain in the operator's scope on this replica (chains
/// never verified here are absent); `None` while a verification is running.
pub async fn last_verifications(
    s: &AdminState,
    op: &Operator,
    org: Option<&str>,
) -> Result<Option<Vec<ChainStatus>>, Denial> {
    let target = scope(op, org)?;
    let Ok(last) = s.verifications.0.try_lock() else { return Ok(None) };
    Ok(Some(match target {
        Some(o) => last.get(&gatehouse_audit::chain_of(Some(o))).cloned().into_iter().collect(),
        None if op.role == Role::PlatformAdmin => last.values().cloned().collect(),
        None => Vec::new(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    org: Option<String>,
}

/// `POST /admin/v1/audit/verify`: re-verifies the caller's chains from the store now, every
/// event recorded before the call included (an
/// org's operators: their org's chain; platform admins: every chain, or one org's with
/// `?org=`). One verification runs at a time per replica: another waits its turn, up to
/// [`VERIFY_QUEUE_WAIT`], then answers 429.
pub fn verify(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.org = c.op.org;
        let q: VerifyQuery = c.query()?;
        let org = scope(&c.op, q.org.as_deref())?;
        c.org = org.or(c.op.org);
        // what the data plane queued before this call is written first, so "now" covers it
        c.s.audit.flush().await;
        let chains = chains_in_scope(&c.s, org, c.op.role == Role::PlatformAdmin).await?;
        let Some(chains) = verify_chains(&c.s, &chains, Some(VERIFY_QUEUE_WAIT)).await? else {
            return Err(Denial::new(DenyCode::RateLimitExceeded).with_param("verification_running"));
        };
        let ok = chains.iter().all(|c| c.ok);
        Ok((StatusCode::OK, json!({"object": "audit.verification", "ok": ok, "chains": chains})))
    })
}

/// Re-verifies every chain in the store every `every` (the first time one interval after
/// start), so a chain altered in the database is found without anyone asking.
pub async fn run_verifier(s: AdminState, every: std::time::Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let chains = match s.store.audit_chains().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "scheduled audit verification could not list chains; next time");
                continue;
            }
        };
        // an operator's verification running now stands for this one
        match verify_chains(&s, &chains, None).await {
            Ok(Some(found)) => {
                let broken = found.iter().filter(|c| !c.ok).count();
                tracing::info!(chains = found.len(), broken, "scheduled audit verification done");
            }
            Ok(None) => {}
            Err(_) => tracing::warn!("scheduled audit verification could not read the store; next time"),
        }
    }
}
