//! The first-party caveat language. One caveat per predicate, `name op value`, single spaces:
//!
//! ```text
//! org = <uuid>                      project = <uuid>
//! scope = <pattern>                 scope in [<pattern>, ...]
//! models in [<model>, ...]          expires < <RFC 3339 UTC, e.g. 2030-01-01T00:00:00Z>
//! budget_usd <= <decimal, up to 6 places>
//! rpm <= <1..=1000000>              ip in <CIDR>   |   ip in [<CIDR>, ...]
//! delegation = <token id>
//! ```
//!
//! Every caveat narrows; a predicate that does not parse is unknown and unknown means deny.
//! Caveats fold into [`Folded`]: the conjunction a request is checked against.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use gatehouse_core::scope::{ScopePattern, ScopeSet};
use gatehouse_core::{OrgId, ProjectId, TokenId};
use ipnet::IpNet;

/// Longest predicate read; longer ones are unknown.
pub const MAX_CAVEAT_LEN: usize = 2048;
/// Longest list inside one caveat.
pub const MAX_LIST: usize = 64;
const MAX_MODEL_LEN: usize = 128;
const MAX_RPM: u32 = 1_000_000;
/// $1,000,000,000 in micro-dollars: beyond this a budget is a typo.
const MAX_BUDGET_MICROS: u64 = 1_000_000_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caveat {
    Org(OrgId),
    Project(ProjectId),
    Scope(Vec<ScopePattern>),
    Models(Vec<Box<str>>),
    /// Unix milliseconds; the token is valid strictly before.
    Expires(i64),
    BudgetMicroUsd(u64),
    Rpm(u32),
    Ip(Vec<IpNet>),
    Delegation(TokenId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaveatError {
    #[error("caveat is not UTF-8")]
    NotUtf8,
    #[error("unknown or malformed caveat ({0})")]
    Unknown(&'static str),
}

fn list(v: &str) -> Option<Vec<&str>> {
    let inner = v.strip_prefix('[')?.strip_suffix(']')?;
    let items: Vec<&str> = inner.split(',').map(str::trim).collect();
    (!items.is_empty() && items.len() <= MAX_LIST && items.iter().all(|i| !i.is_empty())).then_some(items)
}

fn model_name(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= MAX_MODEL_LEN
        && m.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@'))
}

/// `12.5` -> 12_500_000 micro-dollars; at most six decimals, no sign, no exponent.
fn micro_usd(v: &str) -> Option<u64> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty()
        || int.len() > 10
        || frac.len() > 6
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if v.ends_with('.') {
        return None;
    }
    let int: u64 = int.parse().ok()?;
    let frac_micros: u64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().ok()? };
    int.checked_mul(1_000_000)?.checked_add(frac_micros).filter(|m| *m <= MAX_BUDGET_MICROS)
}

fn rfc3339_ms(v: &str) -> Option<i64> {
    // Only the strict UTC form: one spelling per instant keeps caveats comparable.
    if !v.ends_with('Z') {
        return None;
    }
    let t = humantime::parse_rfc3339(v).ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

fn cidr(v: &str) -> Option<IpNet> {
    let net: IpNet = v.parse().ok()?;
    // `10.0.0.1/8` is ambiguous (host bits set): refuse rather than guess.
    (net.trunc() == net).then_some(net)
}

impl Caveat {
    pub fn parse(p: &[u8]) -> Result<Caveat, CaveatError> {
        if p.len() > MAX_CAVEAT_LEN {
            return Err(CaveatError::Unknown("too long"));
        }
        let s = std::str::from_utf8(p).map_err(|_| CaveatError::NotUtf8)?;
        let (name, rest) = s.split_once(' ').ok_or(CaveatError::Unknown("shape"))?;
        let (op, value) = rest.split_once(' ').ok_or(CaveatError::Unknown("shape"))?;
        let bad = CaveatError::Unknown;
        Ok(match (name, op) {
            ("org", "=") => Caveat::Org(OrgId::parse(value).ok_or(bad("org"))?),
            ("project", "=") => Caveat::Project(ProjectId::parse(value).ok_or(bad("project"))?),
            ("delegation", "=") => Caveat::Delegation(TokenId::parse(value).ok_or(bad("delegation"))?),
            ("scope", "=") => Caveat::Scope(vec![ScopePattern::parse(value).ok_or(bad("scope"))?]),
            ("scope", "in") => Caveat::Scope(
                list(value)
                    .ok_or(bad("scope"))?
                    .into_iter()
                    .map(|p| ScopePattern::parse(p).ok_or(bad("scope")))
                    .collect::<Result<_, _>>()?,
            ),
            ("models", "in") => {
                let items = list(value).ok_or(bad("models"))?;
                if !items.iter().all(|m| model_name(m)) {
                    return Err(bad("models"));
                }
                Caveat::Models(items.into_iter().map(Into::into).collect())
            }
            ("expires", "<") => Caveat::Expires(rfc3339_ms(value).ok_or(bad("expires"))?),
            ("budget_usd", "<=") => Caveat::BudgetMicroUsd(micro_usd(value).ok_or(bad("budget_usd"))?),
            ("rpm", "<=") => Caveat::Rpm(value.parse().ok().filter(|n| (1..=MAX_RPM).contains(n)).ok_or(bad("rpm"))?),
            ("ip", "in") => Caveat::Ip(match list(value) {
                Some(items) => items.into_iter().map(|c| cidr(c).ok_or(bad("ip"))).collect::<Result<_, _>>()?,
                None => vec![cidr(value).ok_or(bad("ip"))?],
            }),
            _ => return Err(bad("name")),
        })
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The canonical spelling, which [`Caveat::parse`] reads back to the same value.
impl fmt::Display for Caveat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caveat::Org(o) => write!(f, "org = {o}"),
            Caveat::Project(p) => write!(f, "project = {p}"),
            Caveat::Delegation(t) => write!(f, "delegation = {t}"),
            Caveat::Scope(s) if s.len() == 1 => write!(f, "scope = {}", s[0]),
            Caveat::Scope(s) => write!(f, "scope in [{}]", join(s)),
            Caveat::Models(m) => write!(f, "models in [{}]", m.join(", ")),
            Caveat::Expires(ms) => {
                let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(*ms).unwrap_or(0));
                write!(f, "expires < {}", humantime::format_rfc3339_seconds(t))
            }
            Caveat::BudgetMicroUsd(m) => {
                let (int, frac) = (m / 1_000_000, m % 1_000_000);
                if frac == 0 {
                    write!(f, "budget_usd <= {int}")
                } else {
                    let frac = format!("{frac:06}");
                    write!(f, "budget_usd <= {int}.{}", frac.trim_end_matches('0'))
                }
            }
            Caveat::Rpm(n) => write!(f, "rpm <= {n}"),
            Caveat::Ip(nets) if nets.len() == 1 => write!(f, "ip in {}", nets[0]),
            Caveat::Ip(nets) => write!(f, "ip in [{}]", join(nets)),
        }
    }
}

