//! Per-tenant routing rules (docs/ROUTING.md, "Tenant routing"): an org or a project may
//! restrict which providers and regions its traffic may use (data residency) and pin a model
//! to one provider. The org's rule and the project's both apply: a deployment must pass each.
//! The route gate keeps only the deployments that pass; when none does, the request is refused
//! (403 `permission_denied`), never sent somewhere else.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use gatehouse_core::{OrgId, ProjectId, Route};
use gatehouse_store::{PolicyTable, ScopedPolicyRow, Store};
use serde::{Deserialize, Serialize};

use crate::credentials::CredentialTable;
use crate::route::RouteTable;

/// A scope's routing rule as the admin API takes and shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSpec {
    /// Only deployments on these providers (configured names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
    /// Only deployments whose provider runs in one of these regions; a provider with no region
    /// configured is in none of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    /// Model (canonical name) -> the one provider that may serve it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, String>,
    /// Only providers the tenant has a stored credential of its own for (its project's or its
    /// org's): never the platform's credentials or the configured ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_credentials_only: bool,
    /// The response cache for this scope: answers kept this many seconds (0: off, also below
    /// an org that turned it on). A project's setting wins over its org's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl_seconds: Option<u32>,
    /// Whether callers' `Cache-Control: no-cache` / `no-store` are honoured (default): `false`
    /// keeps every eligible request on the cache (a cost control). Goes with the TTL it is
    /// set beside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_honours_callers: Option<bool>,
}

/// Most entries in each list of a spec.
const MAX_ENTRIES: usize = 64;

impl RoutingSpec {
    /// Whether every name is one the live route table knows: a typo would silently refuse
    /// everything. Returns the field at fault.
    pub fn check(&self, table: &RouteTable) -> Result<(), &'static str> {
        let deployments = || table.models().iter().flat_map(|e| e.deployments.iter().map(|(r, _)| r));
        let list_ok = |l: &Option<Vec<String>>, known: &dyn Fn(&str) -> bool| {
            l.as_ref().is_none_or(|l| !l.is_empty() && l.len() <= MAX_ENTRIES && l.iter().all(|n| known(n)))
        };
        if !list_ok(&self.providers, &|n| table.has_provider(n)) {
            return Err("providers");
        }
        if !list_ok(&self.regions, &|n| deployments().any(|r| r.region.as_deref() == Some(n))) {
            return Err("regions");
        }
        let pin_ok = |(model, provider): (&String, &String)| {
            table.serves(model)
                && table.resolve(model).is_some_and(|e| e.deployments.iter().any(|(r, _)| &*r.provider == provider))
        };
        if self.pins.len() > MAX_ENTRIES || !self.pins.iter().all(pin_ok) {
            return Err("pins");
        }
        if self.cache_ttl_seconds.is_some_and(|t| t > crate::cache::MAX_TTL_SECONDS) {
            return Err("cache_ttl_seconds");
        }
        Ok(())
    }
}

/// A spec as the route gate reads it.
#[derive(Debug)]
struct Rule {
    providers: Option<Box<[Box<str>]>>,
    regions: Option<Box<[Box<str>]>>,
    pins: HashMap<Box<str>, Box<str>>,
    own_credentials_only: bool,
    cache_ttl: Option<u32>,
    cache_honours_callers: bool,
}

impl Rule {
    fn new(s: RoutingSpec) -> Rule {
        let boxed = |l: Option<Vec<String>>| l.map(|l| l.into_iter().map(String::into_boxed_str).collect());
        Rule {
            providers: boxed(s.providers),
            regions: boxed(s.regions),
            pins: s.pins.into_iter().map(|(m, p)| (m.into_boxed_str(), p.into_boxed_str())).collect(),
            own_credentials_only: s.own_credentials_only,
            cache_ttl: s.cache_ttl_seconds,
            cache_honours_callers: s.cache_honours_callers.unwrap_or(true),
        }
    }

    /// A rule that allows no deployment.
    fn nothing() -> Rule {
        Rule {
            providers: Some(Box::default()),
            regions: None,
            pins: HashMap::new(),
            own_credentials_only: false,
            cache_ttl: None,
            cache_honours_callers: true,
        }
    }

