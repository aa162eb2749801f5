//! `/admin/v1/credentials`: provider credentials stored sealed per tenant (docs/SECURITY.md,
//! "Provider credentials"). Write-only: a value goes in and is never returned; reads show a
//! fingerprint and metadata. Platform credentials (`"platform": true`) are platform admins';
//! an org's and its projects' are its admins'.

use gatehouse_core::{Denial, DenyCode, OrgId};
use gatehouse_store::CredentialRow;
use http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::rbac::{Permission, check};
use crate::reply::{bad, store_err};
use crate::service::{Call, Pending};

/// Longest overlap a rotation may keep the old version serving: a week.
const MAX_OVERLAP_SECS: u64 = 7 * 86_400;
/// Longest value accepted (provider keys and tokens are far shorter).
const MAX_SECRET: usize = 8192;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCredential {
    provider: String,
    secret: String,
    org: Option<String>,
    project: Option<String>,
    #[serde(default)]
    platform: bool,
    overlap_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Addressed {
    org: Option<String>,
    #[serde(default)]
    platform: bool,
}

fn view(r: &CredentialRow) -> Value {
    let opt = |s: &str| if s.is_empty() { Value::Null } else { json!(s) };
    json!({
        "id": r.id, "provider": r.provider, "org_id": opt(&r.org_id), "project_id": opt(&r.project_id),
        "version": r.version, "hint": r.hint, "created_at": r.created_at, "created_by": r.created_by,
        "retire_at": r.retire_at,
    })
}

/// The tenant a request addresses: the platform (platform admins only) or an org for which the
/// operator holds `perm` (by id, as the other tenant routes take it, or by name, as keys take it).
pub(crate) async fn tenant(
    c: &mut Call,
    org: Option<&str>,
    platform: bool,
    perm: Permission,
) -> Result<Option<OrgId>, Denial> {
    if platform {
        if org.is_some() {
            return Err(bad("org"));
        }
        check(&c.op, Permission::OrgCreate, None)?;
        return Ok(None);
    }
    match org.and_then(OrgId::parse) {
        Some(id) => {
            check(&c.op, perm, Some(id))?;
            c.s.store.org(id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
            c.org = Some(id);
            Ok(Some(id))
        }
        None => Ok(Some(c.target_org(org, perm).await?)),
    }
}

pub fn create(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let b: NewCredential = c.body().await?;
        let org = tenant(c, b.org.as_deref(), b.platform, Permission::OrgUpdate).await?;
        let project = match (&b.project, org) {
            (None, _) => None,
            (Some(_), None) => return Err(bad("project")),
            (Some(p), Some(o)) => {
                let (_, p) =
                    crate::policies::scope(&c.s, &c.op, &o.to_string(), Some(p), Permission::ProjectWrite).await?;
                p
            }
        };
        if !c.s.control.serves_provider(&b.provider) {
            return Err(bad("provider"));
        }
        if b.secret.is_empty() || b.secret.len() > MAX_SECRET || b.secret.chars().any(char::is_control) {
            return Err(bad("secret"));
        }
        // a SigV4 provider's credential is an AWS key pair: a typo is refused here, not by AWS
        if c.s.control.signs_sigv4(&b.provider) && gatehouse_providers::aws_credential(&b.secret).is_none() {
            return Err(bad("secret"));
        }
        let overlap = b.overlap_seconds.unwrap_or(0);
        if overlap > MAX_OVERLAP_SECS {
            return Err(bad("overlap_seconds"));
        }
        let secret = SecretString::from(b.secret);
        let overlap_ms = i64::try_from(overlap * 1000).unwrap_or(i64::MAX);
        let actor = c.op.actor().render();
        let row = c.s.control.store_credential(org, project, &b.provider, &secret, &actor, overlap_ms).await.map_err(
            |e| {
                tracing::warn!(error = %e, "storing a provider credential failed");
                Denial::new(DenyCode::Unavailable)
            },
        )?;
        c.target = Some(row.id.clone());
        Ok((StatusCode::CREATED, view(&row)))
    })
}

pub fn list(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let q: Addressed = c.query()?;
        let org = tenant(c, q.org.as_deref(), q.platform, Permission::OrgUpdate).await?;
        let rows = c.s.store.credentials(org).await.map_err(store_err)?;
        let data: Vec<Value> = rows.iter().map(view).collect();
        Ok((StatusCode::OK, json!({"object": "list", "data": data})))
    })
}

pub fn delete(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        c.target_path("id");
        let q: Addressed = c.query()?;
        let org = tenant(c, q.org.as_deref(), q.platform, Permission::OrgUpdate).await?;
        let id = c.path("id").to_owned();
        if !c.s.store.delete_credential(org, &id).await.map_err(store_err)? {
            return Err(Denial::new(DenyCode::NotFound));
        }
        Ok((StatusCode::OK, json!({"id": id, "deleted": true})))
    })
}
