//! Organizations, their projects and members: listed, created, members added and removed,
//! all through the admin API's services (the same rights, refusals and audit rows).

use axum::extract::{Path, Request, State};
use axum::response::Response;
use gatehouse_admin::rbac::{Permission, Role, allows};
use gatehouse_core::Denial;
use http::{StatusCode, Uri};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use crate::ConsoleState;
use crate::forms::accept;
use crate::page::{refusal, render, see_other, when};
use crate::pages::{AfterQuery, more_link, next_after, page_after, page_query, rows, run, text};
use crate::session::{CsrfOnly, Signed};

/// Roles a member may be given here, lowest first.
const ROLES: [Role; 3] = [Role::Viewer, Role::Member, Role::OrgAdmin];

pub async fn list(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let q: AfterQuery = match page_query(&uri) {
        Ok(q) => q,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let query = page_after(q.after.as_deref());
    let listed = match run(&s, &w, ("GET", "/admin/v1/orgs"), &[], Some(&query), None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let main = html! {
        table {
            caption { "Organizations you can see" }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Created" }
                th scope="col" { "State" } } }
            tbody {
                @for o in rows(&listed) {
                    tr {
                        td { a href={ "/orgs/" (text(o, "id")) } { (text(o, "name")) } }
                        td { code.short { (text(o, "id")) } }
                        td { (o["created_at"].as_i64().map(when).unwrap_or_default()) }
                        td { @if o["disabled_at"].is_null() { "active" } @else { "disabled" } }
                    }
                }
            }
        }
        (more_link("/orgs", "after", next_after(&listed, "id"), &[], "More organizations"))
        @if w.op.role == Role::PlatformAdmin {
            section aria-labelledby="new-org" {
                h2 id="new-org" { "New organization" }
                form method="post" action="/orgs" {
                    input type="hidden" name="csrf" value=(w.csrf);
                    label for="org-name" { "Name" }
                    input id="org-name" name="name" required maxlength="64" pattern="[A-Za-z0-9._\\-]+"
                        aria-describedby="org-name-help";
                    p id="org-name-help" .help { "Letters, digits, dots, dashes and underscores." }
                    button type="submit" { "Create organization" }
                }
            }
        }
    };
    render(StatusCode::OK, "Organizations", Some(&w), main)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameForm {
    csrf: String,
    name: String,
}

pub async fn create(State(s): State<ConsoleState>, w: Signed, req: Request) -> Response {
    let f: NameForm = match accept(&w, req, |f: &NameForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    match run(&s, &w, ("POST", "/admin/v1/orgs"), &[], None, Some(json!({"name": f.name.trim()}))).await {
        Ok(v) => see_other(&format!("/orgs/{}", text(&v, "id"))),
        Err(d) => refusal(&d, Some(&w)),
    }
}

/// Where the org page's two lists go on from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    projects: Option<String>,
    members: Option<String>,
}

pub async fn show(State(s): State<ConsoleState>, w: Signed, Path(org): Path<String>, uri: Uri) -> Response {
    let q: ShowQuery = match page_query(&uri) {
        Ok(q) => q,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let p = [("org", org.as_str())];
    let (projects_page, members_page) = (page_after(q.projects.as_deref()), page_after(q.members.as_deref()));
    let (o, projects, members, limits) = match (
        run(&s, &w, ("GET", "/admin/v1/orgs/{org}"), &p, None, None).await,
        run(&s, &w, ("GET", "/admin/v1/orgs/{org}/projects"), &p, Some(&projects_page), None).await,
        run(&s, &w, ("GET", "/admin/v1/orgs/{org}/members"), &p, Some(&members_page), None).await,
        run(&s, &w, ("GET", "/admin/v1/orgs/{org}/limits"), &p, None, None).await,
    ) {
        (Ok(o), Ok(pr), members, limits) => (o, pr, members.ok(), limits.ok()),
        (Err(d), ..) | (_, Err(d), ..) => return refusal(&d, Some(&w)),
    };
    let may_projects = allows(w.op.role, Permission::ProjectWrite);
    let may_members = allows(w.op.role, Permission::MembershipWrite);
    let main = html! {
        p { "Organization " strong { (text(&o, "name")) } " " code.short { (org) } " · "
            a href={ "/orgs/" (org) "/guardrails" } { "Guardrail policy" } " · "
            a href={ "/orgs/" (org) "/limits" } { "Limits and budgets" } }
        table {
            caption { "Projects" }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Models" }
                th scope="col" { "State" } } }
            tbody {
                @for p in rows(&projects) {
                    tr {
                        td { a href={ "/orgs/" (org) "/projects/" (text(p, "id")) } { (text(p, "name")) } }
                        td { code.short { (text(p, "id")) } }
                        td { @match p["models"].as_array() {
                            Some(m) => { (m.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")) },
                            None => "all served models",
                        } }
                        td { @if p["disabled_at"].is_null() { "active" } @else { "disabled" } }
                    }
                }
            }
        }
        @let here = format!("/orgs/{org}");
        @let members_at = q.members.as_deref().unwrap_or("");
        (more_link(&here, "projects", next_after(&projects, "id"), &[("members", members_at)], "More projects"))
        @if let Some(l) = &limits { (crate::policies::standing(l, "Limits and budgets")) }
        @if may_projects {
            form.filters method="post" action={ "/orgs/" (org) "/projects" } {
                input type="hidden" name="csrf" value=(w.csrf);
                label for="project-name" { "New project" }
                input id="project-name" name="name" required maxlength="64" pattern="[A-Za-z0-9._\\-]+";
                button type="submit" { "Create project" }
            }
        }
        @if let Some(members) = &members {
            table {
                caption { "Members" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Role" }
                    th scope="col" { "Kind" } @if may_members { th scope="col" { span.sr-only { "Actions" } } } } }
                tbody {
                    @for m in rows(members) {
                        tr {
                            td { (text(m, "name")) }
                            td { (text(m, "email")) }
                            td { (text(m, "role")) }
                            td { (text(m, "kind")) }
                            @if may_members {
                                td {
                                    form method="post" action={ "/orgs/" (org) "/members/" (text(m, "user_id")) "/remove" } {
                                        input type="hidden" name="csrf" value=(w.csrf);
                                        button.danger type="submit" aria-label={ "Remove " (text(m, "email")) } { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @let projects_at = q.projects.as_deref().unwrap_or("");
            (more_link(&here, "members", next_after(members, "user_id"), &[("projects", projects_at)], "More members"))
        }
        @if may_members {
            section aria-labelledby="new-member" {
                h2 id="new-member" { "Add a member" }
                form method="post" action={ "/orgs/" (org) "/members" } {
                    input type="hidden" name="csrf" value=(w.csrf);
                    label for="member-email" { "Email" }
                    input id="member-email" name="email" type="email" required maxlength="254";
                    label for="member-name" { "Name" }
                    input id="member-name" name="name" required maxlength="128";
                    label for="member-role" { "Role" }
                    select id="member-role" name="role" {
                        @for r in ROLES { option value=(r.as_str()) { (r.as_str()) } }
                    }
                    button type="submit" { "Add member" }
                }
            }
        }
    };
    render(StatusCode::OK, text(&o, "name"), Some(&w), main)
}

pub async fn create_project(
    State(s): State<ConsoleState>,
    w: Signed,
    Path(org): Path<String>,
    req: Request,
) -> Response {
    let f: NameForm = match accept(&w, req, |f: &NameForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let body = json!({"name": f.name.trim()});
    answer(&w, &org, run(&s, &w, ("POST", "/admin/v1/orgs/{org}/projects"), &[("org", &org)], None, Some(body)).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberForm {
    csrf: String,
    email: String,
    name: String,
    role: String,
}

pub async fn add_member(State(s): State<ConsoleState>, w: Signed, Path(org): Path<String>, req: Request) -> Response {
    let f: MemberForm = match accept(&w, req, |f: &MemberForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let body = json!({"email": f.email.trim(), "name": f.name.trim(), "role": f.role});
    answer(&w, &org, run(&s, &w, ("POST", "/admin/v1/orgs/{org}/members"), &[("org", &org)], None, Some(body)).await)
}

pub async fn remove_member(
    State(s): State<ConsoleState>,
    w: Signed,
    Path((org, user)): Path<(String, String)>,
    req: Request,
) -> Response {
    if let Err(d) = accept(&w, req, |f: &CsrfOnly| &f.csrf).await {
        return refusal(&d, Some(&w));
    }
    let p = [("org", org.as_str()), ("user", user.as_str())];
    answer(&w, &org, run(&s, &w, ("DELETE", "/admin/v1/orgs/{org}/members/{user}"), &p, None, None).await)
}

/// Back to the org's page after a change, or the refusal.
fn answer(w: &Signed, org: &str, r: Result<serde_json::Value, Denial>) -> Response {
    match r {
        Ok(_) => see_other(&format!("/orgs/{org}")),
        Err(d) => refusal(&d, Some(w)),
    }
}
