//! May this principal use this endpoint (token scopes) and this model? Runs before routing
//! so that a caller learns nothing about deployments it may not use; a forbidden model
//! answers exactly like a missing one.

use std::sync::Arc;

use gatehouse_core::{Denial, DenyCode, GateName, RequestCx};
use gatehouse_providers::ApiRequest;

use crate::route::RouteTable;
use crate::{Gate, Verdict};

pub struct AuthorizeGate {
    pub table: Arc<RouteTable>,
}

impl AuthorizeGate {
    /// Whether a principal may see a model by canonical name (also used by `/v1/models`).
    pub fn may_use(cx: &RequestCx, canonical: &str) -> bool {
        cx.principal.as_ref().is_some_and(|p| p.may_use_model(canonical))
    }
}

impl Gate for AuthorizeGate {
    type Pass = ();
    const NAME: GateName = GateName::Authorize;

    async fn check(&self, cx: &mut RequestCx, req: &mut ApiRequest) -> Verdict {
        let Some(p) = &cx.principal else {
            // Unreachable through chain.rs; fail closed if a future caller forgets authenticate.
            return Verdict::Deny(Denial::new(DenyCode::MissingCredentials));
        };
        // Token scopes first: a token without this endpoint's scope learns nothing else.
        if !p.may(req.endpoint.action()) {
            return Verdict::Deny(Denial::new(DenyCode::PermissionDenied));
        }
        // Allow-lists hold canonical names, so an alias cannot sneak past them. An unknown
        // model passes here and is refused by the route gate with the same answer.
        match self.table.resolve(&req.model) {
            Some(e) if !Self::may_use(cx, &e.route.model) => {
                Verdict::Deny(Denial::new(DenyCode::ModelNotFound).with_param("model"))
            }
            _ => Verdict::Pass(()),
        }
    }
}
