//! THE order of the request path. Read this file top to bottom to know what runs before what;
//! `tests::order_is_pinned` fails if it changes.
//!
//!   [audit trail accepting] -> authenticate -> parse -> authorize -> guardrails(in) -> route
//!     -> limits -> cache -> [provider, in the proxy] -> guardrails(out) -> meter & audit

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_core::{Denial, DenyCode, GateName, GateOutcome, RequestCx};
use gatehouse_providers::{ApiRequest, Endpoint, RequestBounds};

use crate::authenticate::{AuthenticateGate, Credentials};
use crate::authorize::AuthorizeGate;
use crate::cache::CacheGate;
use crate::guardrails::{GuardrailsInGate, GuardrailsOutGate, Policies, Session};
use crate::ledger::Hold;
use crate::limits::LimitsGate;
use crate::meter::{self, AuditHook, Finished};
use crate::route::{RouteGate, RouteTable};
use crate::{CachedResponse, Gate, Verdict};

/// Every gate of one config snapshot. Built at start and on each reload.
pub struct Gates {
    pub authenticate: AuthenticateGate,
    pub authorize: AuthorizeGate,
    pub guardrails_in: GuardrailsInGate,
    pub route: RouteGate,
    pub limits: LimitsGate,
    pub cache: CacheGate,
    pub guardrails_out: GuardrailsOutGate,
    pub bounds: RequestBounds,
    pub table: Arc<RouteTable>,
    pub audit: AuditHook,
}

impl Gates {
    /// The gates for one snapshot: the key verifier is shared across snapshots (its cache
    /// survives reloads); the route table and bounds come from the snapshot's policy.
    pub fn new(
        creds: Credentials,
        policies: Arc<Policies>,
        limits: LimitsGate,
        table: Arc<RouteTable>,
        bounds: RequestBounds,
        audit: AuditHook,
    ) -> Gates {
        Gates {
            authenticate: AuthenticateGate { creds },
            authorize: AuthorizeGate { table: table.clone() },
            guardrails_in: GuardrailsInGate { policies },
            route: RouteGate { table: table.clone() },
            limits,
            cache: CacheGate,
            guardrails_out: GuardrailsOutGate,
            bounds,
            table,
            audit,
        }
    }
}

/// Why admission stopped early.
#[derive(Debug)]
pub enum Stop {
    Deny(Denial),
    Serve(CachedResponse),
}

impl From<Denial> for Stop {
    fn from(d: Denial) -> Self {
        Stop::Deny(d)
    }
}

/// A request that passed every gate and may go to its provider.
pub struct Admitted {
    pub request: ApiRequest,
    /// The guardrail state the answer is checked with (same placeholders, same report).
    pub guard: Session,
    /// The budget reservations, settled to the real use when the request ends.
    pub hold: Hold,
}

async fn run<G: Gate>(gate: &G, cx: &mut RequestCx, req: &mut ApiRequest) -> Result<(), Stop> {
    match gate.check(cx, req).await {
        Verdict::Pass => {
            cx.record(G::NAME, GateOutcome::Pass);
            Ok(())
        }
        Verdict::Deny(d) => {
            cx.record(G::NAME, GateOutcome::Deny(d.code));
            Err(Stop::Deny(d))
        }
        Verdict::Serve(r) => {
            cx.record(G::NAME, GateOutcome::Serve);
            Err(Stop::Serve(r))
        }
    }
}

fn parse(g: &Gates, cx: &mut RequestCx, endpoint: Endpoint, body: &[u8]) -> Result<ApiRequest, Stop> {
    match ApiRequest::parse(endpoint, body, g.bounds) {
        Ok(req) => {
            cx.requested_model = Some(req.model.as_str().into());
            cx.record(GateName::Parse, GateOutcome::Pass);
            Ok(req)
        }
        Err(e) => {
            use gatehouse_core::HasDenyCode;
            let mut d = Denial::new(e.deny_code());
            if let Some(p) = e.param() {
                d = d.with_param(p);
            }
            cx.record(GateName::Parse, GateOutcome::Deny(d.code));
            Err(Stop::Deny(d))
        }
    }
}

