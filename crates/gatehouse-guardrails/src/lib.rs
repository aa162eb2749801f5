//! The guardrail detection engine. Pure: text in, findings out, no I/O, no allocation per
//! detector beyond the findings.
//!
//! One scan: normalise ([`normalize`]: NFKC, invisible and bidi controls removed), find where
//! any detector's matches end (one pass of a lazy DFA of every pattern over the text), run
//! each detector that matched only over the windows those ends bound, validate candidates
//! (checksums, ranges, parsing, entropy), map spans back to the original text and resolve
//! overlaps (earlier, then longer, then the detector listed first wins).
//! [`Engine::redact`] replaces findings with typed placeholders (`[EMAIL_1]`); the same value
//! gets the same placeholder, so a conversation stays coherent, and [`restore`] can put
//! values back into a response for the caller who owned them.
//!
//! Prompt injection is scored separately ([`injection`]). [`policy`] says what each detector
//! does per direction; [`guard`] applies a policy to whole texts and to streamed pieces.

pub mod classifier;
pub mod detectors;
pub mod eval;
pub mod guard;
pub mod injection;
pub mod normalize;
pub mod policy;
pub mod settings;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use regex_automata::hybrid::dfa::{Cache, DFA, OverlappingState};
use regex_automata::util::pool::Pool;
use regex_automata::{Input, MatchKind, meta, nfa::thompson};

pub use detectors::{Category, DETECTORS, Detector};
pub use guard::{Guard, Held, Hit, Report};
pub use normalize::normalize;
pub use policy::{Action, Direction, Policy, PolicySpec, SpecError};
pub use settings::Settings;

/// Texts longer than this are refused by the caller before scanning (fail closed).
pub const MAX_SCAN_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub detector: &'static str,
    pub category: Category,
    pub label: &'static str,
    /// Byte span in the original text.
    pub span: Range<usize>,
}

/// The engine's one error type.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The text is larger than the engine scans ([`MAX_SCAN_BYTES`]).
    TooLarge,
    /// A built-in pattern or phrase list did not compile: a bug, caught by every test.
    Build(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::TooLarge => f.write_str("text larger than the guardrail scan limit"),
            Error::Build(what) => write!(f, "built-in guardrail {what} did not compile"),
        }
    }
}

impl std::error::Error for Error {}

type CachePool = Pool<Cache, Box<dyn Fn() -> Cache + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>>;

pub struct Engine {
    /// Every detector's pattern in one lazy DFA with all-matches semantics: one pass reports
    /// each (detector, end of a match) pair.
    ends: Arc<DFA>,
    /// Its per-thread search state.
    caches: CachePool,
    regexes: Vec<meta::Regex>,
    /// The longest text each detector can match, in bytes (`None`: unbounded).
    max_len: Vec<Option<usize>>,
}

/// Encoded blobs are decoded and scanned too (a base64'd key is still a key): at most this
/// many blobs of at most this many bytes per text, and one level deep.
const MAX_BLOBS: usize = 8;
const MAX_BLOB: usize = 4096;
/// Shortest run of base64 characters treated as a blob (an encoded 16-byte value), and of hex
/// digits (an encoded 24-byte value).
const MIN_BASE64: usize = 24;
const MIN_HEX: usize = 48;

/// The encoded blobs of a text, at most [`MAX_BLOBS`]: maximal runs of base64 characters
/// (with up to two `=`), decoded as hex when every character is a hex digit and the run is
/// long enough, else as base64. Probes every [`MIN_BASE64`]th byte (any run that long covers a
/// probe) and widens only around hits, so prose costs a fraction of a pass.
fn blobs(text: &str) -> impl Iterator<Item = (std::ops::Range<usize>, Vec<u8>)> + '_ {
    let b = text.as_bytes();
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    // `probe` walks the text; nothing before `seen` is looked at twice
    let (mut probe, mut seen) = (0usize, 0usize);
    std::iter::from_fn(move || {
        while probe < b.len() {
            if !is_b64(b[probe]) {
                probe += MIN_BASE64;
                continue;
            }
            let mut start = probe;
            while start > seen && is_b64(b[start - 1]) {
                start -= 1;
            }
            let mut stop = probe + 1;
            while stop < b.len() && is_b64(b[stop]) {
                stop += 1;
            }
            let mut end = stop;
            while end < b.len() && end - stop < 2 && b[end] == b'=' {
                end += 1;
            }
            (probe, seen) = (end, end);
            let run = &text[start..stop];
            let capped = &run[..run.len().min(MAX_BLOB)];
            let decoded = if run.len() >= MIN_HEX && run.bytes().all(|c| c.is_ascii_hexdigit()) {
                hex::decode(&capped[..capped.len() & !1]).ok()
            } else if run.len() >= MIN_BASE64 {
                decode_base64(capped)
            } else {
                None
            };
            if let Some(d) = decoded {
                return Some((start..end, d));
            }
        }
        None
    })
    .take(MAX_BLOBS)
}

