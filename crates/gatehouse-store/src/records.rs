use gatehouse_core::{KeyId, OrgId, ProjectId};

use crate::Error;

/// The default org and project created at first start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub org: OrgId,
    pub project: ProjectId,
}

/// What is written when a key is created. The secret itself is never stored.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub id: KeyId,
    pub org: OrgId,
    pub project: ProjectId,
    pub name: String,
    pub digest: [u8; 32],
    pub hint: String,
    pub allowed_models: Option<Vec<String>>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A stored key, without its digest (nothing outside the store needs it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRow {
    pub id: KeyId,
    pub org: OrgId,
    pub project: ProjectId,
    pub name: String,
    pub hint: String,
    pub allowed_models: Option<Vec<String>>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminTokenRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// The raw row as both backends return it.
#[derive(sqlx::FromRow)]
pub(crate) struct RawKeyRow {
    id: String,
    org_id: String,
    project_id: String,
    name: String,
    hint: String,
    allowed_models: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<RawKeyRow> for KeyRow {
    type Error = Error;

    fn try_from(r: RawKeyRow) -> Result<Self, Error> {
        let allowed_models = match r.allowed_models {
            None => None,
            Some(s) => {
                Some(serde_json::from_str::<Vec<String>>(&s).map_err(|_| Error::Corrupt("api_keys.allowed_models"))?)
            }
        };
        Ok(KeyRow {
            id: KeyId::parse(&r.id).ok_or(Error::Corrupt("api_keys.id"))?,
            org: OrgId::parse(&r.org_id).ok_or(Error::Corrupt("api_keys.org_id"))?,
            project: ProjectId::parse(&r.project_id).ok_or(Error::Corrupt("api_keys.project_id"))?,
            name: r.name,
            hint: r.hint,
            allowed_models,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RawAdminTokenRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl From<RawAdminTokenRow> for AdminTokenRow {
    fn from(r: RawAdminTokenRow) -> Self {
        AdminTokenRow { id: r.id, name: r.name, created_at: r.created_at, revoked_at: r.revoked_at }
    }
}
