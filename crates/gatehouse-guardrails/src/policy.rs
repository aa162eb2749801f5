//! Guardrail policies: what each detector does (`off`, `flag`, `redact`, `block`), separately
//! for input and output, plus the injection threshold, placeholder restore and custom rules.
//!
//! A [`PolicySpec`] is what an operator writes (config file or admin API). Specs layer: the
//! deployment default, then the org's, then the project's; a later layer wins per detector key
//! and per direction. [`PolicySpec::compile`] validates the result (unknown keys, bounds on
//! custom rules) and builds the [`Policy`] the data plane consults with array lookups only.
//!
//! Keys of `detectors`, most specific first: a detector id (`pii.email`), a category (`pii`,
//! `secret`), `*` (every PII and secret detector). Prompt injection is keyed separately
//! (`prompt_injection` or `prompt_injection.<category>`) and cannot be redacted: a score is
//! not a span.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

use crate::detectors::DETECTORS;
use crate::injection::InjectionCategory;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    Off,
    /// Audit only: the text passes unchanged and the decision is recorded.
    Flag,
    /// Replace the match with a typed placeholder (`[EMAIL_1]`).
    Redact,
    /// Refuse the request (input) or cut the response (output).
    Block,
}

impl Action {
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Flag => "flag",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One key's actions; an absent direction inherits from the layer below.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Action>,
}

/// What a custom rule matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Matcher {
    /// A regular expression (Rust `regex` syntax: linear time, no backreferences).
    Regex(String),
    /// Literal phrases, matched case-insensitively (ASCII) anywhere in the text.
    Keywords(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// `[a-z0-9_-]{1,64}`; findings are reported as `custom.<name>`.
    pub name: String,
    #[serde(flatten)]
    pub matcher: Matcher,
    /// Default `block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Action>,
    /// Default `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Action>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detectors: BTreeMap<String, Rule>,
    /// Injection verdicts at or above this score act (0 < t <= 1; default 0.3, see
    /// docs/GUARDRAILS.md for the recall / false-positive trade-off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection_threshold: Option<f32>,
    /// Put redacted values back into the response of the same request (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_placeholders: Option<bool>,
    /// How a guarded stream releases text (default `buffered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_release: Option<StreamRelease>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomRule>,
}

/// How a stream whose output is guarded releases text to the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamRelease {
    /// Hold back the last [`crate::guard::HOLD_BACK`] bytes (and the run they end in): a
    /// context word that follows a value ("... is my SSN") is still seen before it goes out.
    #[default]
    Buffered,
    /// Release everything but the word in progress and the short digit groups before it (a
    /// value may still grow from them): the first words reach the client as soon as they end.
    Early,
}

/// Bounds on what an operator can make the data plane run.
pub const MAX_CUSTOM_RULES: usize = 32;
pub const MAX_PATTERN_BYTES: usize = 1024;
pub const MAX_KEYWORDS: usize = 1000;
pub const MAX_KEYWORD_BYTES: usize = 256;
/// Compiled size of one custom regex (the `regex` crate's own accounting).
pub const MAX_REGEX_SIZE: usize = 256 * 1024;
pub const DEFAULT_THRESHOLD: f32 = 0.3;

pub const INJECTION_KEY: &str = "prompt_injection";
const INJECTION_CATEGORIES: [InjectionCategory; 5] = [
    InjectionCategory::InstructionHijacking,
    InjectionCategory::RoleConfusion,
    InjectionCategory::ContextSmuggling,
    InjectionCategory::DelimiterInjection,
    InjectionCategory::Classifier,
];

/// A spec that cannot be compiled. `field` names where; the message never repeats a pattern
/// or keyword (they may themselves be sensitive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for SpecError {}

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError { field: field.into(), message: message.into() }
}