impl Engine {
    /// The built-in detectors. Patterns are static; a failure to compile is a bug caught by
    /// the tests, reported as an error rather than a panic.
    pub fn new() -> Result<Engine, Error> {
        const LIMIT: usize = 64 * 1024 * 1024;
        let patterns: Vec<&str> = DETECTORS.iter().map(|d| d.pattern).collect();
        let ends = DFA::builder()
            .configure(DFA::config().match_kind(MatchKind::All).cache_capacity(LIMIT).unicode_word_boundary(true))
            .thompson(thompson::Config::new().nfa_size_limit(Some(LIMIT)).which_captures(thompson::WhichCaptures::None))
            .build_many(&patterns)
            .map_err(|_| Error::Build("detector set"))?;
        let ends = Arc::new(ends);
        let for_pool = ends.clone();
        // what `regex::RegexBuilder`'s `size_limit` and `dfa_size_limit` set; the one-pass DFA
        // keeps its default limit (1 MiB): raised, the URL-credentials pattern alone built a
        // 1.4 MiB one, for resolving the value's span of a match (the backtracker does that)
        let config = meta::Config::new().nfa_size_limit(Some(LIMIT)).hybrid_cache_capacity(LIMIT);
        Ok(Engine {
            caches: Pool::new(Box::new(move || for_pool.create_cache())),
            ends,
            regexes: patterns
                .iter()
                .map(|p| meta::Regex::builder().configure(config.clone()).build(p).ok())
                .collect::<Option<_>>()
                .ok_or(Error::Build("detector pattern"))?,
            max_len: patterns
                .iter()
                .map(|p| regex_syntax::parse(p).ok().map(|h| h.properties().maximum_len()))
                .collect::<Option<_>>()
                .ok_or(Error::Build("detector pattern"))?,
        })
    }

    pub fn scan(&self, text: &str) -> Result<Vec<Finding>, Error> {
        if text.len() > MAX_SCAN_BYTES {
            return Err(Error::TooLarge);
        }
        self.scan_normalized(text, &normalize(text))
    }

    /// [`Engine::scan`] on a text already normalised (so the injection detector and this
    /// scan share one normalisation).
    pub fn scan_normalized(&self, text: &str, n: &normalize::Normalized) -> Result<Vec<Finding>, Error> {
        if text.len() > MAX_SCAN_BYTES {
            return Err(Error::TooLarge);
        }
        let mut found = Vec::new();
        self.find_in(&n.text, &self.windows(&n.text), &mut |i, f, s, e| {
            let (s, e) = if n.is_identity() { (s, e) } else { n.original_span(s, e, text) };
            found.push((i, Finding { detector: f.id, category: f.category, label: f.label, span: s..e }));
        });
        // a blob that decodes to text holding a finding is that finding, over the whole blob
        for (range, bytes) in blobs(&n.text) {
            let Ok(inner) = std::str::from_utf8(&bytes) else { continue };
            let mut first = None;
            self.find_in(inner, &self.windows(inner), &mut |i, f, _, _| {
                first.get_or_insert((i, f));
            });
            if let Some((i, f)) = first {
                let (s, e) = if n.is_identity() {
                    (range.start, range.end)
                } else {
                    n.original_span(range.start, range.end, text)
                };
                found.push((i, Finding { detector: f.id, category: f.category, label: f.label, span: s..e }));
            }
        }
        // earlier first; at one start a secret before PII (a URL's password before the address
        // its `@` makes it look like), then longer, then the detector listed first
        let secret_first = |f: &Finding| u8::from(f.category != Category::Secret);
        found.sort_by(|(ia, a), (ib, b)| {
            a.span
                .start
                .cmp(&b.span.start)
                .then(secret_first(a).cmp(&secret_first(b)))
                .then(b.span.end.cmp(&a.span.end))
                .then(ia.cmp(ib))
        });
        let mut out: Vec<Finding> = Vec::with_capacity(found.len());
        for (_, f) in found {
            if out.last().is_some_and(|l| f.span.start < l.span.end) {
                continue;
            }
            out.push(f);
        }
        Ok(out)
    }

    /// Where each detector must look: (detector, window) pairs. Every match of a detector ends
    /// where the all-matches pass reported one of its ends, and starts at most its longest match
    /// before that end; so overlapping windows `end - longest .. end`, merged, hold every match
    /// of the detector, each whole, and searching only them finds what a pass over the whole
    /// text would (look-around still sees the text around a window). An unbounded detector
    /// looks from the start of the text to its last end.
    fn windows(&self, text: &str) -> Vec<(usize, Range<usize>)> {
        let mut open: Vec<Option<Range<usize>>> = vec![None; self.regexes.len()];
        let mut out = Vec::new();
        let mut cache = self.caches.get();
        let input = Input::new(text);
        let mut state = OverlappingState::start();
        loop {
            if self.ends.try_search_overlapping_fwd(&mut cache, &input, &mut state).is_err() {
                // the lazy DFA gave up (e.g. on its cache): every detector over the whole text
                return self.everywhere(text);
            }
            let Some(m) = state.get_match() else { break };
            let (i, end) = (m.pattern().as_usize(), m.offset());
            let mut start = self.max_len[i].map_or(0, |l| end.saturating_sub(l));
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            match &mut open[i] {
                Some(w) if start <= w.end => w.end = end,
                slot => {
                    if let Some(w) = slot.replace(start..end) {
                        out.push((i, w));
                    }
                }
            }
        }
        out.extend(open.into_iter().enumerate().filter_map(|(i, w)| Some((i, w?))));
        out
    }

