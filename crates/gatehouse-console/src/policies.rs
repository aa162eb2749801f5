//! The policies an org or a project holds of its own, each edited as JSON and checked by the
//! API before it is stored: guardrails (the effective policy, deployment default then org then
//! project, docs/GUARDRAILS.md) and limits and budgets (each budget's standing this period,
//! docs/LIMITS.md).

use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use gatehouse_admin::rbac::{Permission, allows};
use gatehouse_core::{Denial, DenyCode};
use http::StatusCode;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::ConsoleState;
use crate::forms::accept;
use crate::page::{refusal, render, see_other};
use crate::pages::{run, text};
use crate::session::Signed;

/// Which policy a page edits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Guardrails,
    Limits,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Guardrails => "guardrails",
            Kind::Limits => "limits",
        }
    }

    /// The field of the API's answer that holds the scope's own policy.
    fn own(self) -> &'static str {
        match self {
            Kind::Guardrails => "policy",
            Kind::Limits => "limits",
        }
    }
}

/// An org's (`project` none) or a project's policy routes, path parameters and page.
struct Scope {
    kind: Kind,
    org: String,
    project: Option<String>,
}

impl Scope {
    fn route(&self) -> &'static str {
        match (self.kind, &self.project) {
            (Kind::Guardrails, None) => "/admin/v1/orgs/{org}/guardrails",
            (Kind::Guardrails, Some(_)) => "/admin/v1/orgs/{org}/projects/{project}/guardrails",
            (Kind::Limits, None) => "/admin/v1/orgs/{org}/limits",
            (Kind::Limits, Some(_)) => "/admin/v1/orgs/{org}/projects/{project}/limits",
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
            None => format!("/orgs/{}/{}", self.org, self.kind.path()),
            Some(p) => format!("/orgs/{}/projects/{p}/{}", self.org, self.kind.path()),
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
    let own = if v[scope.kind.own()].is_null() { String::new() } else { pretty(&v[scope.kind.own()]) };
    let layer = if scope.project.is_some() { "project" } else { "organization" };
    let main = html! {
        @match scope.kind {
            Kind::Guardrails => {
                p { "Requests are checked by the deployment's default policy, then the organization's, then the project's. "
                    "See docs/GUARDRAILS.md for the fields." }
                h2 { "In effect" }
                pre.policy { code { (pretty(&v["effective"])) } }
            }
            Kind::Limits => {
                p { "Every limit that applies to a request must admit it: the deployment's, the organization's, the "
                    "project's and the key's. Rates are per minute; budgets are in US dollars or tokens per day, month "
                    "or lifetime, with alerts at the percentages listed. See docs/LIMITS.md for the fields, e.g. "
                    code { r#"{"rpm": 600, "budgets": [{"period": "monthly", "usd": 500, "alert_at": [80]}]}"# } "." }
                (standing(&v, "In effect here, and where its budgets stand"))
            }
        }
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
    let title = match scope.kind {
        Kind::Guardrails => "Guardrail policy",
        Kind::Limits => "Limits and budgets",
    };
    render(StatusCode::OK, title, Some(&w), main)
}

/// Each budget's standing this period and the rates, as the limits service reports them, under
/// `heading`.
pub(crate) fn standing(l: &Value, heading: &str) -> Markup {
    let spec = &l["limits"];
    let rate = |k: &str| spec[k].as_u64().map_or_else(|| "none".to_owned(), |v| v.to_string());
    let budgets = l["standing"].as_array().map_or(&[][..], Vec::as_slice);
    let figure = |v: &Value, unit: &str| match (unit, v.as_f64()) {
        ("usd", Some(x)) => format!("${x:.2}"),
        (_, Some(x)) => format!("{x:.0} tokens"),
        _ => String::new(),
    };
    html! {
        section aria-labelledby="limits" {
            h2 id="limits" { (heading) }
            @if spec.is_null() {
                p { "None of its own: the deployment's and the other scopes' apply." }
            } @else {
                p { "Requests per minute: " (rate("rpm")) ". Tokens per minute: " (rate("tpm")) "." }
                @if !budgets.is_empty() {
                    table {
                        caption { "Budgets this period" }
                        thead { tr { th scope="col" { "Period" } th scope="col" { "Limit" } th scope="col" { "Spent" }
                            th scope="col" { "Held for requests in flight" } th scope="col" { "Used" } } }
                        tbody {
                            @for b in budgets {
                                @let unit = text(b, "unit");
                                @let (limit, spent) = (b["limit"].as_f64().unwrap_or(0.0), b["spent"].as_f64().unwrap_or(0.0));
                                @let used = if limit > 0.0 { (spent / limit * 100.0).clamp(0.0, 100.0) } else { 0.0 };
                                tr {
                                    td { (text(b, "period")) }
                                    td { (figure(&b["limit"], unit)) }
                                    td { (figure(&b["spent"], unit)) }
                                    td { (figure(&b["reserved"], unit)) }
                                    td { meter min="0" max="100" value=(format!("{used:.0}")) { (format!("{used:.0}%")) } " " (format!("{used:.0}%")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /orgs/{org}/guardrails` or `/orgs/{org}/limits`.
async fn org_page(kind: Kind, s: ConsoleState, w: Signed, org: String) -> Response {
    show(s, w, Scope { kind, org, project: None }).await
}

/// `GET /orgs/{org}/projects/{project}/guardrails` or `.../limits`.
async fn project_page(kind: Kind, s: ConsoleState, w: Signed, (org, project): (String, String)) -> Response {
    show(s, w, Scope { kind, org, project: Some(project) }).await
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

async fn save_org(kind: Kind, s: ConsoleState, w: Signed, org: String, req: Request) -> Response {
    save(s, w, Scope { kind, org, project: None }, req).await
}

async fn save_project(
    kind: Kind,
    s: ConsoleState,
    w: Signed,
    (org, project): (String, String),
    req: Request,
) -> Response {
    save(s, w, Scope { kind, org, project: Some(project) }, req).await
}

/// The page and form of an org's policy of `kind`.
pub fn org_routes(kind: Kind) -> MethodRouter<ConsoleState> {
    get(move |State(s): State<ConsoleState>, w: Signed, Path(org): Path<String>| org_page(kind, s, w, org)).post(
        move |State(s): State<ConsoleState>, w: Signed, Path(org): Path<String>, req: Request| {
            save_org(kind, s, w, org, req)
        },
    )
}

/// The page and form of a project's policy of `kind`.
pub fn project_routes(kind: Kind) -> MethodRouter<ConsoleState> {
    get(move |State(s): State<ConsoleState>, w: Signed, Path(p): Path<(String, String)>| project_page(kind, s, w, p))
        .post(move |State(s): State<ConsoleState>, w: Signed, Path(p): Path<(String, String)>, req: Request| {
            save_project(kind, s, w, p, req)
        })
}
