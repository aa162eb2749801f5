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
    /// The member who owns the key, when a member minted it for themselves.
    pub user: Option<gatehouse_core::UserId>,
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
    /// The key's org or project is disabled: the key does not work until it is re-enabled.
    pub scope_disabled: bool,
    /// The project's model allow-list (`None`: every model); a key never reaches past it.
    pub project_models: Option<Vec<String>>,
    /// The member who owns the key, when a member minted it.
    pub user: Option<gatehouse_core::UserId>,
    /// Requests per minute for each key of the project (`default_limits.rpm`).
    pub project_rpm: Option<u32>,
    /// Tokens per minute for each key of the project (`default_limits.tpm`).
    pub project_tpm: Option<u64>,
    /// Browser origins the project's data-plane answers may be read from (CORS).
    pub project_cors: Option<Vec<String>>,
    /// When the key last authenticated a request, as last flushed (each replica writes
    /// behind, every few seconds), in ms since the epoch.
    pub last_used_at: Option<i64>,
}

impl KeyRow {
    /// Whether the key may authenticate right now (expiry is checked separately, per request).
    pub fn is_usable(&self) -> bool {
        self.revoked_at.is_none() && !self.scope_disabled
    }

    /// The models this key may use: its own list narrowed by its project's.
    pub fn effective_models(&self) -> Option<Vec<String>> {
        match (&self.allowed_models, &self.project_models) {
            (None, None) => None,
            (Some(k), None) => Some(k.clone()),
            (None, Some(p)) => Some(p.clone()),
            (Some(k), Some(p)) => Some(k.iter().filter(|m| p.contains(m)).cloned().collect()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminTokenRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The role name as stored; the control plane parses it (an unknown role is refused).
    pub role: String,
    pub org: Option<OrgId>,
    /// The member the token acts for, if any.
    pub user: Option<gatehouse_core::UserId>,
    /// When it last authenticated a call (to the minute); `None`: never since tracked.
    pub last_used_at: Option<i64>,
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
    org_disabled_at: Option<i64>,
    project_disabled_at: Option<i64>,
    project_models: Option<String>,
    user_id: Option<String>,
    project_limits: Option<String>,
    project_cors: Option<String>,
    last_used_at: Option<i64>,
}

impl TryFrom<RawKeyRow> for KeyRow {
    type Error = Error;

    fn try_from(r: RawKeyRow) -> Result<Self, Error> {
        let limits: Option<serde_json::Value> = json_column(r.project_limits, "projects.default_limits")?;
        let allowed_models = json_column(r.allowed_models, "api_keys.allowed_models")?;
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
            scope_disabled: r.org_disabled_at.is_some() || r.project_disabled_at.is_some(),
            project_models: json_column(r.project_models, "projects.allowed_models")?,
            user: r
                .user_id
                .map(|u| gatehouse_core::UserId::parse(&u).ok_or(Error::Corrupt("api_keys.user_id")))
                .transpose()?,
            project_rpm: limits
                .as_ref()
                .and_then(|v| v.get("rpm"))
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            project_tpm: limits.as_ref().and_then(|v| v.get("tpm")).and_then(serde_json::Value::as_u64),
            project_cors: json_column(r.project_cors, "projects.cors_origins")?,
            last_used_at: r.last_used_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RawAdminTokenRow {
    id: String,
    name: String,
    created_at: i64,
    revoked_at: Option<i64>,
    role: String,
    org_id: Option<String>,
    user_id: Option<String>,
    last_used_at: Option<i64>,
}

impl TryFrom<RawAdminTokenRow> for AdminTokenRow {
    type Error = Error;

    fn try_from(r: RawAdminTokenRow) -> Result<Self, Error> {
        let org = r.org_id.map(|o| OrgId::parse(&o).ok_or(Error::Corrupt("admin_tokens.org_id"))).transpose()?;
        Ok(AdminTokenRow {
            id: r.id,
            name: r.name,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            role: r.role,
            org,
            user: r
                .user_id
                .map(|u| gatehouse_core::UserId::parse(&u).ok_or(Error::Corrupt("admin_tokens.user_id")))
                .transpose()?,
            last_used_at: r.last_used_at,
        })
    }
}

/// An organization as the control plane shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgRow {
    pub id: OrgId,
    pub name: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct RawOrgRow {
    id: String,
    name: String,
    created_at: i64,
    disabled_at: Option<i64>,
}

impl TryFrom<RawOrgRow> for OrgRow {
    type Error = Error;

    fn try_from(r: RawOrgRow) -> Result<Self, Error> {
        Ok(OrgRow {
            id: OrgId::parse(&r.id).ok_or(Error::Corrupt("organizations.id"))?,
            name: r.name,
            created_at: r.created_at,
            disabled_at: r.disabled_at,
        })
    }
}

/// What an operator sets on a project.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProjectSettings {
    pub name: String,
    /// `None`: every model the gateway serves.
    pub allowed_models: Option<Vec<String>>,
    /// Default limits for each of the project's keys, as validated by the control plane;
    /// enforced by the limits gate.
    pub default_limits: Option<serde_json::Value>,
    /// Browser origins allowed to read the data plane's answers to this project's credentials
    /// (`None`: none).
    pub cors_origins: Option<Vec<String>>,
}

/// A project, with its model allow-list (`None`: every model).
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectRow {
    pub id: ProjectId,
    pub org: OrgId,
    pub name: String,
    pub allowed_models: Option<Vec<String>>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub default_limits: Option<serde_json::Value>,
    pub cors_origins: Option<Vec<String>>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct RawProjectRow {
    id: String,
    org_id: String,
    name: String,
    allowed_models: Option<String>,
    created_at: i64,
    disabled_at: Option<i64>,
    default_limits: Option<String>,
    cors_origins: Option<String>,
}

impl TryFrom<RawProjectRow> for ProjectRow {
    type Error = Error;

    fn try_from(r: RawProjectRow) -> Result<Self, Error> {
        let allowed_models = json_column(r.allowed_models, "projects.allowed_models")?;
        Ok(ProjectRow {
            id: ProjectId::parse(&r.id).ok_or(Error::Corrupt("projects.id"))?,
            org: OrgId::parse(&r.org_id).ok_or(Error::Corrupt("projects.org_id"))?,
            name: r.name,
            allowed_models,
            created_at: r.created_at,
            disabled_at: r.disabled_at,
            default_limits: json_column(r.default_limits, "projects.default_limits")?,
            cors_origins: json_column(r.cors_origins, "projects.cors_origins")?,
        })
    }
}

/// A nullable column holding JSON; unreadable JSON is corruption of that column (named).
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    text: Option<String>,
    column: &'static str,
) -> Result<Option<T>, Error> {
    text.map(|s| serde_json::from_str(&s).map_err(|_| Error::Corrupt(column))).transpose()
}
