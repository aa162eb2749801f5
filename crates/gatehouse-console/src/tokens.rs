//! Admin tokens (the control plane's credentials) and capability tokens (macaroons for the data
//! plane): listed, minted where the console can show a secret once, and revoked. Minting an
//! admin token is a sensitive action: it needs a recent proof of who you are.

use axum::extract::{Path, Request, State};
use axum::response::Response;
use gatehouse_admin::rbac::{Permission, Role, allows};
use http::{StatusCode, Uri};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use crate::ConsoleState;
use crate::forms::accept;
use crate::page::{refusal, render, see_other};
use crate::pages::{
    back, given, more_link, next_after, org_query, page_before, page_query, rows, run, shown_once, text, time,
};
use crate::passkeys::require_fresh;
use crate::session::Signed;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeforeQuery {
    before: Option<String>,
}

pub async fn admin_tokens(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let q: BeforeQuery = match page_query(&uri) {
        Ok(q) => q,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let query = page_before(&[("before", q.before.as_deref().unwrap_or(""))]);
    let listed = match run(&s, &w, ("GET", "/admin/v1/tokens"), &[], Some(&query), None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let roles: Vec<Role> = Role::ALL.into_iter().filter(|r| *r <= w.op.role).collect();
    let main = html! {
        p { "Admin tokens call the admin API and sign in to this console. Nobody mints or revokes a token above "
            "their own role." }
        table {
            caption { "Admin tokens, newest first" }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Organization" }
                th scope="col" { "Created" } th scope="col" { "State" } th scope="col" { span.sr-only { "Actions" } } } }
            tbody {
                @for t in rows(&listed) {
                    tr {
                        td { (text(t, "name")) " " code.short { (text(t, "id")) } }
                        td { (text(t, "role")) }
                        td { @if t["org_id"].is_null() { "all (platform)" } @else { code.short { (text(t, "org_id")) } } }
                        td { (time(t, "created_at")) }
                        td { @if t["revoked_at"].is_null() { "active" } @else { "revoked " (time(t, "revoked_at")) } }
                        td {
                            @if t["revoked_at"].is_null() {
                                form method="post" action={ "/tokens/" (text(t, "id")) "/revoke" } {
                                    input type="hidden" name="csrf" value=(w.csrf);
                                    button.danger type="submit" aria-label={ "Revoke admin token " (text(t, "name")) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        (more_link("/tokens", "before", next_after(&listed, "id"), &[], "Older tokens"))
        section aria-labelledby="new-token" {
            h2 id="new-token" { "New admin token" }
            form method="post" action="/tokens" {
                input type="hidden" name="csrf" value=(w.csrf);
                label for="token-name" { "Name" }
                input id="token-name" name="name" required maxlength="64" pattern="[A-Za-z0-9._\\-]+"
                    aria-describedby="token-name-help";
                p id="token-name-help" .help { "Letters, digits, dots, dashes and underscores." }
                label for="token-role" { "Role" }
                select id="token-role" name="role" {
                    @for r in &roles { option value=(r.as_str()) selected[*r == Role::Viewer] { (r.as_str()) } }
                }
                @if w.op.role == Role::PlatformAdmin {
                    label for="token-org" { "Organization id (not needed for a platform admin token)" }
                    input id="token-org" name="org";
                } @else if let Some(org) = w.op.org {
                    input type="hidden" name="org" value=(org);
                }
                p.help { "Minting a token needs a sign-in or passkey confirmation in the last few minutes." }
                button type="submit" { "Mint token" }
            }
        }
    };
    render(StatusCode::OK, "Admin tokens", Some(&w), main)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenForm {
    csrf: String,
    name: String,
    role: String,
    org: Option<String>,
}

pub async fn create_admin_token(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    let f: NewTokenForm = match accept(&w, req, |f: &NewTokenForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    if let Some(confirm) = require_fresh(&s, &w, "/tokens") {
        return confirm;
    }
    let mut body = json!({"name": f.name.trim(), "role": f.role});
    // a platform admin token belongs to no org: the form's org applies to the other roles
    if let Some(org) = given(f.org).filter(|_| f.role != Role::PlatformAdmin.as_str()) {
        body["org"] = json!(org);
    }
    match run(&s, &w, ("POST", "/admin/v1/tokens"), &[], None, Some(body)).await {
        Ok(v) => shown_once(&w, "Admin token minted", text(&v, "name"), text(&v, "token"), None, "/tokens"),
        Err(d) => refusal(&d, Some(&w)),
    }
}

pub async fn revoke_admin_token(
    State(s): State<ConsoleState>,
    w: Signed,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    if let Err(d) = accept::<crate::session::CsrfOnly>(&w, req, |f| &f.csrf).await {
        return refusal(&d, Some(&w));
    }
    match run(&s, &w, ("POST", "/admin/v1/tokens/{id}/revoke"), &[("id", &id)], None, None).await {
        Ok(_) => see_other("/tokens"),
        Err(d) => refusal(&d, Some(&w)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgQuery {
    org: Option<String>,
    before: Option<String>,
}

/// Capability tokens: minted by the API or `gatehouse token mint` (the secret is shown where it
/// is minted, and never stored), listed here with their caveats and delegation, and revoked
/// with their whole subtree.
pub async fn capabilities(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let q: OrgQuery = match page_query(&uri) {
        Ok(q) => q,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let org = given(q.org);
    let query = page_before(&[("org", org.as_deref().unwrap_or("")), ("before", q.before.as_deref().unwrap_or(""))]);
    let listed = match run(&s, &w, ("GET", "/admin/v1/capabilities"), &[], Some(&query), None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let may_revoke = allows(w.op.role, Permission::KeyWriteAny);
    let main = html! {
        @if w.op.role == Role::PlatformAdmin {
            form.filters method="get" action="/capabilities" {
                label for="org" { "Organization (name)" }
                input id="org" name="org" value=(org.as_deref().unwrap_or("")) placeholder="default";
                button type="submit" { "Show" }
            }
        }
        p { "Capability tokens carry their own limits (scopes, models, expiry, budget, rate, addresses) and can be "
            "narrowed further by whoever holds one. Mint them with " code { "gatehouse token mint" } " or "
            code { "POST /admin/v1/capabilities" } "." }
        @if rows(&listed).is_empty() {
            p { "No capability tokens here." }
        } @else {
            table {
                caption { "Capability tokens" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Project" } th scope="col" { "Delegated from" }
                    th scope="col" { "Caveats" } th scope="col" { "Expires" } th scope="col" { "State" }
                    @if may_revoke { th scope="col" { span.sr-only { "Actions" } } } } }
                tbody {
                    @for c in rows(&listed) {
                        tr {
                            td { (text(c, "name")) " " code.short { (text(c, "id")) } }
                            td { code.short { (text(c, "project_id")) } }
                            td { @if c["parent_id"].is_null() { "root" } @else { code.short { (text(c, "parent_id")) } } }
                            td { code { (c["caveats"].to_string()) } }
                            td { (time(c, "expires_at")) }
                            td { @if c["revoked_at"].is_null() { "active" } @else { "revoked " (time(c, "revoked_at")) } }
                            @if may_revoke {
                                td {
                                    @if c["revoked_at"].is_null() {
                                        form method="post" action={ "/capabilities/" (text(c, "id")) "/revoke" } {
                                            input type="hidden" name="csrf" value=(w.csrf);
                                            input type="hidden" name="org" value=(org.as_deref().unwrap_or(""));
                                            button.danger type="submit" aria-label={ "Revoke capability token " (text(c, "name")) } {
                                                "Revoke with its delegations"
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (more_link("/capabilities", "before", next_after(&listed, "id"), &[("org", org.as_deref().unwrap_or(""))], "Older tokens"))
    };
    render(StatusCode::OK, "Capability tokens", Some(&w), main)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeCapabilityForm {
    csrf: String,
    org: Option<String>,
}

pub async fn revoke_capability(
    State(s): State<ConsoleState>,
    w: Signed,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let f: RevokeCapabilityForm = match accept(&w, req, |f: &RevokeCapabilityForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let org = given(f.org);
    let route = ("POST", "/admin/v1/capabilities/{id}/revoke");
    match run(&s, &w, route, &[("id", &id)], org_query(org.as_deref()).as_deref(), None).await {
        Ok(_) => see_other(&back("/capabilities", org.as_deref())),
        Err(d) => refusal(&d, Some(&w)),
    }
}