impl PolicySpec {
    /// `over` on top of `self`: per key and direction, per setting, per custom rule name.
    pub fn layered(&self, over: &PolicySpec) -> PolicySpec {
        let mut out = self.clone();
        for (k, r) in &over.detectors {
            let e = out.detectors.entry(k.clone()).or_default();
            e.input = r.input.or(e.input);
            e.output = r.output.or(e.output);
        }
        out.injection_threshold = over.injection_threshold.or(out.injection_threshold);
        out.restore_placeholders = over.restore_placeholders.or(out.restore_placeholders);
        out.stream_release = over.stream_release.or(out.stream_release);
        for c in &over.custom {
            match out.custom.iter_mut().find(|o| o.name == c.name) {
                Some(o) => *o = c.clone(),
                None => out.custom.push(c.clone()),
            }
        }
        out
    }

    /// Checks every key and bound without building automata for the keys (custom rules are
    /// compiled, since only compiling proves a pattern fits its size bound).
    pub fn validate(&self) -> Result<(), SpecError> {
        self.compile().map(|_| ())
    }

    pub fn compile(&self) -> Result<Policy, SpecError> {
        for (key, rule) in &self.detectors {
            let field = format!("detectors.{key}");
            let known = key == "*"
                || key == "pii"
                || key == "secret"
                || DETECTORS.iter().any(|d| d.id == key)
                || is_injection_key(key);
            if !known {
                return Err(err(field, "unknown detector (see docs/GUARDRAILS.md for the list)"));
            }
            if is_injection_key(key) && (rule.input == Some(Action::Redact) || rule.output == Some(Action::Redact)) {
                return Err(err(field, "prompt injection cannot be redacted; use block, flag or off"));
            }
        }
        let threshold = self.injection_threshold.unwrap_or(DEFAULT_THRESHOLD);
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(err("injection_threshold", "must be greater than 0 and at most 1"));
        }
        let resolve = |id: &str, category: &str, wildcard: bool| -> (Action, Action) {
            let mut keys = vec![id, category];
            if wildcard {
                keys.push("*");
            }
            let pick = |f: fn(&Rule) -> Option<Action>| {
                keys.iter().find_map(|k| self.detectors.get(*k).and_then(f)).unwrap_or(Action::Off)
            };
            (pick(|r| r.input), pick(|r| r.output))
        };
        let mut builtin = Vec::with_capacity(DETECTORS.len());
        for d in DETECTORS {
            builtin.push(resolve(d.id, d.category.as_str(), true));
        }
        let mut injection = [(Action::Off, Action::Off); 5];
        for (slot, c) in injection.iter_mut().zip(INJECTION_CATEGORIES) {
            *slot = resolve(&format!("{INJECTION_KEY}.{}", c.as_str()), INJECTION_KEY, false);
        }
        let custom = CustomSet::compile(&self.custom)?;
        let mut policy =
            Policy::assemble(builtin, injection, threshold, self.restore_placeholders.unwrap_or(false), custom);
        policy.stream_release = self.stream_release.unwrap_or_default();
        Ok(policy)
    }
}

fn is_injection_key(key: &str) -> bool {
    key == INJECTION_KEY
        || key
            .strip_prefix(INJECTION_KEY)
            .and_then(|r| r.strip_prefix('.'))
            .is_some_and(|c| INJECTION_CATEGORIES.iter().any(|k| k.as_str() == c))
}

/// The compiled, immutable policy of one scope. Lookups are array indexing.
#[derive(Debug)]
pub struct Policy {
    /// (input, output) per built-in detector, in `DETECTORS` order.
    builtin: Vec<(Action, Action)>,
    /// (input, output) per injection category.
    injection: [(Action, Action); 5],
    pub threshold: f32,
    pub restore: bool,
    pub stream_release: StreamRelease,
    pub(crate) custom: Option<CustomSet>,
    active: [bool; 2],
    rewrites_output: bool,
    /// Tells policies apart (the response cache keys on it): set by whoever compiled it from
    /// its spec, 0 for the built-in off policy.
    pub fingerprint: u64,
}