    /// Every detector over the whole of `text`: what a scan falls back to.
    fn everywhere(&self, text: &str) -> Vec<(usize, Range<usize>)> {
        (0..self.regexes.len()).map(|i| (i, 0..text.len())).collect()
    }

    /// Every detector over the whole text, without the windows: what the windows must equal
    /// (tests).
    #[doc(hidden)]
    pub fn scan_exhaustive(&self, text: &str) -> Vec<(&'static str, Range<usize>)> {
        self.spans(text, &self.everywhere(text))
    }

    /// [`Engine::scan_exhaustive`]'s result through the windows.
    #[doc(hidden)]
    pub fn scan_windowed(&self, text: &str) -> Vec<(&'static str, Range<usize>)> {
        self.spans(text, &self.windows(text))
    }

    /// Each validated candidate in `windows` as (detector, span), in text order.
    fn spans(&self, text: &str, windows: &[(usize, Range<usize>)]) -> Vec<(&'static str, Range<usize>)> {
        let mut out = Vec::new();
        self.find_in(text, windows, &mut |_, d, s, e| out.push((d.id, s..e)));
        out.sort_by_key(|(id, r)| (r.start, r.end, *id));
        out
    }

    /// Runs each detector over its windows of `text`, validates candidates and reports each
    /// with its (normalised-text) span.
    fn find_in(
        &self,
        text: &str,
        windows: &[(usize, Range<usize>)],
        found: &mut impl FnMut(usize, &'static Detector, usize, usize),
    ) {
        for (i, window) in windows {
            let d = &DETECTORS[*i];
            for caps in self.regexes[*i].captures_iter(Input::new(text).range(window.clone())) {
                // a pattern of several branches names its value in each: the one that matched (a
                // branch without a group is its whole match)
                let Some(m) = caps
                    .get_group(d.group)
                    .or_else(|| (d.group + 1..caps.group_len()).find_map(|g| caps.get_group(g)))
                    .or_else(|| caps.get_match().map(|m| m.span()))
                else {
                    continue;
                };
                // a PEM block is validated by its header, a trimmed value without what was cut
                let end = detectors::span_end(d.id, text, m.start, m.end);
                if !(d.validate)(&text[m.start..end.min(m.end)]) {
                    continue;
                }
                found(*i, d, m.start, end);
            }
        }
    }

    /// Replaces each finding with its typed placeholder. `placeholders` carries the mapping
    /// across calls of one request (same value, same placeholder).
    pub fn redact(&self, text: &str, findings: &[Finding], placeholders: &mut Placeholders) -> String {
        redact_spans(text, findings, placeholders)
    }
}

pub(crate) fn redact_spans(text: &str, findings: &[Finding], placeholders: &mut Placeholders) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        if f.span.start < at || f.span.end > text.len() || f.span.start >= f.span.end {
            continue;
        }
        out.push_str(&text[at..f.span.start]);
        out.push_str(&placeholders.name(f.label, &text[f.span.clone()]));
        at = f.span.end;
    }
    out.push_str(&text[at..]);
    out
}

fn decode_base64(blob: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let b = blob.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD.decode(b).ok()
}

/// The placeholder <-> value map of one request.
#[derive(Default, Debug)]
pub struct Placeholders {
    by_value: HashMap<String, String>,
    by_name: HashMap<String, String>,
    counts: HashMap<&'static str, usize>,
    sealed: bool,
}

impl Placeholders {
    fn name(&mut self, label: &'static str, value: &str) -> String {
        if let Some(n) = self.by_value.get(value) {
            return n.clone();
        }
        let c = self.counts.entry(label).or_insert(0);
        *c += 1;
        let name = format!("[{label}_{c}]");
        self.by_value.insert(value.to_owned(), name.clone());
        if !self.sealed {
            self.by_name.insert(name.clone(), value.to_owned());
        }
        name
    }

    /// Ends the request side: placeholders made from now on (for values the provider wrote)
    /// are never restored, only the caller's own values are.
    pub fn seal(&mut self) {
        self.sealed = true;
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Puts the original values back where a response repeats a placeholder of this request.
pub fn restore(text: &str, placeholders: &Placeholders) -> String {
    if placeholders.is_empty() || !text.contains('[') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match tail.find(']').map(|j| &tail[..=j]).and_then(|name| placeholders.by_name.get(name).map(|v| (name, v))) {
            Some((name, value)) => {
                out.push_str(value);
                rest = &tail[name.len()..];
            }
            None => {
                out.push('[');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
