//! Users (people and service accounts) and their membership of organizations, each with one
//! role. Membership queries are scoped by org: a user of another org is not found.

use gatehouse_core::{OrgId, UserId};

use crate::{Error, Store, now_ms};

/// A member of an org as the control plane shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    pub user: UserId,
    pub email: String,
    pub name: String,
    /// `human` or `service`.
    pub kind: String,
    /// The role name as stored; the control plane parses it.
    pub role: String,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct RawMemberRow {
    id: String,
    email: String,
    name: String,
    kind: String,
    role: String,
    created_at: i64,
}

impl TryFrom<RawMemberRow> for MemberRow {
    type Error = Error;

    fn try_from(r: RawMemberRow) -> Result<Self, Error> {
        Ok(MemberRow {
            user: UserId::parse(&r.id).ok_or(Error::Corrupt("users.id"))?,
            email: r.email,
            name: r.name,
            kind: r.kind,
            role: r.role,
            created_at: r.created_at,
        })
    }
}

impl Store {
    /// The user with this email, created if missing (emails are unique across the gateway).
    pub async fn ensure_user(&self, email: &str, name: &str, kind: &str) -> Result<UserId, Error> {
        let id = UserId::generate().to_string();
        execute!(self,
            "INSERT INTO users (id, email, name, kind, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING";
            &id, email, name, kind, now_ms()
        )?;
        let id: String = fetch!(self, query_scalar, fetch_one, "SELECT id FROM users WHERE email = $1"; email)?;
        UserId::parse(&id).ok_or(Error::Corrupt("users.id"))
    }

    /// Grants (or changes) a user's role in an org. Their console sessions in the org that
    /// hold another role end with it: a new role takes a new sign-in.
    pub async fn set_membership(&self, org: OrgId, user: UserId, role: &str) -> Result<(), Error> {
        let now = now_ms();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
            )
            .bind(org.to_string())
            .bind(user.to_string())
            .bind(role)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE console_sessions SET revoked_at = $1 \
                 WHERE org_id = $2 AND user_id = $3 AND role <> $4 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(org.to_string())
            .bind(user.to_string())
            .bind(role)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(())
        })?;
        Ok(())
    }

    pub async fn member(&self, org: OrgId, user: UserId) -> Result<Option<MemberRow>, Error> {
        let row: Option<RawMemberRow> = fetch!(self, query_as, fetch_optional,
            "SELECT u.id, u.email, u.name, u.kind, m.role, m.created_at FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND m.user_id = $2";
            org.to_string(), user.to_string()
        )?;
        row.map(MemberRow::try_from).transpose()
    }

    /// The member of `org` with this email address, compared without regard to ASCII case
    /// (providers differ in how they spell an address; emails are unique across the gateway).
    pub async fn member_by_email(&self, org: OrgId, email: &str) -> Result<Option<MemberRow>, Error> {
        let row: Option<RawMemberRow> = fetch!(self, query_as, fetch_optional,
            "SELECT u.id, u.email, u.name, u.kind, m.role, m.created_at FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND lower(u.email) = lower($2) ORDER BY u.id LIMIT 1";
            org.to_string(), email
        )?;
        row.map(MemberRow::try_from).transpose()
    }

    /// Members by user id, after `after` when given, at most `limit`.
    pub async fn list_members(&self, org: OrgId, after: Option<UserId>, limit: u32) -> Result<Vec<MemberRow>, Error> {
        let rows: Vec<RawMemberRow> = fetch!(self, query_as, fetch_all,
            "SELECT u.id, u.email, u.name, u.kind, m.role, m.created_at FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND ($2 IS NULL OR u.id > $2) ORDER BY u.id LIMIT $3";
            org.to_string(), after.map(|a| a.to_string()), i64::from(limit)
        )?;
        rows.into_iter().map(MemberRow::try_from).collect()
    }

    /// Removes a user from an org (and its projects) and revokes the admin tokens and console
    /// sessions that acted for them there.
    pub async fn remove_membership(&self, org: OrgId, user: UserId) -> Result<bool, Error> {
        let now = now_ms();
        let n = on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let n = sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(org.to_string())
                .bind(user.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            for sql in [
                "UPDATE admin_tokens SET revoked_at = $1 WHERE org_id = $2 AND user_id = $3 AND revoked_at IS NULL",
                "UPDATE console_sessions SET revoked_at = $1 WHERE org_id = $2 AND user_id = $3 AND revoked_at IS NULL",
            ] {
                sqlx::query(sql).bind(now).bind(org.to_string()).bind(user.to_string()).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(n)
        })?;
        Ok(n > 0)
    }
}

