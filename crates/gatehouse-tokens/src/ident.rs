//! The macaroon identifier of a Gatehouse capability token.

use std::fmt;

use gatehouse_core::{OrgId, TokenId};

const PREFIX: &str = "gh1:";

/// Which org's root key (and which version of it) signed the token, and which registered
/// root token it is. Readable by the holder; carries nothing secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenIdent {
    pub org: OrgId,
    pub key_version: i64,
    pub token: TokenId,
}

impl TokenIdent {
    pub fn parse(id: &[u8]) -> Option<TokenIdent> {
        // 4 + 36 + 1 + up to 19 + 1 + 36: anything longer is not ours.
        if id.len() > 100 {
            return None;
        }
        let s = std::str::from_utf8(id).ok()?.strip_prefix(PREFIX)?;
        let mut parts = s.split(':');
        let org = OrgId::parse(parts.next()?)?;
        let v = parts.next()?;
        // Canonical decimal only: one spelling per identifier.
        if v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let key_version = v.parse().ok().filter(|v| *v >= 1)?;
        let token = TokenId::parse(parts.next()?)?;
        parts.next().is_none().then_some(TokenIdent { org, key_version, token })
    }
}

impl fmt::Display for TokenIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}:{}:{}", self.org, self.key_version, self.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_variants() {
        let id = TokenIdent { org: OrgId::generate(), key_version: 3, token: TokenId::generate() };
        let s = id.to_string();
        assert_eq!(TokenIdent::parse(s.as_bytes()), Some(id));
        for bad in [
            s.replace(":3:", ":03:"),
            s.replace(":3:", ":0:"),
            s.replace(":3:", ":-3:"),
            s.replace("gh1:", "gh2:"),
            format!("{s}:x"),
            s[..s.len() - 1].to_owned(),
        ] {
            assert_eq!(TokenIdent::parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