/// Everything that must hold before a provider sees the request.
pub async fn admit<B>(g: &Gates, cx: &mut RequestCx, endpoint: Endpoint, body: B) -> Result<Admitted, Stop>
where
    B: Future<Output = Result<Bytes, DenyCode>>,
{
    // A deployment that requires an audit trail (fail-closed) serves nothing it cannot record.
    audit_accepting(g, cx)?;
    // Identity first, from headers only: an anonymous caller learns nothing from the body's
    // validation, and every later gate keys on tenant, project and key.
    g.authenticate.check(cx).await?;
    // The body is read (size-capped by the transport) only for an authenticated caller, so
    // anonymous traffic cannot make the gateway buffer anything.
    let body = body.await.map_err(|code| refuse(cx, code))?;
    // Bounded parse (depth, counts) before any gate walks the body.
    let mut req = parse(g, cx, endpoint, &body)?;
    // Before routing, so a caller without rights learns nothing about deployments.
    run(&g.authorize, cx, &mut req).await?;
    // The prompt is checked before a cache or provider can see it: a blocked prompt is never
    // stored, a redacted one is stored redacted.
    let guard = g.guardrails_in.check(cx, &mut req).await?;
    // Resolve model -> deployment; limits and budgets are priced per resolved model.
    run(&g.route, cx, &mut req).await?;
    // Rates, then the worst case reserved on every budget; the hold settles it later.
    let hold = match g.limits.check(cx, &req).await {
        Ok(h) => {
            cx.record(LimitsGate::NAME, GateOutcome::Pass);
            h
        }
        Err(d) => {
            cx.record(LimitsGate::NAME, GateOutcome::Deny(d.code));
            return Err(Stop::Deny(d));
        }
    };
    // Last, so a hit is only served to a request that passed every check above (a hit drops
    // the hold: nothing reached a provider).
    run(&g.cache, cx, &mut req).await?;
    Ok(Admitted { request: req, guard, hold })
}

/// `GET /v1/models`: identity only; the listing itself is filtered by the allow-list.
pub async fn admit_listing(g: &Gates, cx: &mut RequestCx) -> Result<(), Denial> {
    audit_accepting(g, cx).map_err(|_| Denial::new(DenyCode::Unavailable))?;
    g.authenticate.check(cx).await?;
    if cx.principal.as_ref().is_some_and(|p| !p.may(LISTING_ACTION)) {
        cx.record(GateName::Authorize, GateOutcome::Deny(DenyCode::PermissionDenied));
        return Err(Denial::new(DenyCode::PermissionDenied));
    }
    Ok(())
}

/// The scope `GET /v1/models` needs from a capability token.
pub const LISTING_ACTION: &str = "models:read";

fn audit_accepting(g: &Gates, cx: &mut RequestCx) -> Result<(), Stop> {
    if g.audit.accepting() {
        return Ok(());
    }
    cx.record(GateName::Meter, GateOutcome::Deny(DenyCode::Unavailable));
    Err(Stop::Deny(Denial::new(DenyCode::Unavailable)))
}

/// The response side, after the provider answered (or did not): guardrails on what goes
/// back, then meter & audit. Called exactly once per request, also for refusals, cancelled
/// streams and upstream failures.
pub fn finish(audit: &AuditHook, cx: &mut RequestCx, done: Finished) {
    if done.reached_provider && !cx.trail.iter().any(|e| e.gate == GuardrailsOutGate::NAME) {
        cx.record(GuardrailsOutGate::NAME, GateOutcome::Pass);
    }
    cx.record(GateName::Meter, done.code.map_or(GateOutcome::Pass, GateOutcome::Deny));
    meter::record(audit, cx, &done);
}

