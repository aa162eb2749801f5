//! Console sessions. The cookie's secret is never stored, only its keyed digest; a session is
//! found by that digest and answers only while it is unrevoked, within its absolute and idle
//! deadlines, and (for one that came from an admin token) while that token is unrevoked: one
//! query decides all of it.

use gatehouse_core::{OrgId, UserId};

use crate::{Error, Store};

/// A session to create.
#[derive(Clone, Debug)]
pub struct NewSession<'a> {
    pub id: &'a str,
    pub digest: &'a [u8; 32],
    pub csrf: &'a str,
    /// How the operator signed in: `admin_token` or `oidc` (later `passkey`).
    pub method: &'a str,
    /// Who acts: the admin token's id, or `oidc:<issuer>:<subject>`.
    pub actor: &'a str,
    /// The admin token the session stands for, if it came from one.
    pub token_id: Option<&'a str>,
    pub role: &'a str,
    pub org: Option<OrgId>,
    pub user: Option<UserId>,
    pub source: Option<String>,
    pub now: i64,
    pub expires_at: i64,
}

/// A session as the console sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub csrf: String,
    pub method: String,
    pub actor: String,
    pub token_id: Option<String>,
    pub role: String,
    pub org: Option<OrgId>,
    pub user: Option<UserId>,
    pub source: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// When the operator last proved themselves again with a passkey.
    pub verified_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct RawSessionRow {
    id: String,
    csrf: String,
    method: String,
    actor: String,
    token_id: Option<String>,
    role: String,
    org_id: Option<String>,
    user_id: Option<String>,
    source: Option<String>,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    verified_at: Option<i64>,
}

impl TryFrom<RawSessionRow> for SessionRow {
    type Error = Error;

    fn try_from(r: RawSessionRow) -> Result<Self, Error> {
        let org = r.org_id.map(|o| OrgId::parse(&o).ok_or(Error::Corrupt("console_sessions.org_id"))).transpose()?;
        let user =
            r.user_id.map(|u| UserId::parse(&u).ok_or(Error::Corrupt("console_sessions.user_id"))).transpose()?;
        Ok(SessionRow {
            id: r.id,
            csrf: r.csrf,
            method: r.method,
            actor: r.actor,
            token_id: r.token_id,
            role: r.role,
            org,
            user,
            source: r.source,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            verified_at: r.verified_at,
        })
    }
}

/// An OIDC sign-in under way (its key, the digest of the browser's cookie, is apart).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LoginRow {
    /// Our name for the issuer.
    pub issuer: String,
    pub state: String,
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Where the browser goes once signed in (already checked to be a path of ours).
    pub next: String,
    pub source: Option<String>,
    pub created_at: i64,
    /// For a confirmation at the provider: the session it confirms (`None`: a sign-in).
    pub session_id: Option<String>,
}

/// Which sessions a listing or a revocation may reach.
#[derive(Clone, Copy, Debug)]
pub enum SessionScope<'a> {
    /// Every session (platform admins).
    All,
    /// The sessions of one org.
    Org(OrgId),
    /// One operator's own: those it acts in (by admin token or federated identity), or of
    /// its user in its org.
    Own { actor: &'a str, org: Option<OrgId>, user: Option<UserId> },
}

impl SessionScope<'_> {
    /// Binds `$1..$4` of the scoped statements: all?, org, actor, user.
    fn binds(self) -> (bool, Option<String>, Option<String>, Option<String>) {
        match self {
            SessionScope::All => (true, None, None, None),
            SessionScope::Org(o) => (false, Some(o.to_string()), None, None),
            SessionScope::Own { actor, org, user } => {
                (false, org.map(|o| o.to_string()), Some(actor.to_owned()), user.map(|u| u.to_string()))
            }
        }
    }
}

macro_rules! select_sessions {
    () => {
        "SELECT s.id, s.csrf, s.method, s.actor, s.token_id, s.role, s.org_id, s.user_id, s.source, s.created_at, \
         s.last_seen_at, s.expires_at, s.revoked_at, s.verified_at FROM console_sessions s"
    };
}

/// `$1` digest, `$2` now, `$3` the idle cut-off (sessions last seen before it are over).
pub(crate) const LIVE_BY_DIGEST: &str = concat!(
    select_sessions!(),
    " LEFT JOIN admin_tokens t ON t.id = s.token_id \
     WHERE s.digest = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND s.last_seen_at > $3 \
     AND (s.token_id IS NULL OR t.revoked_at IS NULL)"
);

/// The scope binds are `$1` all, `$2` org, `$3` actor, `$4` user: an own scope matches the
/// actor's sessions, or the user's in the org.
macro_rules! in_scope {
    () => {
        "($1 OR ($3 IS NULL AND s.org_id = $2) \
         OR ($3 IS NOT NULL AND (s.actor = $3 OR ($4 IS NOT NULL AND s.user_id = $4 AND s.org_id = $2))))"
    };
}

pub(crate) const LIST_SCOPED: &str = concat!(
    select_sessions!(),
    " WHERE ",
    in_scope!(),
    " AND s.revoked_at IS NULL AND s.expires_at > $5 AND ($6 IS NULL OR s.id > $6) ORDER BY s.id LIMIT $7"
);

const REVOKE_SCOPED: &str = concat!(
    "UPDATE console_sessions SET revoked_at = $5 WHERE id = $6 AND revoked_at IS NULL \
     AND id IN (SELECT s.id FROM console_sessions s WHERE ",
    in_scope!(),
    ")"
);

