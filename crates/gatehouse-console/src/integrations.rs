//! What the gateway talks to: providers (deployments and their circuit breakers, stored
//! credentials, write-only) and webhooks (receivers of audit events, and their delivery log).

use axum::extract::{Path, Request, State};
use axum::response::Response;
use gatehouse_admin::rbac::Role;
use gatehouse_core::{Denial, DenyCode};
use http::{StatusCode, Uri};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ConsoleState;
use crate::forms::accept;
use crate::page::{refusal, render, see_other};
use crate::pages::{back, given, more_link, org_query, page_before, page_query, rows, run, shown_once, text, time};
use crate::session::Signed;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    org: Option<String>,
}

/// The API query that addresses a tenant: the named org, else (platform admins) the platform,
/// else the operator's own org.
fn tenant_query(w: &Signed, org: Option<&str>) -> Option<String> {
    match org {
        Some(_) => org_query(org),
        None if w.op.role == Role::PlatformAdmin => Some("platform=true".to_owned()),
        None => None,
    }
}

fn org_filter(w: &Signed, action: &str, org: Option<&str>) -> maud::Markup {
    html! {
        @if w.op.role == Role::PlatformAdmin {
            form.filters method="get" action=(action) {
                label for="org" { "Organization (id or name; empty for the platform)" }
                input id="org" name="org" value=(org.unwrap_or(""));
                button type="submit" { "Show" }
            }
        }
    }
}

