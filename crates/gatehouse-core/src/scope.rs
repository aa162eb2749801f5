//! Scopes: what a capability token or a federated identity may do, as `:`/`/`-separated
//! segments (`chat:completions`, `mcp:tool:github/create_issue`). A pattern segment `*`
//! stands for exactly one segment; it never crosses a separator, so `chat:*` does not reach
//! `chat:completions:stream` and `mcp:tool:github/*` does not reach `mcp:tool:gitlab/x`.

use std::fmt;
use std::sync::Arc;

/// Longest scope or pattern accepted.
pub const MAX_SCOPE_LEN: usize = 256;
const MAX_SEGMENTS: usize = 16;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ScopePattern(Box<str>);

impl fmt::Debug for ScopePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ScopePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_sep(c: char) -> bool {
    c == ':' || c == '/'
}

fn segments(s: &str) -> impl Iterator<Item = (&str, Option<char>)> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(is_sep) {
            Some(i) => {
                let (seg, tail) = rest.split_at(i);
                let sep = tail.chars().next();
                rest = &tail[1..];
                Some((seg, sep))
            }
            None => {
                let seg = rest;
                rest = "";
                Some((seg, None))
            }
        }
    })
}

impl ScopePattern {
    /// Segments of `[A-Za-z0-9._-]` or a lone `*`, separated by `:` or `/`; nothing empty.
    pub fn parse(s: &str) -> Option<ScopePattern> {
        if s.is_empty() || s.len() > MAX_SCOPE_LEN || s.ends_with(is_sep) || s.starts_with(is_sep) {
            return None;
        }
        let mut n = 0;
        for (seg, _) in segments(s) {
            n += 1;
            let ok = seg == "*"
                || (!seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
            if !ok || n > MAX_SEGMENTS {
                return None;
            }
        }
        Some(ScopePattern(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a concrete action (no wildcards) is inside this pattern.
    pub fn matches(&self, action: &str) -> bool {
        self.covers_str(action)
    }

    /// Whether every action `other` allows is allowed by `self` (a `*` in `other` needs a
    /// `*` here).
    pub fn covers(&self, other: &ScopePattern) -> bool {
        self.covers_str(&other.0)
    }

    fn covers_str(&self, other: &str) -> bool {
        let mut a = segments(&self.0);
        let mut b = segments(other);
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some((pa, sa)), Some((pb, sb))) => {
                    if sa != sb || !(pa == "*" || pa == pb) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }
}

/// A conjunction of alternatives: an action is allowed when every entry has a pattern that
/// matches it (each scope caveat narrows; none widens).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet {
    all_of: Vec<Arc<[ScopePattern]>>,
}

impl ScopeSet {
    /// No restriction at all.
    pub fn unrestricted() -> ScopeSet {
        ScopeSet::default()
    }

    pub fn restrict(&mut self, any_of: Vec<ScopePattern>) {
        self.all_of.push(any_of.into());
    }

    pub fn is_unrestricted(&self) -> bool {
        self.all_of.is_empty()
    }

    pub fn allows(&self, action: &str) -> bool {
        self.all_of.iter().all(|alts| alts.iter().any(|p| p.matches(action)))
    }

    /// Whether some action beginning with `prefix`'s segments (and going on past them) could be
    /// allowed: each entry has a pattern whose leading segments fit (`*` on either side fits
    /// any one segment). An over-approximation across entries, so it only ever gates access to
    /// something that is itself narrowed further (e.g. reaching an MCP server, whose every tool
    /// call is then checked with [`Self::allows`]).
    pub fn reaches(&self, prefix: &[&str]) -> bool {
        self.all_of.iter().all(|alts| {
            alts.iter().any(|p| {
                let segs: Vec<&str> = segments(&p.0).map(|(s, _)| s).collect();
                segs.len() > prefix.len()
                    && segs.iter().zip(prefix).all(|(s, want)| *s == "*" || *want == "*" || s == want)
            })
        })
    }

    /// Whether a pattern is wholly inside this set (for "child not wider than parent").
    pub fn covers(&self, p: &ScopePattern) -> bool {
        self.all_of.iter().all(|alts| alts.iter().any(|a| a.covers(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ScopePattern {
        ScopePattern::parse(s).unwrap_or_else(|| ScopePattern("<invalid>".into()))
    }

    #[test]
    fn wildcards_stay_inside_their_segment() {
        assert!(p("chat:*").matches("chat:completions"));
        assert!(!p("chat:*").matches("chat:completions:stream"));
        assert!(!p("chat:*").matches("chat"));
        assert!(!p("chat:*").matches("embeddings:create"));
        assert!(p("mcp:tool:github/*").matches("mcp:tool:github/create_issue"));
        assert!(!p("mcp:tool:github/*").matches("mcp:tool:gitlab/create_issue"));
        assert!(!p("mcp:tool:github/*").matches("mcp:tool:github:create_issue"), "separators must match");
        assert!(!p("mcp:tool:github/*").matches("mcp:tool:github/a/b"));
        assert!(p("*:*").matches("chat:completions"));
        assert!(!p("*").matches("chat:completions"));
    }

    #[test]
    fn reaches_looks_past_a_prefix() {
        let mut set = ScopeSet::unrestricted();
        set.restrict(vec![p("mcp:tool:github/*"), p("chat:completions")]);
        assert!(set.reaches(&["mcp", "*", "github"]));
        assert!(!set.reaches(&["mcp", "*", "gitlab"]));
        set.restrict(vec![p("mcp:*:*/*")]);
        assert!(set.reaches(&["mcp", "*", "github"]));
        let mut chat_only = ScopeSet::unrestricted();
        chat_only.restrict(vec![p("chat:*")]);
        assert!(!chat_only.reaches(&["mcp", "*", "github"]));
        assert!(ScopeSet::unrestricted().reaches(&["mcp", "*", "x"]));
    }

    #[test]
    fn covers_is_narrowing() {
        assert!(p("chat:*").covers(&p("chat:completions")));
        assert!(p("chat:*").covers(&p("chat:*")));
        assert!(!p("chat:completions").covers(&p("chat:*")));
        assert!(!p("chat:*").covers(&p("*:*")));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", ":", "chat:", ":chat", "chat::x", "ch*t:x", "chat:**", "chat completions", "é:x"] {
            assert!(ScopePattern::parse(bad).is_none(), "{bad:?}");
        }
        assert!(ScopePattern::parse(&["a"; 16].join(":")).is_some());
        assert!(ScopePattern::parse(&["a"; 17].join(":")).is_none());
    }

    #[test]
    fn a_set_is_a_conjunction() {
        let mut s = ScopeSet::unrestricted();
        assert!(s.allows("anything:at:all"));
        s.restrict(vec![p("chat:*"), p("embeddings:*")]);
        s.restrict(vec![p("chat:completions")]);
        assert!(s.allows("chat:completions"));
        assert!(!s.allows("embeddings:create"));
        assert!(s.covers(&p("chat:completions")));
        assert!(!s.covers(&p("chat:*")));
    }
}