impl Store {
    /// Adds an org member to a project of that org. False if the project is not in the org or
    /// the user is not a member of it.
    pub async fn add_project_member(
        &self,
        org: OrgId,
        project: gatehouse_core::ProjectId,
        user: UserId,
    ) -> Result<bool, Error> {
        let n = execute!(self,
            "INSERT INTO project_members (project_id, user_id, org_id, created_at) \
             SELECT p.id, m.user_id, p.org_id, $4 FROM projects p JOIN memberships m ON m.org_id = p.org_id \
             WHERE p.org_id = $1 AND p.id = $2 AND m.user_id = $3 \
             ON CONFLICT (project_id, user_id) DO NOTHING";
            org.to_string(), project.to_string(), user.to_string(), now_ms()
        )?;
        Ok(n > 0 || self.is_project_member(org, project, user).await?)
    }

    pub async fn is_project_member(
        &self,
        org: OrgId,
        project: gatehouse_core::ProjectId,
        user: UserId,
    ) -> Result<bool, Error> {
        let n: i64 = fetch!(self, query_scalar, fetch_one,
            "SELECT COUNT(*) FROM project_members WHERE org_id = $1 AND project_id = $2 AND user_id = $3";
            org.to_string(), project.to_string(), user.to_string()
        )?;
        Ok(n > 0)
    }
}

impl Store {
    /// Admin tokens (never their digests), newest first; `org = None` lists every token.
    /// Admin tokens of an org (all: `None`), newest first (ids are time-ordered), older than
    /// `before` when given, at most `limit`.
    pub async fn list_admin_tokens(
        &self,
        org: Option<OrgId>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<crate::AdminTokenRow>, Error> {
        let rows: Vec<crate::records::RawAdminTokenRow> = fetch!(self, query_as, fetch_all,
            "SELECT id, name, created_at, revoked_at, role, org_id, user_id, last_used_at FROM admin_tokens \
             WHERE ($1 IS NULL OR org_id = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3";
            org.map(|o| o.to_string()), before, i64::from(limit)
        )?;
        rows.into_iter().map(crate::AdminTokenRow::try_from).collect()
    }

    pub async fn admin_token(&self, id: &str) -> Result<Option<crate::AdminTokenRow>, Error> {
        let row: Option<crate::records::RawAdminTokenRow> = fetch!(self, query_as, fetch_optional,
            "SELECT id, name, created_at, revoked_at, role, org_id, user_id, last_used_at FROM admin_tokens WHERE id = $1";
            id
        )?;
        row.map(crate::AdminTokenRow::try_from).transpose()
    }

    /// Revokes an admin token; false if it does not exist or was already revoked.
    pub async fn revoke_admin_token(&self, id: &str) -> Result<bool, Error> {
        let n = execute!(self,
            "UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
            now_ms(), id
        )?;
        Ok(n > 0)
    }
}

impl Store {
    /// Renames a user, if they are a member of `org` (an org admin edits only its own people).
    pub async fn rename_member(&self, org: OrgId, user: UserId, name: &str) -> Result<bool, Error> {
        let n = execute!(self,
            "UPDATE users SET name = $1 WHERE id = $2 AND EXISTS (SELECT 1 FROM memberships m WHERE m.org_id = $3 AND m.user_id = $2)";
            name, user.to_string(), org.to_string()
        )?;
        Ok(n > 0)
    }
}