    /// Whether a deployment of `model` on `provider` (in `region`) passes this rule.
    fn allows(&self, model: &str, provider: &str, region: Option<&str>) -> bool {
        let listed = |l: &Option<Box<[Box<str>]>>, v: Option<&str>| {
            l.as_ref().is_none_or(|l| v.is_some_and(|v| l.iter().any(|x| &**x == v)))
        };
        listed(&self.providers, Some(provider))
            && listed(&self.regions, region)
            && self.pins.get(model).is_none_or(|p| &**p == provider)
    }
}

/// Whose stored policy a row is: an org's own, or one of its projects'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    Org(OrgId),
    Project(ProjectId),
}

impl Scope {
    /// The scope of a stored policy row (`None`: ids that do not parse).
    pub(crate) fn of(r: &ScopedPolicyRow) -> Option<Scope> {
        if r.project_id.is_empty() {
            OrgId::parse(&r.org_id).map(Scope::Org)
        } else {
            ProjectId::parse(&r.project_id).map(Scope::Project)
        }
    }
}

/// The rules that apply to one request: its org's and its project's (either may be absent).
pub struct Applying {
    org: Option<Arc<Rule>>,
    project: Option<Arc<Rule>>,
    /// Set when a rule admits only providers the tenant has its own credential for.
    own_credentials: Option<(Arc<CredentialTable>, OrgId, ProjectId)>,
}

impl Applying {
    /// Whether this request may be served by deployment `r`.
    pub fn allows(&self, r: &Route) -> bool {
        let ok = |rule: &Option<Arc<Rule>>| {
            rule.as_ref().is_none_or(|x| x.allows(&r.model, &r.provider, r.region.as_deref()))
        };
        let own =
            || self.own_credentials.as_ref().is_none_or(|(t, org, project)| t.has_own(*org, *project, &r.provider));
        ok(&self.org) && ok(&self.project) && own()
    }
}

/// Every stored routing rule, in memory: a request without one pays one atomic load and an
/// emptiness check, or a hash lookup per scope when some tenant has one. Re-read from the store
/// on a short poll and after each admin write.
#[derive(Default)]
pub struct RoutingRules {
    table: ArcSwap<HashMap<Scope, Arc<Rule>>>,
    reload: tokio::sync::Mutex<()>,
    /// The tenants' stored provider credentials, for rules that admit only their own.
    credentials: Arc<CredentialTable>,
}

impl RoutingRules {
    /// Rules that can see which provider credentials tenants have stored.
    pub fn new(credentials: Arc<CredentialTable>) -> RoutingRules {
        RoutingRules { credentials, ..RoutingRules::default() }
    }

    /// The rules for a request of `org` and `project`, if either has one.
    pub fn applying(&self, org: OrgId, project: ProjectId) -> Option<Applying> {
        let table = self.table.load();
        if table.is_empty() {
            return None;
        }
        let (o, p) = (table.get(&Scope::Org(org)).cloned(), table.get(&Scope::Project(project)).cloned());
        let own_only = [&o, &p].into_iter().flatten().any(|r| r.own_credentials_only);
        let own_credentials = own_only.then(|| (self.credentials.clone(), org, project));
        (o.is_some() || p.is_some()).then_some(Applying { org: o, project: p, own_credentials })
    }

    /// The response cache for `org` and `project`: how long answers are kept and whether
    /// callers' `Cache-Control` is honoured, from the project's rule if it sets a TTL, else the
    /// org's; `None` when off (no TTL, or 0).
    pub fn cache(&self, org: OrgId, project: ProjectId) -> Option<(Duration, bool)> {
        let table = self.table.load();
        if table.is_empty() {
            return None;
        }
        let of = |s: Scope| table.get(&s).and_then(|r| r.cache_ttl.map(|t| (t, r.cache_honours_callers)));
        of(Scope::Project(project))
            .or_else(|| of(Scope::Org(org)))
            .filter(|(t, _)| *t > 0)
            .map(|(t, honour)| (Duration::from_secs(u64::from(t)), honour))
    }

    /// Whether a deployment passes the org's rule and, for a project, the project's too (for
    /// the admin API's view of a scope).
    pub fn allows_scope(
        &self,
        org: OrgId,
        project: Option<ProjectId>,
        model: &str,
        provider: &str,
        region: Option<&str>,
    ) -> bool {
        let table = self.table.load();
        let ok = |s: Scope| table.get(&s).is_none_or(|r| r.allows(model, provider, region));
        ok(Scope::Org(org)) && project.is_none_or(|p| ok(Scope::Project(p)))
    }

