//! Console passkeys and the challenges of their ceremonies. The store keeps what the relying
//! party needs (the credential id, its COSE public key and signature counter) and what account
//! the passkey stands for; it never sees a private key.

use gatehouse_core::{OrgId, UserId};

use crate::{Error, Store};

/// A passkey to store after a registration that verified.
#[derive(Clone, Debug)]
pub struct NewPasskey<'a> {
    pub id: &'a str,
    pub credential_id: &'a [u8],
    pub user_handle: &'a [u8],
    pub actor: &'a str,
    pub token_id: Option<&'a str>,
    pub org: Option<OrgId>,
    pub user: Option<UserId>,
    pub name: &'a str,
    pub public_key: &'a [u8],
    pub alg: i64,
    pub sign_count: u32,
    pub backed_up: bool,
    pub now: i64,
}

/// A stored passkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyRow {
    pub id: String,
    pub credential_id: Vec<u8>,
    pub user_handle: Vec<u8>,
    pub actor: String,
    pub token_id: Option<String>,
    pub org: Option<OrgId>,
    pub user: Option<UserId>,
    pub name: String,
    pub public_key: Vec<u8>,
    pub alg: i64,
    pub sign_count: u32,
    pub backed_up: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct RawPasskeyRow {
    id: String,
    credential_id: Vec<u8>,
    user_handle: Vec<u8>,
    actor: String,
    token_id: Option<String>,
    org_id: Option<String>,
    user_id: Option<String>,
    name: String,
    public_key: Vec<u8>,
    alg: i64,
    sign_count: i64,
    backed_up: i64,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl TryFrom<RawPasskeyRow> for PasskeyRow {
    type Error = Error;

    fn try_from(r: RawPasskeyRow) -> Result<Self, Error> {
        let org = r.org_id.map(|o| OrgId::parse(&o).ok_or(Error::Corrupt("console_passkeys.org_id"))).transpose()?;
        let user =
            r.user_id.map(|u| UserId::parse(&u).ok_or(Error::Corrupt("console_passkeys.user_id"))).transpose()?;
        Ok(PasskeyRow {
            id: r.id,
            credential_id: r.credential_id,
            user_handle: r.user_handle,
            actor: r.actor,
            token_id: r.token_id,
            org,
            user,
            name: r.name,
            public_key: r.public_key,
            alg: r.alg,
            sign_count: u32::try_from(r.sign_count).map_err(|_| Error::Corrupt("console_passkeys.sign_count"))?,
            backed_up: r.backed_up != 0,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        })
    }
}

/// A challenge taken for its ceremony.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ChallengeRow {
    pub purpose: String,
    pub session_id: Option<String>,
    pub created_at: i64,
}

macro_rules! select_passkeys {
    () => {
        "SELECT id, credential_id, user_handle, actor, token_id, org_id, user_id, name, public_key, alg, sign_count, \
         backed_up, created_at, last_used_at FROM console_passkeys"
    };
}

/// At most this many passkeys per account.
pub const MAX_PASSKEYS_PER_ACTOR: u32 = 20;

impl Store {
    /// Stores a passkey; false if its credential id is already registered (to anyone).
    pub async fn create_passkey(&self, p: &NewPasskey<'_>) -> Result<bool, Error> {
        let added = execute!(self,
            "INSERT INTO console_passkeys (id, credential_id, user_handle, actor, token_id, org_id, user_id, name, \
             public_key, alg, sign_count, backed_up, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (credential_id) DO NOTHING";
            p.id, p.credential_id, p.user_handle, p.actor, p.token_id, p.org.map(|o| o.to_string()),
            p.user.map(|u| u.to_string()), p.name, p.public_key, p.alg, i64::from(p.sign_count),
            i64::from(p.backed_up), p.now)?;
        Ok(added > 0)
    }

    pub async fn passkey_by_credential(&self, credential_id: &[u8]) -> Result<Option<PasskeyRow>, Error> {
        let row: Option<RawPasskeyRow> = fetch!(self, query_as, fetch_optional,
            concat!(select_passkeys!(), " WHERE credential_id = $1"); credential_id)?;
        row.map(PasskeyRow::try_from).transpose()
    }

    /// One account's passkeys, oldest first.
    pub async fn list_passkeys(&self, actor: &str) -> Result<Vec<PasskeyRow>, Error> {
        let rows: Vec<RawPasskeyRow> = fetch!(self, query_as, fetch_all,
            concat!(select_passkeys!(), " WHERE actor = $1 ORDER BY id LIMIT $2");
            actor, i64::from(MAX_PASSKEYS_PER_ACTOR))?;
        rows.into_iter().map(PasskeyRow::try_from).collect()
    }

    /// Removes one of an account's passkeys; false if it has none by that id.
    pub async fn remove_passkey(&self, actor: &str, id: &str) -> Result<bool, Error> {
        Ok(execute!(self, "DELETE FROM console_passkeys WHERE id = $1 AND actor = $2"; id, actor)? > 0)
    }

    /// Records a sign-in by a passkey whose counter was `seen`: false if another sign-in moved
    /// the counter first (the same assertion replayed concurrently loses).
    pub async fn passkey_used(
        &self,
        id: &str,
        seen: u32,
        count: u32,
        backed_up: bool,
        now: i64,
    ) -> Result<bool, Error> {
        Ok(execute!(self,
            "UPDATE console_passkeys SET sign_count = $1, backed_up = $2, last_used_at = $3 \
             WHERE id = $4 AND sign_count = $5";
            i64::from(count), i64::from(backed_up), now, id, i64::from(seen))?
            > 0)
    }

    pub async fn create_challenge(
        &self,
        challenge: &[u8],
        purpose: &str,
        session_id: Option<&str>,
        now: i64,
    ) -> Result<(), Error> {
        execute!(self,
            "INSERT INTO console_challenges (challenge, purpose, session_id, created_at) VALUES ($1, $2, $3, $4)";
            challenge, purpose, session_id, now)?;
        Ok(())
    }

    /// Takes a challenge: deleted whether or not it is still fresh, so each is used once;
    /// `None` if there was none or it was issued before `not_before`.
    pub async fn take_challenge(&self, challenge: &[u8], not_before: i64) -> Result<Option<ChallengeRow>, Error> {
        let row: Option<ChallengeRow> = fetch!(self, query_as, fetch_optional,
            "DELETE FROM console_challenges WHERE challenge = $1 RETURNING purpose, session_id, created_at";
            challenge)?;
        Ok(row.filter(|r| r.created_at >= not_before))
    }
}
