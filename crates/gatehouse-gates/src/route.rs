//! Model name or alias -> the deployment that serves it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_config::{ModelKind, Policy, ProviderKind};
use gatehouse_core::{Denial, DenyCode, GateName, RequestCx, Route, Target};
use gatehouse_providers::chat::{Family, request_for};
use gatehouse_providers::{ApiRequest, Endpoint, mock};

use crate::{Gate, Verdict};

#[derive(Debug)]
pub struct RouteEntry {
    pub route: Arc<Route>,
    pub kind: ModelKind,
    /// The API its provider speaks (the mock: the chain's own, OpenAI's).
    pub family: Family,
}

/// The API family a provider kind speaks.
pub const fn family(kind: ProviderKind) -> Family {
    match kind {
        ProviderKind::Anthropic => Family::Anthropic,
        ProviderKind::Gemini => Family::Gemini,
        ProviderKind::Bedrock => Family::Bedrock,
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible | ProviderKind::AzureOpenAi => Family::OpenAi,
    }
}

/// Built once per config snapshot; lookups are one hash probe.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_name: HashMap<Box<str>, Arc<RouteEntry>>,
    models: Vec<Arc<RouteEntry>>,
}

impl RouteTable {
    /// Names were validated unique by the config crate, so later entries never shadow.
    pub fn build(policy: &Policy) -> RouteTable {
        let mut t = RouteTable::default();
        if policy.mock_enabled {
            let mock = |model| (mock::PROVIDER, Target::Mock, model, Family::OpenAi);
            t.add(mock::CHAT_MODEL, &[], mock(mock::CHAT_MODEL), ModelKind::Chat);
            t.add(mock::EMBEDDING_MODEL, &[], mock(mock::EMBEDDING_MODEL), ModelKind::Embedding);
        }
        for m in &policy.models {
            if let Some(i) = policy.providers.iter().position(|p| p.name == m.provider) {
                let to = (
                    m.provider.as_str(),
                    Target::Upstream(i),
                    m.provider_model.as_str(),
                    family(policy.providers[i].kind),
                );
                t.add(&m.name, &m.aliases, to, m.kind);
            }
        }
        t
    }

    /// `to`: the provider, its place, its name for the model, and the API it speaks.
    fn add(&mut self, name: &str, aliases: &[String], to: (&str, Target, &str, Family), kind: ModelKind) {
        let (provider, target, provider_model, family) = to;
        let entry = Arc::new(RouteEntry {
            route: Arc::new(Route {
                model: name.into(),
                provider: provider.into(),
                target,
                provider_model: provider_model.into(),
            }),
            kind,
            family,
        });
        self.by_name.insert(name.into(), entry.clone());
        for a in aliases {
            self.by_name.insert(a.as_str().into(), entry.clone());
        }
        self.models.push(entry);
    }

    pub fn resolve(&self, name: &str) -> Option<&Arc<RouteEntry>> {
        self.by_name.get(name)
    }

    /// Whether `name` is a model served here by its canonical name (not an alias).
    pub fn serves(&self, name: &str) -> bool {
        self.resolve(name).is_some_and(|e| &*e.route.model == name)
    }

    /// Every canonical model, in config order.
    pub fn models(&self) -> &[Arc<RouteEntry>] {
        &self.models
    }
}

pub struct RouteGate {
    pub table: Arc<RouteTable>,
}

fn serves(kind: ModelKind, endpoint: Endpoint) -> bool {
    matches!(
        (kind, endpoint),
        (ModelKind::Chat, Endpoint::ChatCompletions) | (ModelKind::Embedding, Endpoint::Embeddings)
    )
}

impl Gate for RouteGate {
    type Pass = ();
    const NAME: GateName = GateName::Route;

    async fn check(&self, cx: &mut RequestCx, req: &mut ApiRequest) -> Verdict {
        match self.table.resolve(&req.model) {
            // A model of the wrong kind for this endpoint does not exist *here*.
            Some(e) if serves(e.kind, req.endpoint) => {
                // a provider of another API family gets the request in its own format (and a
                // caller of another family's own fields go back on it), written here so what the
                // provider cannot honour is refused before anything is reserved or spent
                if e.family != Family::OpenAi || req.origin.is_some() {
                    match request_for(req.body(), req.origin.as_deref(), e.family, &e.route.provider_model) {
                        Ok(body) => req.translated = Some(Bytes::from(serde_json::to_vec(&body).unwrap_or_default())),
                        Err(err) => return Verdict::Deny(err.denial()),
                    }
                }
                cx.route = Some(e.route.clone());
                Verdict::Pass(())
            }
            _ => Verdict::Deny(Denial::new(DenyCode::ModelNotFound).with_param("model")),
        }
    }
}
