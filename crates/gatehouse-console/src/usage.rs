//! The usage page: what an org used and spent, per day (a chart and its table), per model and
//! per project, over a range of UTC days, from the usage ledger through the admin API's usage
//! service; and the same rows as CSV.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gatehouse_core::{Denial, DenyCode};
use http::{HeaderValue, StatusCode, Uri, header};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ConsoleState;
use crate::page::{refusal, render};
use crate::pages::{page_query, rows, run, text};
use crate::session::Signed;

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// An org's id or name (platform admins; everyone else sees their own).
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
}

/// Today, and 29 days before it (UTC), as `YYYY-MM-DD`.
fn last_30_days() -> (String, String) {
    let now = std::time::SystemTime::now();
    let day = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned();
    (day(now - std::time::Duration::from_secs(29 * 86_400)), day(now))
}

/// The org a usage request addresses: the operator's own, else the one named (by id, or by
/// name among the orgs the operator can list).
async fn org_of(s: &ConsoleState, w: &Signed, asked: Option<&str>) -> Result<(String, String), Denial> {
    let listed = run(s, w, ("GET", "/admin/v1/orgs"), &[], Some("limit=1000"), None).await?;
    let orgs = rows(&listed);
    let wanted = asked.unwrap_or("default");
    let found = match w.op.org {
        Some(own) => orgs.iter().find(|o| text(o, "id") == own.to_string()),
        None => orgs.iter().find(|o| text(o, "id") == wanted || text(o, "name") == wanted),
    };
    let o = found.ok_or(Denial::new(DenyCode::NotFound).with_param("org"))?;
    Ok((text(o, "id").to_owned(), text(o, "name").to_owned()))
}

struct Usage {
    org_id: String,
    org_name: String,
    from: String,
    to: String,
    data: Value,
}

async fn fetch(s: &ConsoleState, w: &Signed, uri: &Uri) -> Result<Usage, Denial> {
    let q: UsageQuery = page_query(uri)?;
    let (default_from, default_to) = last_30_days();
    let from = q.from.filter(|d| !d.is_empty()).unwrap_or(default_from);
    let to = q.to.filter(|d| !d.is_empty()).unwrap_or(default_to);
    let (org_id, org_name) = org_of(s, w, q.org.as_deref().filter(|o| !o.is_empty())).await?;
    let query = serde_urlencoded::to_string([("from", &from), ("to", &to)]).unwrap_or_default();
    let data = run(s, w, ("GET", "/admin/v1/orgs/{org}/usage"), &[("org", &org_id)], Some(&query), None).await?;
    Ok(Usage { org_id, org_name, from, to, data })
}

#[derive(Default, Clone, Copy)]
struct Sum {
    requests: i64,
    prompt: i64,
    completion: i64,
    micro_usd: i64,
}

impl Sum {
    fn add(&mut self, r: &Value) {
        let n = |k: &str| r[k].as_i64().unwrap_or(0);
        self.requests += n("requests");
        self.prompt += n("prompt_tokens");
        self.completion += n("completion_tokens");
        self.micro_usd += n("cost_micro_usd");
    }
}

fn usd(micro: i64) -> String {
    format!("${}.{:04}", micro / 1_000_000, (micro % 1_000_000).abs() / 100)
}

fn by(data: &[Value], key: &str) -> BTreeMap<String, Sum> {
    let mut out: BTreeMap<String, Sum> = BTreeMap::new();
    for r in data {
        out.entry(text(r, key).to_owned()).or_default().add(r);
    }
    out
}

/// Every UTC day from `from` to `to` (at most 400), as `YYYY-MM-DD`.
fn days_between(from: &str, to: &str) -> Vec<String> {
    let at = |d: &str| humantime::parse_rfc3339(&format!("{d}T00:00:00Z")).ok();
    let (Some(mut t), Some(end)) = (at(from), at(to)) else { return Vec::new() };
    let mut out = Vec::new();
    while t <= end && out.len() < 400 {
        out.push(humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned());
        t += std::time::Duration::from_secs(86_400);
    }
    out
}

/// Requests per day over the whole range (days without traffic at zero) as bars: an SVG image
/// described by its label, with the figures in the table after it (screen readers, exact
/// values). Drawn in a fixed frame, so a range of one day looks like one of a year.
fn chart(range: &[String], days: &BTreeMap<String, Sum>) -> Markup {
    let (width, height) = (720i64, 120i64);
    let n = i64::try_from(range.len()).unwrap_or(1).max(1);
    let slot = (width / n).max(1);
    let bar_width = (slot - slot / 5).max(1);
    let max = days.values().map(|s| s.requests).max().unwrap_or(0).max(1);
    let total: i64 = days.values().map(|s| s.requests).sum();
    let label = format!("Requests per day: {total} in {n} days, at most {max} in a day");
    let every = (n / 6).max(1);
    html! {
        svg.chart role="img" aria-label=(label) viewBox={ "0 0 " (width) " " (height + 20) } {
            line x1="0" y1=(height) x2=(width) y2=(height) stroke="currentColor" stroke-width="1" {}
            @for (i, day) in range.iter().enumerate() {
                @let i = i64::try_from(i).unwrap_or(0);
                @let s = days.get(day).copied().unwrap_or_default();
                @let bar = s.requests * height / max;
                @if bar > 0 {
                    rect x=(i * slot) y=(height - bar) width=(bar_width) height=(bar) fill="currentColor" {
                        title { (day) ": " (s.requests) " requests, " (usd(s.micro_usd)) }
                    }
                }
                @if i % every == 0 {
                    text x=(i * slot) y=(height + 15) font-size="11" fill="currentColor" { (day.get(5..).unwrap_or(day)) }
                }
            }
        }
    }
}

