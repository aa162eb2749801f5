//! The one wrapper every admin route runs through, driven by the route table: authenticate
//! (the [`Operator`] extractor, which audits a failure itself), run the route's service
//! function, audit the outcome under the table's action, render. A service function is plain:
//! it reads what it needs from the [`Call`], checks rights with `rbac::check`, talks to the
//! store, and returns a status and a body; it never names its audit action or renders.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use gatehouse_core::{Denial, DenyCode, OrgId};
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::AdminState;
use crate::audit::{AuditCx, audited, respond};
use crate::body::StrictJson;
use crate::rbac::{Operator, Permission};
use crate::reply::bad;
use crate::routes::RouteSpec;

/// What a service answers: a status and a JSON body, or a refusal.
pub type Reply = Result<(StatusCode, Value), Denial>;

/// A service function: `fn name(c: &mut Call) -> Pending<'_> { Box::pin(async move { .. }) }`.
pub type Pending<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;
pub type Service = for<'a> fn(&'a mut Call) -> Pending<'a>;

/// One admin request as a service function sees it.
pub struct Call {
    pub s: AdminState,
    pub op: Operator,
    params: HashMap<String, String>,
    parts: http::request::Parts,
    body: Option<axum::body::Body>,
    /// The org the audit row names (the operator's own for scoped operators, see
    /// `audit::respond`); set as soon as the service knows it.
    pub org: Option<OrgId>,
    /// The object the audit row names.
    pub target: Option<String>,
}

/// Route services that differ only in an argument: `name => verb(arg);` defines
/// `pub fn name(c: &mut Call) -> Pending<'_>` running `verb(c, arg)`.
macro_rules! services {
    ($($name:ident => $verb:ident($arg:expr);)*) => {
        $(pub fn $name(c: &mut $crate::service::Call) -> $crate::service::Pending<'_> {
            Box::pin($verb(c, $arg))
        })*
    };
}
pub(crate) use services;

impl Call {
    /// A path parameter the route table's path names (empty if it names none).
    pub fn path(&self, name: &str) -> &str {
        self.params.get(name).map_or("", String::as_str)
    }

    /// The `{org}` path parameter, named in the audit row; an id that does not parse is an org
    /// that does not exist.
    pub fn path_org(&mut self) -> Result<OrgId, Denial> {
        self.org = OrgId::parse(self.path("org"));
        self.org.ok_or(Denial::new(DenyCode::NotFound))
    }

    /// The org a request names (in its query or body; the operator's own, else `default`, when
    /// it names none), checked for `p` and named in the audit row.
    pub async fn target_org(&mut self, name: Option<&str>, p: Permission) -> Result<OrgId, Denial> {
        let org = crate::keys::target_org(&self.s, &self.op, name, p).await?;
        self.org = Some(org);
        Ok(org)
    }

    /// Names a path parameter as the audit row's target.
    pub fn target_path(&mut self, name: &str) {
        self.target = Some(self.path(name).to_owned());
    }

    /// The query string as `T` (unknown fields refused): `invalid_request`, `param: query`.
    pub fn query<T: DeserializeOwned>(&self) -> Result<T, Denial> {
        axum::extract::Query::<T>::try_from_uri(&self.parts.uri)
            .map(|axum::extract::Query(t)| t)
            .map_err(|_| bad("query"))
    }

    /// The JSON body, strictly (size, media type, depth, unknown fields): read once.
    pub async fn body<T: DeserializeOwned>(&mut self) -> Result<T, Denial> {
        let body = self.body.take().ok_or(Denial::new(DenyCode::InvalidRequest))?;
        let req = Request::from_parts(self.parts.clone(), body);
        StrictJson::<T>::read(req).await.map(|StrictJson(t)| t)
    }
}

/// Runs one route-table row's service for an operator the caller has authenticated (the
/// console's session), exactly as the HTTP wrapper does: the same service, the same rights
/// checks, the same audit action. `params` fill the row's path; `query` and `body` are what an
/// API client would send.
pub async fn invoke(
    s: &AdminState,
    op: &Operator,
    acx: &AuditCx,
    route: (&str, &str),
    params: &[(&str, &str)],
    query: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let spec =
        crate::routes::ROUTES.iter().find(|r| (r.method, r.path) == route).ok_or(Denial::new(DenyCode::NotFound))?;
    let service = crate::routes::service_of(spec).ok_or(Denial::new(DenyCode::NotFound))?;
    if !params.iter().all(|(_, v)| gatehouse_core::is_id(v)) {
        return audited(s, acx, op, spec.action, None, None, Err(Denial::new(DenyCode::NotFound))).await;
    }
    let mut path = spec.path.to_owned();
    for (name, value) in params {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(q);
    }
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap_or_default()).unwrap_or_default();
    let req = http::Request::builder()
        .method(spec.method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(bytes))
        .map_err(|_| Denial::new(DenyCode::InvalidRequest))?;
    let (parts, body) = req.into_parts();
    let params = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let mut call = Call { s: s.clone(), op: op.clone(), params, parts, body: Some(body), org: None, target: None };
    let reply = service(&mut call).await;
    let Call { org, target, .. } = call;
    audited(s, acx, op, spec.action, org, target, reply).await
}

/// The method router of one table row: its service, wrapped.
pub(crate) fn route(spec: &'static RouteSpec, service: Service) -> Option<MethodRouter<AdminState>> {
    let handler = move |State(s): State<AdminState>, op: Operator, acx: AuditCx, req: Request| async move {
        let (mut parts, body) = req.into_parts();
        let params = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &s)
            .await
            .map(|Path(p)| p)
            .unwrap_or_default();
        // Every path parameter of the admin API is a canonical UUID. Anything else names no
        // object: 404 before any service runs, audited with neither org nor target, so a
        // kilobyte segment or a pasted credential is never stored, logged or exported.
        if !params.values().all(|v| gatehouse_core::is_id(v)) {
            return respond(&s, &acx, &op, spec.action, None, None, Err(Denial::new(DenyCode::NotFound))).await;
        }
        let mut call = Call { s, op, params, parts, body: Some(body), org: None, target: None };
        let reply = service(&mut call).await;
        let Call { s, op, org, target, .. } = call;
        respond(&s, &acx, &op, spec.action, org, target, reply).await
    };
    Some(match spec.method {
        "GET" => get(handler),
        "POST" => post(handler),
        "PUT" => put(handler),
        "PATCH" => patch(handler),
        "DELETE" => delete(handler),
        _ => return None,
    })
}
