//! One project: its settings (name, model allow-list, each key's default rates, the browser
//! origins that may read its data-plane answers) and its state (disable, enable), through the
//! admin API's project services.

use axum::extract::{Path, Request, State};
use axum::response::Response;
use gatehouse_admin::rbac::{Permission, allows};
use gatehouse_core::{Denial, DenyCode};
use http::StatusCode;
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ConsoleState;
use crate::forms::accept;
use crate::page::{refusal, render, see_other, when};
use crate::pages::{run, text};
use crate::session::{CsrfOnly, Signed};

fn strings(v: &Value, sep: &str) -> String {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(sep)).unwrap_or_default()
}

pub async fn show(State(s): State<ConsoleState>, w: Signed, Path((org, project)): Path<(String, String)>) -> Response {
    let p = [("org", org.as_str()), ("project", project.as_str())];
    let pr = match run(&s, &w, ("GET", "/admin/v1/orgs/{org}/projects/{project}"), &p, None, None).await {
        Ok(v) => v,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let may_write = allows(w.op.role, Permission::ProjectWrite);
    let here = format!("/orgs/{org}/projects/{project}");
    let limits = &pr["default_limits"];
    let disabled = !pr["disabled_at"].is_null();
    let main = html! {
        dl.facts {
            dt { "Organization" } dd { a href={ "/orgs/" (org) } { code.short { (org) } } }
            dt { "Id" } dd { code { (project) } }
            dt { "Created" } dd { (pr["created_at"].as_i64().map(when).unwrap_or_default()) }
            dt { "State" } dd { @if disabled { "disabled: its keys and tokens do not work" } @else { "active" } }
            dt { "Guardrails" } dd { a href={ (here) "/guardrails" } { "Guardrail policy" } }
            dt { "Limits" } dd { a href={ (here) "/limits" } { "Limits and budgets" } }
        }
        @if may_write {
            form method="post" action=(here) {
                input type="hidden" name="csrf" value=(w.csrf);
                label for="p-name" { "Name" }
                input id="p-name" name="name" required maxlength="64" pattern="[A-Za-z0-9._\\-]+" value=(text(&pr, "name"));
                label for="p-models" { "Models (comma-separated; empty for every served model)" }
                input id="p-models" name="models" value=(strings(&pr["models"], ", "));
                label for="p-rpm" { "Requests per minute for each key (empty for none)" }
                input id="p-rpm" name="rpm" type="number" min="1" max="100000000" value=[limits["rpm"].as_u64()];
                label for="p-tpm" { "Tokens per minute for each key (empty for none)" }
                input id="p-tpm" name="tpm" type="number" min="1" max="100000000" value=[limits["tpm"].as_u64()];
                label for="p-cors" { "Browser origins (one per line, e.g. https://app.example.com)" }
                textarea id="p-cors" name="cors_origins" rows="3" aria-describedby="p-cors-help" { (strings(&pr["cors_origins"], "\n")) }
                p id="p-cors-help" .help {
                    "Pages of these exact origins may read the data plane's answers to this project's credentials "
                    "(CORS). Never a wildcard. Give browser apps short-lived tokens, not long-lived keys."
                }
                button type="submit" { "Save settings" }
            }
            form method="post" action={ (here) (if disabled { "/enable" } else { "/disable" }) } {
                input type="hidden" name="csrf" value=(w.csrf);
                @if disabled {
                    button type="submit" { "Enable project" }
                } @else {
                    button.danger type="submit" { "Disable project (its keys stop within a second)" }
                }
            }
        } @else {
            dl.facts {
                dt { "Name" } dd { (text(&pr, "name")) }
                dt { "Models" } dd { @if pr["models"].is_null() { "every served model" } @else { (strings(&pr["models"], ", ")) } }
                dt { "Browser origins" } dd { @if pr["cors_origins"].is_null() { "none" } @else { (strings(&pr["cors_origins"], ", ")) } }
            }
        }
    };
    render(StatusCode::OK, text(&pr, "name"), Some(&w), main)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsForm {
    csrf: String,
    name: String,
    models: String,
    rpm: String,
    tpm: String,
    cors_origins: String,
}

/// A rate field: empty is none; anything else must be a whole number (the API bounds it).
fn rate(v: &str, param: &'static str) -> Result<Option<u64>, Denial> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| Denial::new(DenyCode::InvalidRequest).with_param(param))
}

fn list(v: &str, sep: char) -> Option<Vec<&str>> {
    let items: Vec<&str> = v.split(sep).map(str::trim).filter(|s| !s.is_empty()).collect();
    (!items.is_empty()).then_some(items)
}

pub async fn update(
    State(s): State<ConsoleState>,
    w: Signed,
    Path((org, project)): Path<(String, String)>,
    req: Request,
) -> Response {
    let f: SettingsForm = match accept(&w, req, |f: &SettingsForm| &f.csrf).await {
        Ok(f) => f,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let (rpm, tpm) = match (rate(&f.rpm, "rpm"), rate(&f.tpm, "tpm")) {
        (Ok(r), Ok(t)) => (r, t),
        (Err(d), _) | (_, Err(d)) => return refusal(&d, Some(&w)),
    };
    // the API replaces every setting at once: send them all, as the form shows them
    let mut body = json!({"name": f.name.trim()});
    if let Some(m) = list(&f.models, ',') {
        body["models"] = json!(m);
    }
    if rpm.is_some() || tpm.is_some() {
        let mut l = json!({});
        if let Some(r) = rpm {
            l["rpm"] = json!(r);
        }
        if let Some(t) = tpm {
            l["tpm"] = json!(t);
        }
        body["default_limits"] = l;
    }
    if let Some(o) = list(&f.cors_origins, '\n') {
        body["cors_origins"] = json!(o);
    }
    let p = [("org", org.as_str()), ("project", project.as_str())];
    match run(&s, &w, ("PATCH", "/admin/v1/orgs/{org}/projects/{project}"), &p, None, Some(body)).await {
        Ok(_) => see_other(&format!("/orgs/{org}/projects/{project}")),
        Err(d) => refusal(&d, Some(&w)),
    }
}

pub async fn set_state(
    State(s): State<ConsoleState>,
    w: Signed,
    Path((org, project, action)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    if let Err(d) = accept::<CsrfOnly>(&w, req, |f| &f.csrf).await {
        return refusal(&d, Some(&w));
    }
    let route = match action.as_str() {
        "disable" => ("POST", "/admin/v1/orgs/{org}/projects/{project}/disable"),
        "enable" => ("POST", "/admin/v1/orgs/{org}/projects/{project}/enable"),
        _ => return refusal(&Denial::new(DenyCode::NotFound), Some(&w)),
    };
    let p = [("org", org.as_str()), ("project", project.as_str())];
    match run(&s, &w, route, &p, None, None).await {
        Ok(_) => see_other(&format!("/orgs/{org}/projects/{project}")),
        Err(d) => refusal(&d, Some(&w)),
    }
}