/// All caveats of a presented token, folded. Chain node 0 is the root token; each
/// `delegation = id` caveat starts the next node, and budget/rpm caveats belong to the node
/// they follow (that node and its descendants are charged).
#[derive(Clone, Debug, Default)]
pub struct Folded {
    pub orgs: Vec<OrgId>,
    pub projects: Vec<ProjectId>,
    pub scopes: ScopeSet,
    /// Intersection of every `models in` caveat; `None` when there is none.
    pub models: Option<Vec<Box<str>>>,
    pub expires_at: Option<i64>,
    pub ips: Vec<Vec<IpNet>>,
    pub delegations: Vec<TokenId>,
    pub budgets: Vec<(usize, u64)>,
    pub rpm: Vec<(usize, u32)>,
}

impl Folded {
    pub fn fold<'a>(predicates: impl IntoIterator<Item = &'a [u8]>) -> Result<Folded, CaveatError> {
        let mut f = Folded::default();
        for p in predicates {
            f.add(Caveat::parse(p)?);
        }
        Ok(f)
    }

    pub fn add(&mut self, c: Caveat) {
        let node = self.delegations.len();
        match c {
            Caveat::Org(o) => self.orgs.push(o),
            Caveat::Project(p) => self.projects.push(p),
            Caveat::Scope(s) => self.scopes.restrict(s),
            Caveat::Models(m) => {
                self.models = Some(match self.models.take() {
                    None => m,
                    Some(prev) => prev.into_iter().filter(|x| m.contains(x)).collect(),
                })
            }
            Caveat::Expires(t) => self.expires_at = Some(self.expires_at.map_or(t, |e| e.min(t))),
            Caveat::BudgetMicroUsd(b) => self.budgets.push((node, b)),
            Caveat::Rpm(n) => self.rpm.push((node, n)),
            Caveat::Ip(nets) => self.ips.push(nets),
            Caveat::Delegation(t) => self.delegations.push(t),
        }
    }

    /// The binding context checks (time, network, tenant); scope and model are checked per
    /// request by the authorize gate.
    pub fn check(&self, now_ms: i64, source: Option<IpAddr>, org: OrgId, project: ProjectId) -> Result<(), Violation> {
        if self.expires_at.is_none_or(|e| now_ms >= e) {
            // A token without an expiry caveat is refused: every minted token carries one.
            return Err(Violation::Expired);
        }
        if self.orgs.iter().any(|o| *o != org) || self.projects.iter().any(|p| *p != project) {
            return Err(Violation::Tenant);
        }
        if !self.ips.is_empty() {
            let Some(ip) = source else { return Err(Violation::Network) };
            if !self.ips.iter().all(|nets| nets.iter().any(|n| n.contains(&ip))) {
                return Err(Violation::Network);
            }
        }
        Ok(())
    }

    /// The tightest cap of each kind (for "not wider than the parent" checks).
    pub fn min_budget(&self) -> Option<u64> {
        self.budgets.iter().map(|b| b.1).min()
    }
    pub fn min_rpm(&self) -> Option<u32> {
        self.rpm.iter().map(|r| r.1).min()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("token expired")]
    Expired,
    #[error("token is for another organization or project")]
    Tenant,
    #[error("request comes from outside the token's networks")]
    Network,
}