fn table(caption: &str, first: &str, sums: &BTreeMap<String, Sum>) -> Markup {
    html! {
        table {
            caption { (caption) }
            thead { tr { th scope="col" { (first) } th scope="col" { "Requests" } th scope="col" { "Prompt tokens" }
                th scope="col" { "Completion tokens" } th scope="col" { "Cost" } } }
            tbody {
                @for (k, s) in sums {
                    tr { th scope="row" { code.short { (k) } } td { (s.requests) } td { (s.prompt) } td { (s.completion) }
                        td { (usd(s.micro_usd)) } }
                }
            }
        }
    }
}

pub async fn page(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let u = match fetch(&s, &w, &uri).await {
        Ok(u) => u,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let data = rows(&u.data);
    let days = by(data, "day");
    let mut total = Sum::default();
    data.iter().for_each(|r| total.add(r));
    let csv = serde_urlencoded::to_string([("org", &u.org_id), ("from", &u.from), ("to", &u.to)]).unwrap_or_default();
    let main = html! {
        form.filters method="get" action="/usage" {
            @if w.op.org.is_none() {
                label for="org" { "Organization (name or id)" }
                input id="org" name="org" value=(u.org_name);
            }
            label for="from" { "From" }
            input id="from" name="from" type="date" value=(u.from);
            label for="to" { "To" }
            input id="to" name="to" type="date" value=(u.to);
            button type="submit" { "Show" }
        }
        p { "Organization " strong { (u.org_name) } ", " (u.from) " to " (u.to) " (UTC): "
            strong { (total.requests) } " requests, " strong { (usd(total.micro_usd)) } ". "
            a href={ "/usage.csv?" (csv) } download { "Download CSV" } }
        @if data.is_empty() {
            p { "No usage in this range." }
        } @else {
            figure { (chart(&days_between(&u.from, &u.to), &days)) figcaption { "Requests per day" } }
            (table("Per day", "Day", &days))
            (table("Per model", "Model", &by(data, "model")))
            (table("Per project", "Project", &by(data, "project_id")))
        }
    };
    render(StatusCode::OK, "Usage", Some(&w), main)
}

/// A cell that a spreadsheet would run as a formula is made text.
fn cell(v: &str) -> String {
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{v}") } else { v.to_owned() }
}

pub async fn csv(State(s): State<ConsoleState>, w: Signed, uri: Uri) -> Response {
    let u = match fetch(&s, &w, &uri).await {
        Ok(u) => u,
        Err(d) => return refusal(&d, Some(&w)),
    };
    let mut out = csv::Writer::from_writer(Vec::new());
    let head = ["day", "project_id", "credential", "model", "provider", "requests", "prompt_tokens"];
    let _ = out.write_record(head.iter().chain(&["completion_tokens", "cached_tokens", "cost_micro_usd"]));
    for r in rows(&u.data) {
        let n = |k: &str| r[k].as_i64().unwrap_or(0).to_string();
        let t = |k: &str| cell(text(r, k));
        let _ = out.write_record([
            t("day"),
            t("project_id"),
            t("credential"),
            t("model"),
            t("provider"),
            n("requests"),
            n("prompt_tokens"),
            n("completion_tokens"),
            n("cached_tokens"),
            n("cost_micro_usd"),
        ]);
    }
    let body = out.into_inner().unwrap_or_default();
    let name = format!("attachment; filename=\"usage-{}-{}-{}.csv\"", u.org_id, u.from, u.to);
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_every_day_in_it_and_is_bounded() {
        assert_eq!(days_between("2026-02-27", "2026-03-01"), ["2026-02-27", "2026-02-28", "2026-03-01"]);
        assert!(days_between("2026-03-01", "2026-02-27").is_empty());
        assert_eq!(days_between("2000-01-01", "2026-01-01").len(), 400);
        assert!(days_between("nope", "2026-01-01").is_empty());
    }

    #[test]
    fn formulas_become_text_and_dollars_keep_four_places() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("gpt-4o"), "gpt-4o");
        assert_eq!(usd(1_234_567), "$1.2345");
        assert_eq!(usd(0), "$0.0000");
    }
}
