//! `GET /admin/v1/deployments`: every configured deployment of every model and its circuit
//! breaker's state on this replica (docs/ROUTING.md). Platform admins only: provider health
//! is the platform's, not a tenant's.

use http::StatusCode;
use serde_json::{Value, json};

use crate::rbac::{Permission, check};
use crate::service::{Call, Pending};

pub fn list(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        check(&c.op, Permission::OrgCreate, None)?;
        let data: Vec<Value> =
            c.s.control
                .deployments()
                .into_iter()
                .map(|d| {
                    json!({
                        "model": d.model,
                        "provider": d.provider,
                        "provider_model": d.provider_model,
                        "region": d.region,
                        "priority": d.priority,
                        "weight": d.weight,
                        "breaker": {"state": d.breaker, "failures": d.failures, "open_until": d.open_until},
                    })
                })
                .collect();
        Ok((StatusCode::OK, json!({"object": "list", "data": data})))
    })
}