/// Why a requested child would be wider than its parent (names the field, never a secret).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Wider(pub String);

/// Checks that `child` (the caveats a delegation asks to add) does not ask for more than
/// `parent` allows, so the holder gets a precise answer instead of a token that fails later.
pub fn check_not_wider(parent: &Folded, child: &[Caveat]) -> Result<(), Wider> {
    for c in child {
        match c {
            Caveat::Scope(pats) => {
                if let Some(p) = pats.iter().find(|p| !parent.scopes.covers(p)) {
                    return Err(Wider(format!("scope {p} is not within the parent's scopes")));
                }
            }
            Caveat::Models(ms) => {
                if let Some(allowed) = &parent.models
                    && let Some(m) = ms.iter().find(|m| !allowed.contains(m))
                {
                    return Err(Wider(format!(
                        "model {m} is not allowed by the parent (allows: {})",
                        allowed.join(", ")
                    )));
                }
            }
            Caveat::Expires(t) => {
                if parent.expires_at.is_some_and(|e| *t > e) {
                    return Err(Wider("expiry is later than the parent's".into()));
                }
            }
            Caveat::BudgetMicroUsd(b) => {
                if parent.min_budget().is_some_and(|m| *b > m) {
                    return Err(Wider("budget_usd is above the parent's".into()));
                }
            }
            Caveat::Rpm(n) => {
                if parent.min_rpm().is_some_and(|m| *n > m) {
                    return Err(Wider("rpm is above the parent's".into()));
                }
            }
            Caveat::Ip(nets) => {
                for n in nets {
                    if !parent.ips.iter().all(|alts| alts.iter().any(|a| a.contains(n))) {
                        return Err(Wider(format!("network {n} is not within the parent's networks")));
                    }
                }
            }
            Caveat::Org(_) | Caveat::Project(_) | Caveat::Delegation(_) => {
                return Err(Wider("org, project and delegation caveats are set by the gateway".into()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse(s: &str) -> Result<Caveat, CaveatError> {
        Caveat::parse(s.as_bytes())
    }

    #[test]
    fn every_form_round_trips_through_its_canonical_spelling() {
        for s in [
            "org = 0190a5c4-0000-7000-8000-000000000001",
            "project = 0190a5c4-0000-7000-8000-000000000002",
            "delegation = 0190a5c4-0000-7000-8000-000000000003",
            "scope = chat:*",
            "scope in [chat:completions, mcp:tool:github/*]",
            "models in [gpt-4o, claude-3-5-sonnet]",
            "expires < 2030-01-01T00:00:00Z",
            "budget_usd <= 12.5",
            "budget_usd <= 3",
            "budget_usd <= 0.000001",
            "rpm <= 60",
            "ip in 10.0.0.0/8",
            "ip in [10.0.0.0/8, 2001:db8::/32]",
        ] {
            let c = parse(s).unwrap();
            assert_eq!(c.to_string(), s);
        }
        assert_eq!(parse("budget_usd <= 12.500000").unwrap(), Caveat::BudgetMicroUsd(12_500_000));
    }

    #[test]
    fn anything_else_is_unknown() {
        for s in [
            "",
            "org=x",
            "org = not-a-uuid",
            "account = 3735928559",
            "scope = chat:**",
            "scope in []",
            "scope in [chat:*,]",
            "models in gpt-4o",
            "models in [gpt 4o]",
            "expires < 2030-01-01",
            "expires < 2030-01-01T00:00:00+02:00",
            "expires > 2030-01-01T00:00:00Z",
            "budget_usd <= -1",
            "budget_usd <= 1e3",
            "budget_usd <= 1.1234567",
            "budget_usd <= 1.",
            "rpm <= 0",
            "rpm <= 99999999999",
            "rpm < 5",
            "ip in 10.0.0.1/8",
            "ip in everywhere",
            "Org = 0190a5c4-0000-7000-8000-000000000001",
            "org  = 0190a5c4-0000-7000-8000-000000000001",
        ] {
            assert!(parse(s).is_err(), "{s:?}");
        }
        assert_eq!(Caveat::parse(&[0xff, 0xfe]), Err(CaveatError::NotUtf8));
        assert!(Caveat::parse(format!("scope = {}", "a".repeat(3000)).as_bytes()).is_err());
    }

    fn folded(caveats: &[&str]) -> Folded {
        Folded::fold(caveats.iter().map(|c| c.as_bytes())).unwrap()
    }

    #[test]
    fn folding_narrows() {
        let f = folded(&[
            "models in [a, b, c]",
            "models in [b, c, d]",
            "expires < 2030-01-01T00:00:00Z",
            "expires < 2029-01-01T00:00:00Z",
            "budget_usd <= 10",
            "delegation = 0190a5c4-0000-7000-8000-000000000003",
            "budget_usd <= 5",
            "rpm <= 7",
        ]);
        assert_eq!(f.models.as_deref(), Some(&["b".into(), "c".into()][..]));
        assert_eq!(f.expires_at, rfc3339_ms("2029-01-01T00:00:00Z"));
        assert_eq!(f.budgets, vec![(0, 10_000_000), (1, 5_000_000)]);
        assert_eq!(f.rpm, vec![(1, 7)]);
    }

    #[test]
    fn context_checks() {
        let org = OrgId::generate();
        let project = ProjectId::generate();
        let exp = "expires < 2030-01-01T00:00:00Z";
        let before = rfc3339_ms("2029-12-31T23:59:59Z").unwrap();
        let f = folded(&[exp, "ip in [10.0.0.0/8, 192.168.1.0/24]"]);
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(f.check(before, ip("10.1.2.3"), org, project), Ok(()));
        assert_eq!(f.check(before, ip("192.168.2.1"), org, project), Err(Violation::Network));
        assert_eq!(f.check(before, None, org, project), Err(Violation::Network));
        assert_eq!(f.check(before + 1000, ip("10.1.2.3"), org, project), Err(Violation::Expired));
        assert_eq!(folded(&[]).check(0, None, org, project), Err(Violation::Expired), "no expiry, no entry");
        let other = folded(&[exp, &format!("org = {}", OrgId::generate())]);
        assert_eq!(other.check(before, None, org, project), Err(Violation::Tenant));
    }

    #[test]
    fn a_child_cannot_ask_for_more_than_its_parent() {
        let parent = folded(&[
            "scope in [chat:*, embeddings:create]",
            "models in [gpt-4o]",
            "expires < 2030-01-01T00:00:00Z",
            "budget_usd <= 10",
            "ip in 10.0.0.0/8",
        ]);
        let ok = ["scope = chat:completions", "models in [gpt-4o]", "budget_usd <= 2", "ip in 10.1.0.0/16"];
        let ok: Vec<Caveat> = ok.iter().map(|s| parse(s).unwrap()).collect();
        assert_eq!(check_not_wider(&parent, &ok), Ok(()));
        for (wide, why) in [
            ("scope = *:*", "scope"),
            ("scope = mcp:tool:github/x", "scope"),
            ("models in [gpt-5]", "model gpt-5"),
            ("expires < 2031-01-01T00:00:00Z", "expiry"),
            ("budget_usd <= 11", "budget_usd"),
            ("ip in 11.0.0.0/8", "network"),
            ("org = 0190a5c4-0000-7000-8000-000000000001", "set by the gateway"),
        ] {
            let err = check_not_wider(&parent, &[parse(wide).unwrap()]).unwrap_err();
            assert!(err.0.contains(why), "{wide}: {err}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,300}") {
            let _ = Caveat::parse(s.as_bytes());
        }

        #[test]
        fn budgets_round_trip(micros in 0u64..1_000_000_000_000) {
            let c = Caveat::BudgetMicroUsd(micros);
            prop_assert_eq!(parse(&c.to_string()).unwrap(), c);
        }
    }
}
