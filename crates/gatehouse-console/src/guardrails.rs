//! Guardrail policies of an org or a project: the effective policy (deployment default, then
//! org, then project), and the scope's own layer edited as JSON (docs/GUARDRAILS.md), compiled
//! by the API before it is stored.

use axum::extract::{Path, Request, State};
use axum::response::Response;
use gatehouse_admin::rbac::{Permission, allows};
use gatehouse_core::{Denial, DenyCode};
use http::StatusCode;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use crate::ConsoleState;
use crate::forms::accept;
use crate::page::{refusal, render, see_other};
use crate::pages::run;
use crate::session::Signed;

/// An org's (`project` none) or a project's policy routes, path parameters and page.
struct Scope {
    org: String,
    project: Option<String>,
}

impl Scope {
    fn route(&self) -> &'static str {
        match self.project {
            None => "/admin/v1/orgs/{org}/guardrails",
            Some(_) => "/admin/v1/orgs/{org}/projects/{project}/guardrails",
        }
    }

    fn params(&self) -> Vec<(&str, &str)> {
        let mut p = vec![("org", self.org.as_str())];
        if let Some(project) = &self.project {
            p.push(("project", project.as_str()));
        }
        p
    }

    fn page(&self) -> String {
        match &self.project {
            None => format!("/orgs/{}/guardrails", self.org),
            Some(p) => format!("/orgs/{}/projects/{p}/guardrails", self.org),
        }
    }

    fn may_write(&self, w: &Signed) -> bool {
        let perm = if self.project.is_some() { Permission::ProjectWrite } else { Permission::OrgUpdate };
        allows(w.op.role, perm)
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

async fn show(s: ConsoleState, w: Signed, scope: Scope) -> Response {
    let params = scope.params();
    let v = match run(&s, &w, ("GET", scope.route()), &params, None, None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let own = if v["policy"].is_null() { String::new() } else { pretty(&v["policy"]) };
    let layer = if scope.project.is_some() { "project" } else { "organization" };
    let main = html! {
        p { "Requests are checked by the deployment's default policy, then the organization's, then the project's. "
            "See docs/GUARDRAILS.md for the fields." }
        h2 { "In effect" }
        pre.policy { code { (pretty(&v["effective"])) } }
        h2 { "This " (layer) "'s own layer" }
        @if scope.may_write(&w) {
            form method="post" action=(scope.page()) {
                input type="hidden" name="csrf" value=(w.csrf);
                label for="policy" { "Policy (JSON; empty for none)" }
                textarea id="policy" name="policy" rows="12" spellcheck="false" { (own) }
                button type="submit" { "Save policy" }
            }
        } @else if own.is_empty() {
            p { "None: the layers above apply." }
        } @else {
            pre.policy { code { (own) } }
        }
    };
    render(StatusCode::OK, "Guardrail policy", Some(&w), main)
}

pub async fn org_page(State(s): State<ConsoleState>, w: Signed, Path(org): Path<String>) -> Response {
    show(s, w, Scope { org, project: None }).await
}

pub async fn project_page(
    State(s): State<ConsoleState>,
    w: Signed,
    Path((org, project)): Path<(String, String)>,
) -> Response {
    show(s, w, Scope { org, project: Some(project) }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyForm {
    csrf: String,
    policy: String,
}

async fn save(s: ConsoleState, w: Signed, scope: Scope, req: Request) -> Response {
    let f: PolicyForm = match accept(&w, req, |f: &PolicyForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let params = scope.params();
    let done = if f.policy.trim().is_empty() {
        run(&s, &w, ("DELETE", scope.route()), &params, None, None).await
    } else {
        let Ok(policy) = serde_json::from_str::<Value>(&f.policy) else {
            return refusal(&Denial::new(DenyCode::InvalidJson).with_param("policy"), Some(&w));
        };
        run(&s, &w, ("PUT", scope.route()), &params, None, Some(policy)).await
    };
    match done {
        Ok(_) => see_other(&scope.page()),
        Err(d) => refusal(&d, Some(&w)),
    }
}

pub async fn save_org(State(s): State<ConsoleState>, w: Signed, Path(org): Path<String>, req: Request) -> Response {
    save(s, w, Scope { org, project: None }, req).await
}

pub async fn save_project(
    State(s): State<ConsoleState>,
    w: Signed,
    Path((org, project)): Path<(String, String)>,
    req: Request,
) -> Response {
    save(s, w, Scope { org, project: Some(project) }, req).await
}
