//! The pages. Each one runs admin API services for the signed-in operator through
//! `gatehouse_admin::service::invoke` and renders what they answer: the same rights checks,
//! the same refusals, the same audit actions as the API.

use axum::extract::{Path, Query, Request, State};
use axum::response::Response;
use gatehouse_admin::rbac::{Permission, Role, allows};
use gatehouse_admin::service::invoke;
use gatehouse_audit::EventKind as K;
use gatehouse_core::{Denial, DenyCode};
use http::{StatusCode, Uri};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ConsoleState;
use crate::forms::accept;
use crate::page::{refusal, render, see_other, when};
use crate::passkeys::require_fresh;
use crate::session::{CsrfOnly, Signed, end};

/// Rows per page of every list.
const PAGE: u32 = 50;

pub(crate) async fn run(
    s: &ConsoleState,
    w: &Signed,
    route: (&str, &str),
    params: &[(&str, &str)],
    query: Option<&str>,
    body: Option<Value>,
) -> Result<Value, Denial> {
    invoke(&s.admin, &w.op, &w.acx, route, params, query, body).await.map(|(_, v)| v)
}

pub(crate) fn rows(v: &Value) -> &[Value] {
    v["data"].as_array().map_or(&[], Vec::as_slice)
}

pub(crate) fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

pub(crate) fn time(v: &Value, field: &str) -> String {
    v[field].as_i64().map(when).unwrap_or_default()
}

pub async fn home(w: Signed) -> Response {
    let main = html! {
        dl.facts {
            dt { "Role" } dd { (w.op.role.as_str()) }
            dt { "Organization" } dd { @match w.op.org { Some(o) => code { (o) }, None => "all (platform)" } }
            dt { "Acting as admin token" } dd { code { (w.op.token_id) } }
            dt { "This session" } dd { code id="session-id" { (w.session_id) } }
        }
        p { "Everything you do here is checked and audited exactly as the admin API does it." }
        ul.cards {
            li { a href="/orgs" { "Organizations" } ": projects and members, and who holds which role." }
            li { a href="/keys" { "API keys" } ": create, revoke, see when they expire." }
            li { a href="/usage" { "Usage" } ": requests and spend per day, model and project; CSV." }
            li { a href="/sessions" { "Sessions" } ": where you are signed in; end any of them." }
            li { a href="/account" { "Account" } ": your passkeys." }
            @if w.may_manage_tokens() { li { a href="/tokens" { "Admin tokens" } ": mint and revoke the control plane's credentials." } }
            li { a href="/capabilities" { "Capability tokens" } ": delegable, self-limiting data-plane tokens." }
            @if w.may_manage_providers() { li { a href="/providers" { "Providers" } ": deployments, breakers, stored credentials." } }
            @if w.may_read_audit() { li { a href="/webhooks" { "Webhooks" } ": where audit events are delivered, and how it went." } }
            @if w.may_read_audit() { li { a href="/audit" { "Audit" } ": the tamper-evident trail of every decision." } }
        }
    };
    render(StatusCode::OK, "Overview", Some(&w), main)
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<String>,
}

/// `org=<org>` for an admin API query or a page link, if an org is given.
pub(crate) fn org_query(org: Option<&str>) -> Option<String> {
    org.map(|o| serde_urlencoded::to_string([("org", o)]).unwrap_or_default())
}