/// A refusal while reading the body (too large, wrong content type, client went away).
fn refuse(cx: &mut RequestCx, code: DenyCode) -> Denial {
    cx.record(GateName::Parse, GateOutcome::Deny(code));
    Denial::new(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::{KeyId, RequestId};
    use gatehouse_security::{KeyHasher, KeyKind, MasterKey, generate_key};
    use gatehouse_store::{NewKey, Store, now_ms};
    use secrecy::SecretString;

    struct Fixture {
        gates: Gates,
        key: SecretString,
        _dir: tempfile::TempDir,
    }

    async fn fixture(allowed: Option<Vec<String>>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("g.db")).await.unwrap();
        store.migrate().await.unwrap();
        let t = store.ensure_default_tenant().await.unwrap();
        let hasher = Arc::new(KeyHasher::new(&MasterKey::from_bytes([7; 32])));
        let key = generate_key(KeyKind::Api);
        store
            .insert_key(&NewKey {
                id: KeyId::generate(),
                org: t.org,
                project: t.project,
                name: "k".into(),
                digest: hasher.digest(KeyKind::Api, &key).0,
                hint: "h".into(),
                allowed_models: allowed,
                created_at: now_ms(),
                expires_at: None,
                user: None,
            })
            .await
            .unwrap();
        let verifier = Arc::new(crate::authenticate::KeyVerifier::new(store, hasher, 1000));
        let policy = gatehouse_config::Config::default().policy;
        let table = Arc::new(RouteTable::build(&policy));
        let bounds = RequestBounds { max_depth: 16, max_messages: 8, max_embedding_inputs: 8 };
        let creds = crate::authenticate::Credentials { keys: verifier, tokens: None, federated: None };
        let policies = Arc::new(crate::guardrails::Policies::builtin().unwrap());
        let limits = LimitsGate::new(Arc::new(crate::limits::LimitsBackend::local()), &policy);
        let gates = Gates::new(creds, policies, limits, table, bounds, AuditHook::off());
        Fixture { gates, key, _dir: dir }
    }

    async fn body(b: &'static [u8]) -> Result<Bytes, DenyCode> {
        Ok(Bytes::from_static(b))
    }

    const HELLO: &[u8] = br#"{"model":"mock","messages":[{"role":"user","content":"hi"}]}"#;

    fn names(cx: &RequestCx) -> Vec<&'static str> {
        cx.trail_names().collect()
    }

    #[tokio::test]
    async fn order_is_pinned() {
        let f = fixture(None).await;
        let mut cx = RequestCx::new(RequestId::generate(), Some(f.key.clone()));
        let admitted = admit(&f.gates, &mut cx, Endpoint::ChatCompletions, body(HELLO)).await;
        assert!(admitted.is_ok());
        finish(&AuditHook::off(), &mut cx, Finished::served("chat_completions", 200, None));
        assert_eq!(
            names(&cx),
            [
                "authenticate",
                "parse",
                "authorize",
                "guardrails_in",
                "route",
                "limits",
                "cache",
                "guardrails_out",
                "meter"
            ]
        );
        assert_eq!(cx.route.as_ref().unwrap().model.as_ref(), "mock");
        assert!(cx.credential.is_none(), "the credential must not outlive authentication");
    }

    #[tokio::test]
    async fn a_denial_stops_the_chain_where_it_happens() {
        let f = fixture(None).await;
        let mut cx = RequestCx::new(RequestId::generate(), None);
        let r = admit(&f.gates, &mut cx, Endpoint::ChatCompletions, body(HELLO)).await;
        assert!(matches!(r, Err(Stop::Deny(d)) if d.code == DenyCode::MissingCredentials));
        assert_eq!(names(&cx), ["authenticate"]);

        let mut cx = RequestCx::new(RequestId::generate(), Some(f.key.clone()));
        let r = admit(&f.gates, &mut cx, Endpoint::ChatCompletions, body(b"{not json")).await;
        assert!(matches!(r, Err(Stop::Deny(d)) if d.code == DenyCode::InvalidJson));
        assert_eq!(names(&cx), ["authenticate", "parse"]);

        let mut cx = RequestCx::new(RequestId::generate(), Some(f.key.clone()));
        let unknown: &[u8] = br#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#;
        let r = admit(&f.gates, &mut cx, Endpoint::ChatCompletions, body(unknown)).await;
        assert!(matches!(r, Err(Stop::Deny(d)) if d.code == DenyCode::ModelNotFound));
        assert_eq!(names(&cx), ["authenticate", "parse", "authorize", "guardrails_in", "route"]);
    }

    #[tokio::test]
    async fn allow_list_refuses_like_a_missing_model_before_routing() {
        let f = fixture(Some(vec!["mock-embedding".into()])).await;
        let mut cx = RequestCx::new(RequestId::generate(), Some(f.key.clone()));
        let r = admit(&f.gates, &mut cx, Endpoint::ChatCompletions, body(HELLO)).await;
        assert!(matches!(r, Err(Stop::Deny(d)) if d.code == DenyCode::ModelNotFound));
        assert_eq!(names(&cx), ["authenticate", "parse", "authorize"]);
    }

    #[tokio::test]
    async fn wrong_keys_never_touch_the_store_path() {
        let f = fixture(None).await;
        for bad in ["", "sk-123", "gth_short", &generate_key(KeyKind::Admin).expose()] {
            let mut cx = RequestCx::new(RequestId::generate(), Some(SecretString::from(bad.to_owned())));
            let r = admit(&f.gates, &mut cx, Endpoint::ChatCompletions, body(HELLO)).await;
            assert!(matches!(r, Err(Stop::Deny(d)) if d.code == DenyCode::InvalidApiKey), "{bad}");
        }
        // well-formed but unknown
        let mut cx = RequestCx::new(RequestId::generate(), Some(generate_key(KeyKind::Api)));
        let r = admit(&f.gates, &mut cx, Endpoint::ChatCompletions, body(HELLO)).await;
        assert!(matches!(r, Err(Stop::Deny(d)) if d.code == DenyCode::InvalidApiKey));
    }

    trait Expose {
        fn expose(&self) -> String;
    }
    impl Expose for SecretString {
        fn expose(&self) -> String {
            use secrecy::ExposeSecret;
            self.expose_secret().to_owned()
        }
    }
}