impl Policy {
    fn assemble(
        builtin: Vec<(Action, Action)>,
        injection: [(Action, Action); 5],
        threshold: f32,
        restore: bool,
        custom: Option<CustomSet>,
    ) -> Policy {
        let (active_in, active_out, rewrites_output) = {
            let all_in = builtin.iter().chain(&injection).map(|a| a.0).chain(custom.iter().flat_map(|c| c.actions(0)));
            let all_out = builtin.iter().chain(&injection).map(|a| a.1).chain(custom.iter().flat_map(|c| c.actions(1)));
            let active_in = all_in.clone().any(|a| a != Action::Off);
            let rewrites = all_out.clone().any(|a| a >= Action::Redact) || restore;
            (active_in, all_out.clone().any(|a| a != Action::Off) || restore, rewrites)
        };
        Policy {
            builtin,
            injection,
            threshold,
            restore,
            stream_release: StreamRelease::Buffered,
            custom,
            active: [active_in, active_out],
            rewrites_output,
            fingerprint: 0,
        }
    }

    /// Nothing configured: the gates skip scanning entirely.
    pub fn off() -> Policy {
        Policy::assemble(vec![(Action::Off, Action::Off); DETECTORS.len()], Default::default(), 1.0, false, None)
    }

    pub fn builtin(&self, index: usize, dir: Direction) -> Action {
        self.builtin.get(index).map_or(Action::Off, |a| pick(*a, dir))
    }

    pub fn injection(&self, c: InjectionCategory, dir: Direction) -> Action {
        let i = INJECTION_CATEGORIES.iter().position(|k| *k == c).unwrap_or(0);
        pick(self.injection[i], dir)
    }

    pub(crate) fn any_injection(&self, dir: Direction) -> bool {
        self.injection.iter().any(|a| pick(*a, dir) != Action::Off)
    }

    pub(crate) fn any_builtin(&self, dir: Direction) -> bool {
        self.builtin.iter().any(|a| pick(*a, dir) != Action::Off)
    }

    /// Whether anything scans in this direction.
    pub fn active(&self, dir: Direction) -> bool {
        self.active[dir as usize]
    }

    /// Whether responses may be changed (redaction, blocking or restore), so streams must be
    /// held back and re-framed rather than passed through.
    pub fn rewrites_output(&self) -> bool {
        self.rewrites_output
    }
}

fn pick(a: (Action, Action), dir: Direction) -> Action {
    match dir {
        Direction::In => a.0,
        Direction::Out => a.1,
    }
}