/// A page's path, with `?org=<org>` if an org is given.
pub(crate) fn back(path: &str, org: Option<&str>) -> String {
    match org_query(org) {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

/// The API query for one page of a list ordered by id, after the cursor `after` (the last id of
/// the page before).
pub(crate) fn page_after(after: Option<&str>) -> String {
    page_before(&[("after", after.unwrap_or(""))])
}

/// The API query for one page of a list, with `params` (the filters and the cursor; empty
/// values left out).
pub(crate) fn page_before(params: &[(&str, &str)]) -> String {
    let given: Vec<(&str, &str)> = params.iter().copied().filter(|(_, v)| !v.is_empty()).collect();
    match serde_urlencoded::to_string(&given).unwrap_or_default() {
        q if q.is_empty() => format!("limit={PAGE}"),
        q => format!("{q}&limit={PAGE}"),
    }
}

/// The cursor of the page after `listed` when it was a full page: its last row's `id_field`.
pub(crate) fn next_after<'a>(listed: &'a Value, id_field: &str) -> Option<&'a str> {
    let list = rows(listed);
    (list.len() == PAGE as usize).then(|| list.last().and_then(|r| r[id_field].as_str())).flatten()
}

/// A link to the next page: `href` with `param` set to the cursor, keeping `keep` (other lists'
/// cursors on the same page).
pub(crate) fn more_link(href: &str, param: &str, cursor: Option<&str>, keep: &[(&str, &str)], label: &str) -> Markup {
    let Some(cursor) = cursor else { return html! {} };
    let mut q: Vec<(&str, &str)> = keep.iter().copied().filter(|(k, v)| *k != param && !v.is_empty()).collect();
    q.push((param, cursor));
    html! { p { a rel="next" href={ (href) "?" (serde_urlencoded::to_string(&q).unwrap_or_default()) } { (label) } } }
}

/// A page's `?after=` (and nothing else).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterQuery {
    pub after: Option<String>,
}

/// An empty form field means "not given".
pub(crate) fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The API query for one page of a list filtered by `q`.
pub(crate) fn paged(q: &impl Serialize) -> String {
    let filters = serde_urlencoded::to_string(q).unwrap_or_default();
    if filters.is_empty() { format!("limit={PAGE}") } else { format!("{filters}&limit={PAGE}") }
}

/// A page's query as `T`: unknown fields refused, like the API's.
pub(crate) fn page_query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, Denial> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|_| Denial::new(DenyCode::InvalidRequest).with_param("query"))
}

