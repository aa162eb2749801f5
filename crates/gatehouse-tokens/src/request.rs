//! The narrowing fields a mint or delegation request may carry, validated once for the
//! admin API and the data plane's `/v1/tokens/delegate` alike.

use std::time::Duration;

use gatehouse_core::scope::ScopePattern;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::{Caveat, DelegateRequest, Error};

/// A capability token lives at most this long; shorter is better (delegate, re-mint).
pub const MAX_TTL_SECS: u64 = 90 * 24 * 3600;
const MAX_LIST: usize = 64;

/// The body of `POST /v1/tokens/delegate`: everything optional, everything narrows.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegateBody {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub models: Option<Vec<String>>,
    pub expires_in_seconds: Option<u64>,
    pub budget_usd: Option<Value>,
    pub rpm: Option<u32>,
    pub ips: Option<Vec<String>>,
}

impl DelegateBody {
    pub fn into_request(self) -> Result<crate::DelegateRequest, Error> {
        let name = self.name.unwrap_or_default();
        if name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ')) {
            return Err(Error::BadRequest("name"));
        }
        let req = narrowing(
            self.scopes.as_deref(),
            self.models.as_deref(),
            self.expires_in_seconds,
            self.budget_usd.as_ref(),
            self.rpm,
            self.ips.as_deref(),
        )?;
        Ok(DelegateRequest { name, ..req })
    }
}

/// Validates the narrowing fields of a mint or delegate request (shared with the data plane's
/// `/v1/tokens/delegate`).
pub fn narrowing(
    scopes: Option<&[String]>,
    models: Option<&[String]>,
    expires_in_seconds: Option<u64>,
    budget_usd: Option<&Value>,
    rpm: Option<u32>,
    ips: Option<&[String]>,
) -> Result<DelegateRequest, Error> {
    let scopes = scopes
        .map(|s| {
            if s.is_empty() || s.len() > MAX_LIST {
                return Err(Error::BadRequest("scopes"));
            }
            s.iter().map(|p| ScopePattern::parse(p).ok_or(Error::BadRequest("scopes"))).collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    if let Some(m) = models
        && (m.is_empty() || m.len() > MAX_LIST)
    {
        return Err(Error::BadRequest("models"));
    }
    let ttl = expires_in_seconds
        .map(|n| {
            if (1..=MAX_TTL_SECS).contains(&n) {
                Ok(Duration::from_secs(n))
            } else {
                Err(Error::BadRequest("expires_in_seconds"))
            }
        })
        .transpose()?;
    let budget_micro_usd = budget_usd.map(micro_usd).transpose()?;
    if rpm.is_some_and(|r| r == 0 || r > 1_000_000) {
        return Err(Error::BadRequest("rpm"));
    }
    let ips = ips
        .map(|list| {
            if list.is_empty() || list.len() > MAX_LIST {
                return Err(Error::BadRequest("ips"));
            }
            list.iter()
                .map(|c| c.parse::<IpNet>().ok().filter(|n| n.trunc() == *n).ok_or(Error::BadRequest("ips")))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(DelegateRequest {
        name: String::new(),
        scopes,
        models: models.map(<[String]>::to_vec),
        ttl,
        budget_micro_usd,
        rpm,
        ips,
    })
}

fn micro_usd(v: &Value) -> Result<u64, Error> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(Error::BadRequest("budget_usd")),
    };
    match Caveat::parse(format!("budget_usd <= {text}").as_bytes()) {
        Ok(Caveat::BudgetMicroUsd(m)) => Ok(m),
        _ => Err(Error::BadRequest("budget_usd")),
    }
}
