//! Newtypes for ids, so an org id can never be passed where a project id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Whether `s` has the shape of every id we issue: a canonical hyphenated UUID (36 bytes).
/// Checked before an untrusted id is used or recorded anywhere.
pub fn is_id(s: &str) -> bool {
    s.len() == 36 && Uuid::try_parse(s).is_ok()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7: index-friendly inserts).
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses the canonical hyphenated form; anything else is rejected.
            pub fn parse(s: &str) -> Option<Self> {
                if s.len() != 36 {
                    return None;
                }
                Uuid::try_parse(s).ok().map(Self)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.as_hyphenated())
            }
        }
    };
}

id_type!(
    /// An organization: the tenant boundary.
    OrgId
);
id_type!(
    /// A project inside an organization.
    ProjectId
);
id_type!(
    /// An API key's public id (never the secret).
    KeyId
);
id_type!(
    /// A user or service account.
    UserId
);
id_type!(
    /// A capability token (macaroon) as registered: a root token or a delegated child.
    TokenId
);
id_type!(
    /// Correlates one request across logs, metrics exemplars and the audit trail.
    RequestId
);
id_type!(
    /// A stored provider credential (one version of it).
    CredentialId
);
id_type!(
    /// A registered upstream MCP server (also the id of its identity-signing key).
    McpServerId
);
id_type!(
    /// A console session, by its public id (its secret is the cookie's alone).
    SessionId
);

id_type!(
    /// A console passkey (the credential's own id is the authenticator's).
    PasskeyId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = OrgId::generate();
        assert_eq!(OrgId::parse(&id.to_string()), Some(id));
        assert_eq!(OrgId::parse("not-a-uuid"), None);
        assert_eq!(OrgId::parse(""), None);
        // the simple (unhyphenated) form is not canonical: one spelling per id
        assert_eq!(OrgId::parse(&id.as_uuid().simple().to_string()), None);
    }
}