/// Compiled custom rules: one `RegexSet` pass picks the regex rules that can match; keyword
/// rules share one Aho-Corasick automaton.
#[derive(Debug)]
pub(crate) struct CustomSet {
    pub(crate) names: Vec<String>,
    actions: Vec<(Action, Action)>,
    /// Rule index of each regex, and the regexes (for spans).
    regex_rules: Vec<usize>,
    pub(crate) set: Option<RegexSet>,
    pub(crate) regexes: Vec<Regex>,
    /// Rule index of each keyword pattern.
    keyword_rules: Vec<usize>,
    pub(crate) keywords: Option<AhoCorasick>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl CustomSet {
    fn compile(rules: &[CustomRule]) -> Result<Option<CustomSet>, SpecError> {
        if rules.is_empty() {
            return Ok(None);
        }
        if rules.len() > MAX_CUSTOM_RULES {
            return Err(err("custom", format!("at most {MAX_CUSTOM_RULES} rules")));
        }
        let mut c = CustomSet {
            names: Vec::new(),
            actions: Vec::new(),
            regex_rules: Vec::new(),
            set: None,
            regexes: Vec::new(),
            keyword_rules: Vec::new(),
            keywords: None,
        };
        let mut patterns = Vec::new();
        let mut words: Vec<String> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let field = format!("custom[{i}]");
            if !valid_name(&r.name) {
                return Err(err(format!("{field}.name"), "must be 1-64 characters of a-z, 0-9, _ and -"));
            }
            if c.names.contains(&r.name) {
                return Err(err(format!("{field}.name"), "duplicate rule name"));
            }
            match &r.matcher {
                Matcher::Regex(p) => {
                    if p.is_empty() || p.len() > MAX_PATTERN_BYTES {
                        return Err(err(format!("{field}.regex"), format!("must be 1-{MAX_PATTERN_BYTES} bytes")));
                    }
                    let re = RegexBuilder::new(p)
                        .size_limit(MAX_REGEX_SIZE)
                        .dfa_size_limit(MAX_REGEX_SIZE)
                        .nest_limit(32)
                        .build()
                        .map_err(|e| err(format!("{field}.regex"), regex_problem(&e)))?;
                    if re.is_match("") {
                        return Err(err(format!("{field}.regex"), "matches the empty string"));
                    }
                    c.regex_rules.push(i);
                    c.regexes.push(re);
                    patterns.push(p.as_str());
                }
                Matcher::Keywords(list) => {
                    if list.is_empty() || list.len() > MAX_KEYWORDS {
                        return Err(err(format!("{field}.keywords"), format!("must hold 1-{MAX_KEYWORDS} phrases")));
                    }
                    for (j, w) in list.iter().enumerate() {
                        if w.trim().is_empty() || w.len() > MAX_KEYWORD_BYTES {
                            return Err(err(
                                format!("{field}.keywords[{j}]"),
                                format!("must be 1-{MAX_KEYWORD_BYTES} bytes and not blank"),
                            ));
                        }
                        c.keyword_rules.push(i);
                        words.push(w.clone());
                    }
                }
            }
            let input = r.input.unwrap_or(Action::Block);
            let output = r.output.unwrap_or(Action::Off);
            c.names.push(r.name.clone());
            c.actions.push((input, output));
        }
        if !patterns.is_empty() {
            let set = RegexSetBuilder::new(&patterns)
                .size_limit(MAX_REGEX_SIZE * MAX_CUSTOM_RULES)
                .dfa_size_limit(MAX_REGEX_SIZE * MAX_CUSTOM_RULES)
                .build()
                .map_err(|e| err("custom", regex_problem(&e)))?;
            c.set = Some(set);
        }
        if !words.is_empty() {
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&words)
                .map_err(|_| err("custom", "keyword lists are too large to compile"))?;
            c.keywords = Some(ac);
        }
        Ok(Some(c))
    }

    fn actions(&self, dir: usize) -> impl Iterator<Item = Action> + Clone + '_ {
        self.actions.iter().map(move |a| if dir == 0 { a.0 } else { a.1 })
    }

    pub(crate) fn action(&self, rule: usize, dir: Direction) -> Action {
        self.actions.get(rule).map_or(Action::Off, |a| pick(*a, dir))
    }

    pub(crate) fn regex_rule(&self, i: usize) -> usize {
        self.regex_rules[i]
    }

    pub(crate) fn keyword_rule(&self, i: usize) -> usize {
        self.keyword_rules[i]
    }
}

/// The regex error without the pattern text.
fn regex_problem(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(_) => "pattern compiles too large".to_owned(),
        _ => "invalid regular expression".to_owned(),
    }
}