impl Store {
    pub async fn create_console_session(&self, s: &NewSession<'_>) -> Result<(), Error> {
        execute!(self,
            "INSERT INTO console_sessions (id, digest, csrf, method, actor, token_id, role, org_id, user_id, source, \
             created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)";
            s.id, &s.digest[..], s.csrf, s.method, s.actor, s.token_id, s.role, s.org.map(|o| o.to_string()),
            s.user.map(|u| u.to_string()), s.source.as_deref(), s.now, s.expires_at
        )?;
        Ok(())
    }

    /// The live session with this digest: unrevoked, before its absolute deadline, seen after
    /// `idle_cutoff`, and its admin token (if any) unrevoked.
    pub async fn live_console_session(
        &self,
        digest: &[u8; 32],
        now: i64,
        idle_cutoff: i64,
    ) -> Result<Option<SessionRow>, Error> {
        let row: Option<RawSessionRow> =
            fetch!(self, query_as, fetch_optional, LIVE_BY_DIGEST; &digest[..], now, idle_cutoff)?;
        row.map(SessionRow::try_from).transpose()
    }

    /// Records use (the idle deadline moves); callers write this at most about once a minute.
    pub async fn touch_console_session(&self, id: &str, now: i64) -> Result<(), Error> {
        execute!(self, "UPDATE console_sessions SET last_seen_at = $1 WHERE id = $2 AND revoked_at IS NULL"; now, id)?;
        Ok(())
    }

    /// Live sessions within `scope`, by id after `after`, at most `limit`.
    pub async fn list_console_sessions(
        &self,
        scope: SessionScope<'_>,
        now: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SessionRow>, Error> {
        let (all, org, token, user) = scope.binds();
        let rows: Vec<RawSessionRow> = fetch!(self, query_as, fetch_all, LIST_SCOPED;
            all, org, token, user, now, after, i64::from(limit))?;
        rows.into_iter().map(SessionRow::try_from).collect()
    }

    /// Records that the session's operator proved themselves again (re-authentication).
    /// `Some(org)`, the org the session acts in, when it did; `None` if the session is over or
    /// acts as someone other than `actor`.
    pub async fn confirm_console_session(
        &self,
        id: &str,
        actor: &str,
        now: i64,
    ) -> Result<Option<Option<OrgId>>, Error> {
        let row: Option<Option<String>> = fetch!(self, query_scalar, fetch_optional,
            "UPDATE console_sessions SET verified_at = $1 \
             WHERE id = $2 AND actor = $3 AND revoked_at IS NULL AND expires_at > $1 RETURNING org_id";
            now, id, actor)?;
        row.map(|org| org.map(|o| OrgId::parse(&o).ok_or(Error::Corrupt("console_sessions.org_id"))).transpose())
            .transpose()
    }

    /// Revokes one session within `scope`; false if there is none (or it is outside the scope,
    /// which looks the same).
    pub async fn revoke_console_session(&self, scope: SessionScope<'_>, id: &str, now: i64) -> Result<bool, Error> {
        let (all, org, token, user) = scope.binds();
        Ok(execute!(self, REVOKE_SCOPED; all, org, token, user, now, id)? > 0)
    }

    /// Marks an admin token as exchanged for a console session; false if it already was (the
    /// `once` rule: the first exchange wins, also when two race).
    pub async fn claim_console_sign_in(&self, token_id: &str, now: i64) -> Result<bool, Error> {
        Ok(execute!(self,
            "UPDATE admin_tokens SET console_signed_in_at = $1 WHERE id = $2 AND console_signed_in_at IS NULL";
            now, token_id)?
            > 0)
    }

    /// Deletes sessions that ended (expired or revoked) before `before`, and sign-ins begun
    /// before `logins_before` that never came back.
    pub async fn prune_console_sessions(&self, before: i64, logins_before: i64) -> Result<u64, Error> {
        let sessions = execute!(self,
            "DELETE FROM console_sessions WHERE expires_at < $1 OR (revoked_at IS NOT NULL AND revoked_at < $1)";
            before)?;
        let logins = execute!(self, "DELETE FROM console_logins WHERE created_at < $1"; logins_before)?;
        let challenges = execute!(self, "DELETE FROM console_challenges WHERE created_at < $1"; logins_before)?;
        Ok(sessions + logins + challenges)
    }

    pub async fn create_console_login(&self, l: &LoginRow, digest: &[u8; 32]) -> Result<(), Error> {
        execute!(self,
            "INSERT INTO console_logins (digest, issuer, state, nonce, verifier, next, source, created_at, session_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
            &digest[..], &l.issuer, &l.state, &l.nonce, &l.verifier, &l.next, l.source.as_deref(), l.created_at,
            l.session_id.as_deref())?;
        Ok(())
    }

    /// Takes the sign-in under way with this digest, if it began after `not_before`: it is
    /// deleted whether or not it is still fresh, so each one is used at most once.
    pub async fn take_console_login(&self, digest: &[u8; 32], not_before: i64) -> Result<Option<LoginRow>, Error> {
        let row: Option<LoginRow> = fetch!(self, query_as, fetch_optional,
            "DELETE FROM console_logins WHERE digest = $1 \
             RETURNING issuer, state, nonce, verifier, next, source, created_at, session_id";
            &digest[..])?;
        Ok(row.filter(|r| r.created_at >= not_before))
    }
}