    /// Reads every stored rule. One whose spec does not parse (written by a newer version, say)
    /// refuses every deployment to its scope until it is rewritten (an error is logged): a
    /// restriction this replica cannot read must not become no restriction. A rule naming a
    /// provider the config no longer has simply matches no deployment of it (it refuses, never
    /// widens).
    pub async fn load(&self, store: &Store) -> Result<(), gatehouse_store::Error> {
        let _one_at_a_time = self.reload.lock().await;
        let rows = store.all_scoped_policies(PolicyTable::Routing).await?;
        let mut table = HashMap::with_capacity(rows.len());
        for r in rows {
            match (Scope::of(&r), serde_json::from_str::<RoutingSpec>(&r.spec)) {
                (Some(scope), Ok(spec)) => {
                    table.insert(scope, Arc::new(Rule::new(spec)));
                }
                (Some(scope), Err(_)) => {
                    tracing::error!(org = %r.org_id, project = %r.project_id, "stored routing policy unreadable; its scope is refused every deployment until it is rewritten");
                    table.insert(scope, Arc::new(Rule::nothing()));
                }
                (None, _) => {
                    tracing::error!(org = %r.org_id, project = %r.project_id, "stored routing policy names no valid scope; skipped")
                }
            }
        }
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// Keeps this replica's rules in step with the store.
    pub async fn run_poller(self: Arc<Self>, store: Store, every: Duration) {
        gatehouse_store::poll::reload("routing policies", every, || self.load(&store)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::{Breaker, Retries, Target};

    fn deployment(provider: &str, region: Option<&str>) -> Route {
        let breaker = Arc::new(Breaker::new(5, 1_000));
        let retries = Arc::new(Retries::new(0, 0.0));
        let route = Route::new("m".into(), provider.into(), Target::Upstream(0), "m".into(), breaker, retries);
        Route { region: region.map(Arc::from), ..route }
    }

    #[tokio::test]
    async fn rules_combine_and_an_unreadable_one_refuses_instead_of_lifting_the_restriction() {
        let t = gatehouse_testkit::stores::sqlite().await;
        let org = t.store.create_org("rules").await.unwrap_or_else(|e| panic!("{e}"));
        let project = ProjectId::generate();
        let rules = RoutingRules::default();
        let (eu, us, nowhere) = (deployment("a", Some("eu")), deployment("b", Some("us")), deployment("c", None));
        assert!(rules.applying(org, project).is_none(), "no rules: nothing to check");

        let put = |spec: &'static str, project: Option<ProjectId>| {
            let store = t.store.clone();
            async move { store.put_scoped_policy(PolicyTable::Routing, org, project, spec, "test").await }
        };
        put(r#"{"regions": ["eu"]}"#, None).await.unwrap_or_else(|e| panic!("{e}"));
        put(r#"{"pins": {"m": "b"}}"#, Some(project)).await.unwrap_or_else(|e| panic!("{e}"));
        rules.load(&t.store).await.unwrap_or_else(|e| panic!("{e}"));
        let a = rules.applying(org, project).unwrap_or_else(|| panic!("rules apply"));
        assert!(!a.allows(&eu), "the project pins m to b");
        assert!(!a.allows(&us), "the org keeps to the EU");
        assert!(!a.allows(&nowhere), "a provider with no region is in none");
        let other_project = rules.applying(org, ProjectId::generate()).unwrap_or_else(|| panic!("the org's rule"));
        assert!(other_project.allows(&eu) && !other_project.allows(&us));

        // a rule this replica cannot read (a newer version's field) refuses its scope everything
        put(r#"{"regions": ["eu"], "zones": ["eu-1"]}"#, None).await.unwrap_or_else(|e| panic!("{e}"));
        rules.load(&t.store).await.unwrap_or_else(|e| panic!("{e}"));
        let a = rules.applying(org, ProjectId::generate()).unwrap_or_else(|| panic!("still applies"));
        assert!(!a.allows(&eu) && !a.allows(&us) && !a.allows(&nowhere));
    }
}