/// The default a fresh deployment runs with (see docs/GUARDRAILS.md): secrets never leave in
/// a prompt and are redacted in answers; PII and injection are flagged (audited) only.
pub fn default_spec() -> PolicySpec {
    let mut detectors = BTreeMap::new();
    detectors.insert("secret".to_owned(), Rule { input: Some(Action::Block), output: Some(Action::Redact) });
    detectors.insert("pii".to_owned(), Rule { input: Some(Action::Flag), output: Some(Action::Off) });
    detectors.insert(INJECTION_KEY.to_owned(), Rule { input: Some(Action::Flag), output: Some(Action::Off) });
    PolicySpec { detectors, ..PolicySpec::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> PolicySpec {
        serde_json::from_str(json).unwrap()
    }

    fn index(id: &str) -> usize {
        DETECTORS.iter().position(|d| d.id == id).unwrap()
    }

    #[test]
    fn most_specific_key_wins_per_direction() {
        let p = spec(r#"{"detectors":{"*":{"input":"flag","output":"flag"},"pii":{"input":"redact"},"pii.email":{"output":"block"}}}"#)
            .compile()
            .unwrap();
        assert_eq!(p.builtin(index("pii.email"), Direction::In), Action::Redact);
        assert_eq!(p.builtin(index("pii.email"), Direction::Out), Action::Block);
        assert_eq!(p.builtin(index("pii.ssn"), Direction::Out), Action::Flag);
        assert_eq!(p.builtin(index("secret.jwt"), Direction::In), Action::Flag);
        assert_eq!(p.injection(InjectionCategory::RoleConfusion, Direction::In), Action::Off, "* is not injection");
        assert!(p.rewrites_output());
    }

    #[test]
    fn layers_override_per_key_and_direction() {
        let base = default_spec();
        let org = spec(r#"{"detectors":{"pii":{"input":"redact"}},"injection_threshold":0.5}"#);
        let project = spec(r#"{"detectors":{"pii":{"output":"redact"},"prompt_injection":{"input":"block"}}}"#);
        let p = base.layered(&org).layered(&project).compile().unwrap();
        assert_eq!(p.builtin(index("pii.email"), Direction::In), Action::Redact);
        assert_eq!(p.builtin(index("pii.email"), Direction::Out), Action::Redact);
        assert_eq!(p.builtin(index("secret.openai"), Direction::In), Action::Block);
        assert_eq!(p.injection(InjectionCategory::InstructionHijacking, Direction::In), Action::Block);
        assert_eq!(p.threshold, 0.5);
        assert!(!Policy::off().active(Direction::In));
    }

    #[test]
    fn bad_specs_name_the_field_never_the_pattern() {
        let bad = [
            (r#"{"detectors":{"pii.emial":{"input":"block"}}}"#, "detectors.pii.emial"),
            (r#"{"detectors":{"prompt_injection":{"input":"redact"}}}"#, "detectors.prompt_injection"),
            (r#"{"injection_threshold":0}"#, "injection_threshold"),
            (r#"{"custom":[{"name":"Bad Name","keywords":["x"]}]}"#, "custom[0].name"),
            (r#"{"custom":[{"name":"a","regex":"(unclosed-secret"}]}"#, "custom[0].regex"),
            (r#"{"custom":[{"name":"a","regex":"x*"}]}"#, "custom[0].regex"),
            (r#"{"custom":[{"name":"a","regex":"\\w{1000}\\w{1000}\\w{1000}"}]}"#, "custom[0].regex"),
            (r#"{"custom":[{"name":"a","keywords":[]}]}"#, "custom[0].keywords"),
            (r#"{"custom":[{"name":"a","keywords":["ok"," "]}]}"#, "custom[0].keywords[1]"),
            (r#"{"custom":[{"name":"a","keywords":["x"]},{"name":"a","keywords":["y"]}]}"#, "custom[1].name"),
        ];
        for (json, field) in bad {
            let e = spec(json).compile().unwrap_err();
            assert_eq!(e.field, field, "{json}");
            assert!(!e.message.contains("secret") && !e.message.contains("unclosed"), "{e}");
        }
        let long = format!(r#"{{"custom":[{{"name":"a","regex":"{}"}}]}}"#, "a".repeat(MAX_PATTERN_BYTES + 1));
        assert_eq!(spec(&long).compile().unwrap_err().field, "custom[0].regex");
        assert!(serde_json::from_str::<PolicySpec>(r#"{"detectors":{},"surprise":1}"#).is_err());
    }
}