pub async fn providers(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let q: TenantQuery = match page_query(&uri) {
        Ok(q) => q,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let org = given(q.org);
    // the deployments and their breakers are the platform's: others see their credentials only
    let deployments = match w.op.role {
        Role::PlatformAdmin => match run(&s, &w, ("GET", "/admin/v1/deployments"), &[], None, None).await {
            Ok(v) => Some(v),
            Err(d) => return refusal(&d, Some(&w)),
        },
        _ => None,
    };
    let query = tenant_query(&w, org.as_deref());
    let creds = match run(&s, &w, ("GET", "/admin/v1/credentials"), &[], query.as_deref(), None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let main = html! {
        @if let Some(d) = &deployments {
            h2 { "Deployments" }
            table {
                caption { "Configured deployments and their circuit breakers on this replica" }
                thead { tr { th scope="col" { "Model" } th scope="col" { "Provider" } th scope="col" { "Provider model" }
                    th scope="col" { "Region" } th scope="col" { "Priority" } th scope="col" { "Weight" }
                    th scope="col" { "Breaker" } } }
                tbody {
                    @for x in rows(d) {
                        tr {
                            td { (text(x, "model")) } td { (text(x, "provider")) } td { (text(x, "provider_model")) }
                            td { (text(x, "region")) } td { (x["priority"]) } td { (x["weight"]) }
                            td { (text(&x["breaker"], "state")) @if x["breaker"]["failures"].as_u64().unwrap_or(0) > 0 {
                                " (" (x["breaker"]["failures"]) " failures in a row)" } }
                        }
                    }
                }
            }
        }
        h2 { "Stored credentials" }
        (org_filter(&w, "/providers", org.as_deref()))
        p { "Provider credentials are sealed in the store and write-only: nobody reads a value back, here or in the "
            "API. Each shows a hint (a digest prefix) to tell versions apart." }
        @if rows(&creds).is_empty() {
            p { "No stored credentials here: requests use the providers' configured keys." }
        } @else {
            table {
                caption { "Stored provider credentials, newest first" }
                thead { tr { th scope="col" { "Provider" } th scope="col" { "Project" } th scope="col" { "Version" }
                    th scope="col" { "Hint" } th scope="col" { "Added" } th scope="col" { "Retires" }
                    th scope="col" { span.sr-only { "Actions" } } } }
                tbody {
                    @for c in rows(&creds) {
                        tr {
                            td { (text(c, "provider")) }
                            td { @if c["project_id"].is_null() { "all" } @else { code.short { (text(c, "project_id")) } } }
                            td { (c["version"]) }
                            td { code { (text(c, "hint")) } }
                            td { (time(c, "created_at")) }
                            td { @if c["retire_at"].is_null() { "" } @else { (time(c, "retire_at")) } }
                            td {
                                form method="post" action={ "/providers/credentials/" (text(c, "id")) "/delete" } {
                                    input type="hidden" name="csrf" value=(w.csrf);
                                    input type="hidden" name="org" value=(org.as_deref().unwrap_or(""));
                                    button.danger type="submit" aria-label={ "Delete credential version " (c["version"]) " of " (text(c, "provider")) } { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="new-credential" {
            h3 id="new-credential" { "Store a credential" }
            form method="post" action="/providers/credentials" {
                input type="hidden" name="csrf" value=(w.csrf);
                input type="hidden" name="org" value=(org.as_deref().unwrap_or(""));
                label for="cred-provider" { "Provider (its name in the config)" }
                input id="cred-provider" name="provider" required maxlength="64";
                label for="cred-project" { "Project (id; empty for the whole organization)" }
                input id="cred-project" name="project";
                label for="cred-secret" { "Secret" }
                input id="cred-secret" name="secret" type="password" required autocomplete="off" aria-describedby="cred-secret-help";
                p id="cred-secret-help" .help { "Sealed when stored; never shown again, not even here." }
                label for="cred-overlap" { "Older versions keep serving for (seconds)" }
                input id="cred-overlap" name="overlap_seconds" type="number" min="0" max="604800" value="0";
                button type="submit" { "Store credential" }
            }
        }
    };
    render(StatusCode::OK, "Providers", Some(&w), main)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCredentialForm {
    csrf: String,
    org: Option<String>,
    provider: String,
    project: Option<String>,
    /// Wrapped into the API body at once and never rendered.
    secret: String,
    overlap_seconds: Option<String>,
}

pub async fn create_credential(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    let f: NewCredentialForm = match accept(&w, req, |f: &NewCredentialForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let org = given(f.org);
    let mut body = json!({"provider": f.provider.trim(), "secret": f.secret});
    match (&org, w.op.role) {
        (Some(o), _) => body["org"] = json!(o),
        (None, Role::PlatformAdmin) => body["platform"] = json!(true),
        (None, _) => {}
    }
    if let Some(p) = given(f.project) {
        body["project"] = json!(p);
    }
    if let Some(o) = given(f.overlap_seconds) {
        match o.parse::<u64>() {
            Ok(n) => body["overlap_seconds"] = json!(n),
            Err(_) => return refusal(&Denial::new(DenyCode::InvalidRequest).with_param("overlap_seconds"), Some(&w)),
        }
    }
    match run(&s, &w, ("POST", "/admin/v1/credentials"), &[], None, Some(body)).await {
        Ok(_) => see_other(&back("/providers", org.as_deref())),
        Err(d) => refusal(&d, Some(&w)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantForm {
    csrf: String,
    org: Option<String>,
}

/// Deletes one tenant-scoped object through `route` (`{id}` in its path), addressed by the
/// form's org as `query` makes it, and goes back to the list at `list`.
async fn delete_in(
    s: &ConsoleState,
    w: &Signed,
    req: Request,
    route: &str,
    id: &str,
    query: fn(&Signed, Option<&str>) -> Option<String>,
    list: &str,
) -> Response {
    let f: TenantForm = match accept(w, req, |f: &TenantForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(w)),
    };
    let org = given(f.org);
    let q = query(w, org.as_deref());
    match run(s, w, ("DELETE", route), &[("id", id)], q.as_deref(), None).await {
        Ok(_) => see_other(&back(list, org.as_deref())),
        Err(d) => refusal(&d, Some(w)),
    }
}

pub async fn delete_credential(
    State(s): State<ConsoleState>,
    w: Signed,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    delete_in(&s, &w, req, "/admin/v1/credentials/{id}", &id, tenant_query, "/providers").await
}

pub async fn webhooks(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let q: TenantQuery = match page_query(&uri) {
        Ok(q) => q,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let org = given(q.org);
    // an org's webhooks; without one, platform admins see the platform chain's
    let query = org_query(org.as_deref());
    let listed = match run(&s, &w, ("GET", "/admin/v1/webhooks"), &[], query.as_deref(), None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let main = html! {
        (org_filter(&w, "/webhooks", org.as_deref()))
        p { "Webhooks deliver audit events as they happen: signed JSON to any receiver, or a message to Slack or "
            "Discord. Delivery retries with backoff; the log shows each attempt." }
        @if rows(&listed).is_empty() {
            p { "No webhooks here." }
        } @else {
            table {
                caption { "Webhooks" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Receiver" }
                    th scope="col" { "Events" } th scope="col" { "Added" } th scope="col" { span.sr-only { "Actions" } } } }
                tbody {
                    @for h in rows(&listed) {
                        tr {
                            td { a href=(back(&format!("/webhooks/{}", text(h, "id")), org.as_deref())) { (text(h, "name")) } }
                            td { (text(h, "kind")) }
                            td { code { (text(h, "url")) } }
                            td { code { (h["events"].as_array().map(|e| e.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) } }
                            td { (time(h, "created_at")) }
                            td {
                                form method="post" action={ "/webhooks/" (text(h, "id")) "/delete" } {
                                    input type="hidden" name="csrf" value=(w.csrf);
                                    input type="hidden" name="org" value=(org.as_deref().unwrap_or(""));
                                    button.danger type="submit" aria-label={ "Delete webhook " (text(h, "name")) } { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="new-webhook" {
            h2 id="new-webhook" { "New webhook" }
            form method="post" action="/webhooks" {
                input type="hidden" name="csrf" value=(w.csrf);
                input type="hidden" name="org" value=(org.as_deref().unwrap_or(""));
                label for="hook-name" { "Name" }
                input id="hook-name" name="name" required maxlength="64" pattern="[A-Za-z0-9._\\-]+";
                label for="hook-kind" { "Kind" }
                select id="hook-kind" name="kind" {
                    option value="generic" { "generic (signed JSON; its secret is shown once)" }
                    option value="slack" { "slack" }
                    option value="discord" { "discord" }
                }
                label for="hook-url" { "Receiver URL" }
                input id="hook-url" name="url" type="url" required;
                label for="hook-events" { "Events (comma-separated actions; * matches a suffix)" }
                input id="hook-events" name="events" required placeholder="key.*, console.lockout";
                button type="submit" { "Add webhook" }
            }
        }
    };
    render(StatusCode::OK, "Webhooks", Some(&w), main)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookForm {
    csrf: String,
    org: Option<String>,
    name: String,
    kind: String,
    url: String,
    events: String,
}

pub async fn create_webhook(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    let f: NewWebhookForm = match accept(&w, req, |f: &NewWebhookForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let org = given(f.org);
    let events: Vec<&str> = f.events.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let mut body = json!({"name": f.name.trim(), "kind": f.kind, "url": f.url.trim(), "events": events});
    if let Some(o) = &org {
        body["org"] = json!(o);
    }
    let made = match run(&s, &w, ("POST", "/admin/v1/webhooks"), &[], None, Some(body)).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let back_to = back("/webhooks", org.as_deref());
    match made["secret"].as_str() {
        Some(secret) => shown_once(&w, "Webhook added", text(&made, "name"), secret, Some(SIGNING), &back_to),
        None => see_other(&back_to),
    }
}

const SIGNING: &str = "The receiver checks each delivery's signature with this secret (docs/AUDIT.md, \"Webhooks\").";

pub async fn delete_webhook(
    State(s): State<ConsoleState>,
    w: Signed,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    delete_in(&s, &w, req, "/admin/v1/webhooks/{id}", &id, |_, org| org_query(org), "/webhooks").await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    org: Option<String>,
    before: Option<String>,
}

pub async fn deliveries(State(s): State<ConsoleState>, w: Signed, Path(id): Path<String>, uri: Uri) -> Response {
    let q: DeliveriesQuery = match page_query(&uri) {
        Ok(q) => q,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let org = given(q.org);
    let query = page_before(&[("org", org.as_deref().unwrap_or("")), ("before", q.before.as_deref().unwrap_or(""))]);
    let route = ("GET", "/admin/v1/webhooks/{id}/deliveries");
    let listed = match run(&s, &w, route, &[("id", &id)], Some(&query), None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let main = html! {
        @if rows(&listed).is_empty() {
            p { "Nothing delivered yet." }
        } @else {
            table {
                caption { "Deliveries, newest first" }
                thead { tr { th scope="col" { "Event" } th scope="col" { "Status" } th scope="col" { "Attempts" }
                    th scope="col" { "Last HTTP status" } th scope="col" { "Last error" } th scope="col" { "Updated" } } }
                tbody {
                    @for d in rows(&listed) {
                        tr {
                            td { code { (text(d, "action")) } }
                            td { (text(d, "status")) }
                            td { (d["attempts"]) }
                            td { @if !d["last_status"].is_null() { (d["last_status"]) } }
                            td { @if !d["last_error"].is_null() { code { (text(d, "last_error")) } } }
                            td { (time(d, "updated_at")) }
                        }
                    }
                }
            }
        }
        @let here = format!("/webhooks/{id}");
        (more_link(&here, "before", listed["next_before"].as_str(), &[("org", org.as_deref().unwrap_or(""))], "Older deliveries"))
        p { a href=(back("/webhooks", org.as_deref())) { "Back to webhooks" } }
    };
    render(StatusCode::OK, "Webhook deliveries", Some(&w), main)
}