pub async fn keys(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let q: KeysQuery = match page_query(&uri) {
        Ok(q) => q,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let q = KeysQuery { org: given(q.org), project: given(q.project), before: given(q.before) };
    let api_query = paged(&q);
    let listed = match run(&s, &w, ("GET", "/admin/v1/keys"), &[], Some(&api_query), None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let keys = rows(&listed);
    let may_write = allows(w.op.role, Permission::KeyWriteAny) || allows(w.op.role, Permission::KeyWriteOwn);
    let next = (keys.len() == PAGE as usize).then(|| keys.last().map(|k| text(k, "id").to_owned())).flatten();
    let org = q.org.clone().unwrap_or_default();
    let main = html! {
        @if w.op.role == Role::PlatformAdmin {
            form.filters method="get" action="/keys" {
                label for="org" { "Organization (name)" }
                input id="org" name="org" value=(org) placeholder="default";
                label for="project" { "Project (name)" }
                input id="project" name="project" value=(q.project.as_deref().unwrap_or(""));
                button type="submit" { "Show" }
            }
        }
        @if keys.is_empty() {
            p { "No keys here yet." }
        } @else {
            table {
                caption { "API keys, newest first" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Key" } th scope="col" { "Project" }
                    th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "Expires" }
                    th scope="col" { "State" }
                    @if may_write { th scope="col" { span.sr-only { "Actions" } } } } }
                tbody {
                    @for k in keys {
                        tr {
                            td { (text(k, "name")) }
                            td { code { (text(k, "hint")) } }
                            td { code.short { (text(k, "project_id")) } }
                            td { (time(k, "created_at")) }
                            td { @if k["last_used_at"].is_null() { "never" } @else { (time(k, "last_used_at")) } }
                            td { @if k["expires_at"].is_null() { "never" } @else { (time(k, "expires_at")) } }
                            td { @if k["revoked_at"].is_null() { "active" } @else { "revoked " (time(k, "revoked_at")) } }
                            @if may_write {
                                td {
                                    @if k["revoked_at"].is_null() {
                                        form.filters method="post" action={ "/keys/" (text(k, "id")) "/rotate" } {
                                            input type="hidden" name="csrf" value=(w.csrf);
                                            input type="hidden" name="org" value=(org);
                                            label.sr-only for={ "grace-" (text(k, "id")) } { "Old secret works for" }
                                            select id={ "grace-" (text(k, "id")) } name="grace_seconds" {
                                                option value="0" { "stop now" }
                                                option value="600" { "10 more minutes" }
                                                option value="3600" { "1 more hour" }
                                                option value="86400" { "1 more day" }
                                            }
                                            button type="submit" aria-label={ "Rotate key " (text(k, "name")) } { "Rotate" }
                                        }
                                        form method="post" action={ "/keys/" (text(k, "id")) "/revoke" } {
                                            input type="hidden" name="csrf" value=(w.csrf);
                                            input type="hidden" name="org" value=(org);
                                            button.danger type="submit" aria-label={ "Revoke key " (text(k, "name")) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(after) = next {
            @let more = KeysQuery { org: q.org.clone(), project: q.project.clone(), before: Some(after) };
            p { a rel="next" href={ "/keys?" (serde_urlencoded::to_string(&more).unwrap_or_default()) } { "Older keys" } }
        }
        @if may_write { (create_key_form(&w, &org)) }
    };
    render(StatusCode::OK, "API keys", Some(&w), main)
}

fn create_key_form(w: &Signed, org: &str) -> Markup {
    html! {
        section aria-labelledby="new-key" {
            h2 id="new-key" { "New key" }
            form method="post" action="/keys" {
                input type="hidden" name="csrf" value=(w.csrf);
                input type="hidden" name="org" value=(org);
                label for="name" { "Name" }
                input id="name" name="name" required maxlength="64" pattern="[A-Za-z0-9 ._\\-]+"
                    aria-describedby="name-help";
                p id="name-help" .help { "Letters, digits, spaces, dots, dashes and underscores." }
                label for="key-project" { "Project (name)" }
                input id="key-project" name="project" placeholder="default";
                label for="expires" { "Expires after (days, empty for never)" }
                input id="expires" name="expires_in_days" type="number" min="1" max="3650";
                button type="submit" { "Create key" }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyForm {
    csrf: String,
    name: String,
    org: Option<String>,
    project: Option<String>,
    expires_in_days: Option<String>,
}

pub async fn create_key(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    let f: NewKeyForm = match accept(&w, req, |f: &NewKeyForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let mut body = json!({"name": f.name.trim()});
    if let Some(org) = given(f.org) {
        body["org"] = json!(org);
    }
    if let Some(project) = given(f.project) {
        body["project"] = json!(project);
    }
    if let Some(days) = given(f.expires_in_days) {
        match days.parse::<u64>() {
            Ok(d) => body["expires_in_seconds"] = json!(d.saturating_mul(86_400)),
            Err(_) => return refusal(&Denial::new(DenyCode::InvalidRequest).with_param("expires_in_days"), Some(&w)),
        }
    }
    let created = match run(&s, &w, ("POST", "/admin/v1/keys"), &[], None, Some(body)).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    shown_once(&w, "Key created", text(&created, "name"), text(&created, "key"), None, "/keys")
}

/// A new secret (a key's, a token's), shown this once, with the copy button.
pub(crate) fn shown_once(
    w: &Signed,
    title: &str,
    name: &str,
    secret: &str,
    note: Option<&str>,
    back: &str,
) -> Response {
    let main = html! {
        div.created role="status" {
            p { strong { (name) } ": copy its secret now. It is shown this once and cannot be shown again." }
            p.secret {
                code id="secret" { (secret) }
                button type="button" data-copy="secret" { "Copy" }
            }
            @if let Some(n) = note { p { (n) } }
        }
        p { a href=(back) { "Back" } }
    };
    render(StatusCode::CREATED, title, Some(w), main)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyForm {
    csrf: String,
    org: Option<String>,
    grace_seconds: u64,
}

pub async fn rotate_key(State(s): State<ConsoleState>, w: Signed, Path(id): Path<String>, req: Request) -> Response {
    let f: RotateKeyForm = match accept(&w, req, |f: &RotateKeyForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    if let Some(confirm) = require_fresh(&s, &w, "/keys") {
        return confirm;
    }
    let query = org_query(given(f.org).as_deref());
    let body = json!({"grace_seconds": f.grace_seconds});
    let route = ("POST", "/admin/v1/keys/{id}/rotate");
    let rotated = match run(&s, &w, route, &[("id", &id)], query.as_deref(), Some(body)).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let note = if f.grace_seconds == 0 {
        "The old secret stopped working now.".to_owned()
    } else {
        format!("The old secret keeps working for {} more minutes, then stops.", f.grace_seconds / 60)
    };
    let key = &rotated["key"];
    shown_once(&w, "Key rotated", text(key, "name"), text(key, "key"), Some(&note), "/keys")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeKeyForm {
    csrf: String,
    org: Option<String>,
}

pub async fn revoke_key(State(s): State<ConsoleState>, w: Signed, Path(id): Path<String>, req: Request) -> Response {
    let f: RevokeKeyForm = match accept(&w, req, |f: &RevokeKeyForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let org = given(f.org);
    let query = org_query(org.as_deref());
    match run(&s, &w, ("POST", "/admin/v1/keys/{id}/revoke"), &[("id", &id)], query.as_deref(), Some(json!({}))).await {
        Ok(_) => see_other(&back("/keys", org.as_deref())),
        Err(d) => refusal(&d, Some(&w)),
    }
}

pub async fn sessions(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let q: AfterQuery = match page_query(&uri) {
        Ok(q) => q,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let query = page_after(q.after.as_deref());
    let listed = match run(&s, &w, ("GET", "/admin/v1/sessions"), &[], Some(&query), None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let main = html! {
        table {
            caption { "Console sessions you can see" }
            thead { tr { th scope="col" { "Started" } th scope="col" { "Last used" } th scope="col" { "Ends" }
                th scope="col" { "Role" } th scope="col" { "From" } th scope="col" { "Admin token" }
                th scope="col" { span.sr-only { "Actions" } } } }
            tbody {
                @for x in rows(&listed) {
                    @let current = text(x, "id") == w.session_id;
                    tr {
                        td { (time(x, "created_at")) @if current { " " strong { "(this one)" } } }
                        td { (time(x, "last_seen_at")) }
                        td { (time(x, "expires_at")) }
                        td { (text(x, "role")) }
                        td { (text(x, "source")) }
                        td { code.short { (text(x, "token_id")) } }
                        td {
                            form method="post" action={ "/sessions/" (text(x, "id")) "/revoke" } {
                                input type="hidden" name="csrf" value=(w.csrf);
                                button.danger type="submit" { @if current { "Sign out" } @else { "End" } }
                            }
                        }
                    }
                }
            }
        }
        (more_link("/sessions", "after", listed["next_after"].as_str(), &[], "More sessions"))
    };
    render(StatusCode::OK, "Sessions", Some(&w), main)
}

pub async fn revoke_session(
    State(s): State<ConsoleState>,
    w: Signed,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    if let Err(d) = accept(&w, req, |f: &CsrfOnly| &f.csrf).await {
        return refusal(&d, Some(&w));
    }
    if id == w.session_id {
        return end(&s, &w, K::SessionRevoke).await;
    }
    match run(&s, &w, ("POST", "/admin/v1/sessions/{id}/revoke"), &[("id", &id)], None, None).await {
        Ok(_) => see_other("/sessions"),
        Err(d) => refusal(&d, Some(&w)),
    }
}
