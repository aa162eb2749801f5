//! Which events a subscription wants: action patterns (`*`, `key.*`, `auth.api_key`) and,
//! optionally, outcomes. Validated when saved: bounded, and every pattern must be able to
//! match something in the catalogue.

use crate::EventKind;

pub const MAX_PATTERNS: usize = 32;
const MAX_PATTERN_LEN: usize = 64;
const OUTCOMES: &[&str] = &["allowed", "denied", "failed"];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    All,
    /// `noun.*`
    Noun(String),
    Exact(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    patterns: Vec<Pattern>,
    outcomes: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("events: between 1 and 32 patterns like \"*\", \"key.*\" or \"auth.api_key\"")]
    Events,
    #[error("outcomes: a subset of allowed, denied, failed")]
    Outcomes,
}

impl Filter {
    pub fn parse(events: &[String], outcomes: Option<&[String]>) -> Result<Filter, FilterError> {
        if events.is_empty() || events.len() > MAX_PATTERNS {
            return Err(FilterError::Events);
        }
        let mut patterns = Vec::with_capacity(events.len());
        for e in events {
            if e.len() > MAX_PATTERN_LEN {
                return Err(FilterError::Events);
            }
            let p = if e == "*" {
                Pattern::All
            } else if let Some(noun) = e.strip_suffix(".*") {
                let known = EventKind::ALL.iter().any(|k| k.as_str().split_once('.').is_some_and(|(n, _)| n == noun));
                if !known {
                    return Err(FilterError::Events);
                }
                Pattern::Noun(noun.to_owned())
            } else {
                Pattern::Exact(EventKind::parse(e).ok_or(FilterError::Events)?.as_str())
            };
            patterns.push(p);
        }
        let outcomes = match outcomes {
            None => None,
            Some(o)
                if !o.is_empty() && o.len() <= OUTCOMES.len() && o.iter().all(|x| OUTCOMES.contains(&x.as_str())) =>
            {
                Some(o.to_vec())
            }
            Some(_) => return Err(FilterError::Outcomes),
        };
        Ok(Filter { patterns, outcomes })
    }

    pub fn matches(&self, action: &str, outcome: &str) -> bool {
        let action_ok = self.patterns.iter().any(|p| match p {
            Pattern::All => true,
            Pattern::Noun(n) => action.split_once('.').is_some_and(|(a, _)| a == n),
            Pattern::Exact(e) => *e == action,
        });
        action_ok && self.outcomes.as_ref().is_none_or(|o| o.iter().any(|x| x == outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(events: &[&str], outcomes: Option<&[&str]>) -> Result<Filter, FilterError> {
        let e: Vec<String> = events.iter().map(|s| s.to_string()).collect();
        let o: Option<Vec<String>> = outcomes.map(|o| o.iter().map(|s| s.to_string()).collect());
        Filter::parse(&e, o.as_deref())
    }

    #[test]
    fn patterns_match_by_noun_or_exactly() {
        let k = f(&["key.*", "auth.api_key"], None).unwrap();
        assert!(k.matches("key.revoke", "allowed") && k.matches("auth.api_key", "denied"));
        assert!(!k.matches("keys.x", "allowed") && !k.matches("auth.admin_token", "denied"));
        let denied = f(&["*"], Some(&["denied"])).unwrap();
        assert!(denied.matches("org.create", "denied") && !denied.matches("org.create", "allowed"));
    }

    #[test]
    fn unknown_or_unbounded_filters_are_refused() {
        assert_eq!(f(&[], None), Err(FilterError::Events));
        assert_eq!(f(&["nope.*"], None), Err(FilterError::Events));
        assert_eq!(f(&["key.destroy"], None), Err(FilterError::Events));
        assert_eq!(f(&["ke*"], None), Err(FilterError::Events));
        assert_eq!(f(&["*"; 33], None), Err(FilterError::Events));
        assert_eq!(f(&["*"], Some(&["maybe"])), Err(FilterError::Outcomes));
    }
}
