//! The audit pages: the trail (filtered, paged), its export, and the integrity of each chain
//! (the last verification here, and verifying now).

use axum::extract::{Query, Request, State};
use axum::response::Response;
use gatehouse_admin::rbac::Role;
use gatehouse_core::{Denial, DenyCode};
use http::{StatusCode, Uri};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ConsoleState;
use crate::forms::accept;
use crate::page::{refusal, render, when};
use crate::pages::{given, page_query, paged, rows, run, text};
use crate::passkeys::require_fresh;
use crate::session::Signed;

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    /// Where the previous page stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

/// The audit export (streamed), with the API's checks and audit row; a refusal is a page.
pub async fn audit_export(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let here = uri.path_and_query().map_or("/audit", |p| p.as_str());
    if let Some(confirm) = require_fresh(&s, &w, here) {
        return confirm;
    }
    let q = Query::<gatehouse_admin::trail::ExportQuery>::try_from_uri(&uri)
        .map(|Query(q)| q)
        .map_err(|_| Denial::new(DenyCode::InvalidRequest).with_param("query"));
    match gatehouse_admin::trail::export_for(&s.admin, &w.op, &w.acx, q).await {
        Ok(stream) => stream,
        Err(d) => refusal(&d, Some(&w)),
    }
}

pub async fn audit(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let q: AuditQuery = match page_query(&uri) {
        Ok(q) => q,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let q = AuditQuery { org: given(q.org), action: given(q.action), actor: given(q.actor), after: given(q.after) };
    let api_query = paged(&q);
    let listed = match run(&s, &w, ("GET", "/admin/v1/audit"), &[], Some(&api_query), None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let integrity = match gatehouse_admin::trail::last_verifications(&s.admin, &w.op, q.org.as_deref()).await {
        Ok(v) => v.map(|chains| serde_json::to_value(chains).unwrap_or(Value::Null)),
        Err(d) => return refusal(&d, Some(&w)),
    };
    let main = html! {
        section aria-labelledby="integrity" {
            h2 id="integrity" { "Chain integrity" }
            @match &integrity {
                None => p { "A verification is running; reload in a moment." },
                Some(v) if v.as_array().is_none_or(Vec::is_empty) => p {
                    "Not verified on this replica since it started. Each replica re-verifies every chain every "
                    code { "audit.verify_interval_ms" } " (a day by default), or now:"
                },
                Some(v) => (chains(v.as_array().map_or(&[], Vec::as_slice), "Last verification on this replica")),
            }
            form method="post" action="/audit/verify" {
                input type="hidden" name="csrf" value=(w.csrf);
                @if let Some(org) = &q.org { input type="hidden" name="org" value=(org); }
                button type="submit" { "Verify now" }
                " "
                span.help { "Reads every record of "
                    @if w.op.role == Role::PlatformAdmin && q.org.is_none() { "every chain" } @else { "this organization's chain" }
                    " from the store and checks its links, hashes and signed checkpoints." }
            }
        }
        h2 { "Events" }
        form.filters method="get" action="/audit" {
            @if w.op.role == Role::PlatformAdmin {
                label for="org" { "Organization (id)" }
                input id="org" name="org" value=(q.org.as_deref().unwrap_or(""));
            }
            label for="action" { "Action" }
            input id="action" name="action" value=(q.action.as_deref().unwrap_or("")) placeholder="key.create";
            label for="actor" { "Actor" }
            input id="actor" name="actor" value=(q.actor.as_deref().unwrap_or("")) placeholder="token:…";
            button type="submit" { "Filter" }
        }
        @let export = serde_urlencoded::to_string([("org", q.org.as_deref().unwrap_or("")), ("action", q.action.as_deref().unwrap_or("")), ("actor", q.actor.as_deref().unwrap_or(""))]
            .into_iter().filter(|(_, v)| !v.is_empty()).collect::<Vec<_>>()).unwrap_or_default();
        p {
            "Export these events, signed and verifiable offline with "
            code { "gatehouse audit verify" } ": "
            a href={ "/audit/export?" (export) } download { "NDJSON" } " · "
            a href={ "/audit/export?format=csv" @if !export.is_empty() { "&" (export) } } download { "CSV" }
        }
        @let events = rows(&listed);
        @if events.is_empty() {
            p { "No matching events " @if q.after.is_some() { "in this stretch of the trail." } @else { "among the latest." } }
        }
        table {
            caption { "Events, newest first" }
            thead { tr { th scope="col" { "At" } th scope="col" { "Action" } th scope="col" { "Outcome" }
                th scope="col" { "Code" } th scope="col" { "Actor" } th scope="col" { "Target" } } }
            tbody {
                @for e in events {
                    tr {
                        td { (text(e, "at")) }
                        td { code { (text(e, "action")) } }
                        td { (text(e, "outcome")) }
                        td { code { (text(e, "code")) } }
                        td { code.short { (text(e, "actor")) } }
                        td { code.short { (text(e, "target")) } }
                    }
                }
            }
        }
        @if let Some(after) = listed["next_after"].as_str() {
            @let more = AuditQuery { after: Some(after.to_owned()), ..q.clone() };
            p { a rel="next" href={ "/audit?" (serde_urlencoded::to_string(&more).unwrap_or_default()) } { "Older events" }
                " (each page looks at up to 10,000 events)" }
        }
    };
    render(StatusCode::OK, "Audit", Some(&w), main)
}

/// One row per chain: its verdict, range and signed part, or where and how it broke.
fn chains(list: &[Value], caption: &str) -> Markup {
    html! {
        table {
            caption { (caption) }
            thead { tr { th scope="col" { "Chain" } th scope="col" { "Verdict" } th scope="col" { "Records" }
                th scope="col" { "Head" } th scope="col" { "Signed through" } th scope="col" { "Not yet signed" }
                th scope="col" { "Checked" } } }
            tbody {
                @for c in list {
                    tr {
                        td { code { (text(c, "chain")) } }
                        @if c["ok"].as_bool() == Some(true) {
                            td { "intact" }
                        } @else {
                            td { strong { "BROKEN" } " at seq " (c["broken_at"].as_u64().unwrap_or(0)) ": "
                                code { (text(c, "problem")) } }
                        }
                        td { (c["records"].as_u64().unwrap_or(0)) }
                        td { (c["last_seq"].as_u64().unwrap_or(0)) }
                        td { (c["signed_through"].as_u64().unwrap_or(0)) }
                        td { (c["unsigned"].as_u64().unwrap_or(0)) }
                        td { (c["checked_at"].as_i64().map(when).unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyForm {
    csrf: String,
    org: Option<String>,
}

/// Verifies the operator's chains now (the API's service: same scope, same audit row) and shows
/// what was found.
pub async fn verify(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    let form: VerifyForm = match accept(&w, req, |f: &VerifyForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let query = given(form.org).map(|o| serde_urlencoded::to_string([("org", o)]).unwrap_or_default());
    let found = match run(&s, &w, ("POST", "/admin/v1/audit/verify"), &[], query.as_deref(), None).await {
        Ok(v) => v,
        Err(d) if d.code == DenyCode::RateLimitExceeded => {
            let main = html! { p { "A verification is already running; " a href="/audit" { "see the audit page" } " in a moment." } };
            return render(StatusCode::TOO_MANY_REQUESTS, "Audit chain verification", Some(&w), main);
        }
        Err(d) => return refusal(&d, Some(&w)),
    };
    let list = found["chains"].as_array().map_or(&[][..], Vec::as_slice);
    let main = html! {
        @if list.is_empty() {
            p { "There is no chain to verify yet." }
        } @else if found["ok"].as_bool() == Some(true) {
            p role="status" { "Every chain verified intact." }
        } @else {
            div.refusal role="alert" { p { "A chain is broken: its records were changed, removed or rewritten in the store. "
                "This is recorded as " code { "audit.broken" } "; compare with an export or the JSONL mirror." } }
        }
        @if !list.is_empty() { (chains(list, "Verified just now")) }
        p { a href="/audit" { "Back to the audit trail" } }
    };
    render(StatusCode::OK, "Audit chain verification", Some(&w), main)
}
