//! Small answers every admin handler shares.

use gatehouse_core::{Denial, DenyCode, HasDenyCode};

pub fn bad(param: &'static str) -> Denial {
    Denial::new(DenyCode::InvalidRequest).with_param(param)
}

pub fn store_err(e: gatehouse_store::Error) -> Denial {
    tracing::warn!(error = %e, "admin store call failed");
    match e {
        gatehouse_store::Error::Conflict => Denial::new(DenyCode::InvalidRequest).with_param("name"),
        _ => Denial::new(e.deny_code()),
    }
}

/// `false` from an update means the object does not exist (in this org).
pub fn found(hit: bool) -> Result<(), Denial> {
    if hit { Ok(()) } else { Err(Denial::new(DenyCode::NotFound)) }
}

/// The query of a list paged by the last id of the previous page.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// A list's page size: 100 unless asked, at most 1000.
pub fn page_limit(asked: Option<u32>) -> Result<u32, Denial> {
    match asked.unwrap_or(100) {
        l @ 1..=1000 => Ok(l),
        _ => Err(bad("limit")),
    }
}

/// A project of `org` by name; another org's project, like a missing one, is not found.
pub async fn project_named(
    store: &gatehouse_store::Store,
    org: gatehouse_core::OrgId,
    name: &str,
) -> Result<gatehouse_core::ProjectId, Denial> {
    match store.project_by_name(org, name).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(Denial::new(DenyCode::NotFound).with_param("project")),
        Err(e) => Err(store_err(e)),
    }
}
