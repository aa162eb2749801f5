//! The learned prompt-injection scorer, beside the phrase and pattern signals of
//! [`crate::injection`]: logistic regression over hashed word features, so it reads any
//! language written with words (and Chinese, Japanese and Thai by character pairs) and
//! phrasings no phrase list names.
//!
//! Features of a normalised text: each word (lower case, digits folded to `0`, at most
//! [`MAX_WORD`] characters), its first [`PREFIX`] characters when it is longer (inflected
//! forms share them), each pair of neighbouring words, and each word's character trigrams
//! (with start and end marks: inflections, compounds and misspellings share them); in scripts
//! written without spaces every character is a word. Each feature is hashed into one of
//! 2^[`BITS`] weights. A text's logit is `bias + Σ weights / √features` (at least
//! [`MIN_FEATURES`] counted); long documents are also scored window by window ([`WINDOW`]
//! features, half-overlapping) and the highest wins, so one paragraph of instructions inside a
//! long e-mail is not averaged away.
//!
//! The weights are trained offline (`scripts/train-injection-model.sh`, which runs
//! `examples/train_injection.rs` on tests/data/guardrails/injection.jsonl) and shipped in
//! `model/injection.bin`; the same [`features`] and [`logit`] functions serve training and
//! scoring, so the two cannot drift. The file carries the calibrated cut-off: the logit at
//! which the score equals [`crate::policy::DEFAULT_THRESHOLD`], chosen for a false-positive
//! rate of 1.5% on benign training text scored out of fold.
//!
//! Cost: one pass over the text, a hash step per byte, a weight look-up per character
//! (trigrams) and three more per word; integer sums; no allocation.

use unicode_normalization::char::is_combining_mark;

/// 2^BITS weights.
pub const BITS: u32 = 18;
/// Characters of a word that count (longer words are cut: a hash of a 10 KiB "word" tells
/// nothing more).
pub const MAX_WORD: usize = 24;
/// A word longer than this also yields its first `PREFIX` characters as a feature.
pub const PREFIX: usize = 5;
/// Features per window for long texts.
pub const WINDOW: usize = 128;
/// A text with fewer features is scored as if it had this many: one loaded word in a short
/// text ("my secret is ...", a tool call's `{"q": "prompt"}`) is not a verdict by itself.
pub const MIN_FEATURES: usize = 32;

const MAGIC: &[u8; 8] = b"GHINJ001";
const HEADER: usize = 8 + 4 + 4 * 3;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Feature kinds hash apart.
const KIND_WORD: u64 = 0x57;
const KIND_PREFIX: u64 = 0x50_5245;
const KIND_PAIR: u64 = 0x5041_4952;
const KIND_TRIGRAM: u64 = 0x5452_4947;

static SHIPPED: &[u8] = include_bytes!("../model/injection.bin");

/// The weights, read in place from the shipped bytes (decoding them into a table of `i16`
/// measured no faster and would cost 512 KiB of heap per process).
pub struct Classifier {
    weights: &'static [[u8; 2]],
    bias: f32,
    scale: f32,
    /// Added to a logit so that the calibrated cut-off lands on the default threshold's logit.
    shift: f32,
}

impl Classifier {
    /// The model shipped with this build.
    pub fn shipped() -> Result<Classifier, crate::Error> {
        Classifier::from_bytes(SHIPPED).ok_or(crate::Error::Build("injection model"))
    }

    /// Parses a model file (`None` when it is not one of this version and size).
    pub fn from_bytes(bytes: &'static [u8]) -> Option<Classifier> {
        let (head, weights) = bytes.split_at_checked(HEADER)?;
        let f32_at = |i: usize| head.get(i..i + 4).and_then(|b| b.try_into().ok()).map(f32::from_le_bytes);
        let bits = u32::from_le_bytes(head.get(8..12)?.try_into().ok()?);
        if &head[..8] != MAGIC || bits != BITS || weights.len() != 2 << BITS {
            return None;
        }
        let (weights, []) = weights.as_chunks::<2>() else { return None };
        let (bias, scale, cutoff) = (f32_at(12)?, f32_at(16)?, f32_at(20)?);
        let t = crate::policy::DEFAULT_THRESHOLD;
        let shift = (t / (1.0 - t)).ln() - cutoff;
        let c = Classifier { weights, bias, scale, shift };
        (bias.is_finite() && scale.is_finite() && shift.is_finite()).then_some(c)
    }

    fn weight(&self, feature: u32) -> i16 {
        self.weights.get(feature as usize).map_or(0, |w| i16::from_le_bytes(*w))
    }

    /// The highest logit of the whole text and of its windows; `None` for a text without a
    /// single word.
    pub fn logit(&self, normalized: &str) -> Option<f32> {
        logit(normalized, self.bias, self.scale, |f| self.weight(f))
    }

    /// The logit mapped so that the calibrated cut-off lands on the default threshold:
    /// `score >= DEFAULT_THRESHOLD` exactly when the logit reaches the cut-off; a stricter
    /// threshold asks for more.
    pub fn score(&self, normalized: &str) -> f32 {
        let Some(z) = self.logit(normalized) else { return 0.0 };
        1.0 / (1.0 + (-(z + self.shift)).exp())
    }
}

/// `bias + scale · Σ weight / √max(features, MIN_FEATURES)` of the whole text and of each
/// window of [`WINDOW`] features (every half window), the highest; `None` for a text without a single word. The
/// scorer and the trainer (on its quantised weights) both score through here. Integer sums:
/// exact, and cheaper than floating point per feature.
pub fn logit(normalized: &str, bias: f32, scale: f32, weight: impl Fn(u32) -> i16) -> Option<f32> {
    // a window is two blocks of half a window: the block before and the one just ended
    let (mut total, mut block, mut before, mut n) = (0i64, 0i64, 0i64, 0usize);
    let mut best = i64::MIN;
    features(normalized, |f| {
        let w = i64::from(weight(f));
        block += w;
        total += w;
        n += 1;
        if n % (WINDOW / 2) == 0 {
            if n >= WINDOW {
                best = best.max(before + block);
            }
            before = std::mem::take(&mut block);
        }
    });
    if n == 0 {
        return None;
    }
    let whole = total as f64 / (n.max(MIN_FEATURES) as f64).sqrt();
    let windows = if best == i64::MIN { f64::NEG_INFINITY } else { best as f64 / (WINDOW as f64).sqrt() };
    Some(bias + scale * whole.max(windows) as f32)
}

/// Serialises a model (for the trainer): quantised weights, their scale, bias and cut-off.
pub fn to_bytes(weights: &[i16], scale: f32, bias: f32, cutoff: f32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + weights.len() * 2);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&BITS.to_le_bytes());
    for v in [bias, scale, cutoff] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for w in weights {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

fn bucket(h: u64, kind: u64) -> u32 {
    // a multiplicative mix so the top bits depend on every input bit
    ((h ^ kind).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS)) as u32
}

/// Scripts written without spaces between words: each character stands for a word.
fn unspaced(c: char) -> bool {
    matches!(c,
        '\u{0E00}'..='\u{0EFF}'     // Thai, Lao
        | '\u{1000}'..='\u{109F}'   // Myanmar
        | '\u{1780}'..='\u{17FF}'   // Khmer
        | '\u{3040}'..='\u{30FF}'   // Hiragana, Katakana
        | '\u{3400}'..='\u{4DBF}'   // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'   // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}'   // CJK compatibility ideographs
        | '\u{20000}'..='\u{2A6DF}' // CJK extension B
    )
}

/// The word being read.
struct Word {
    hash: u64,
    prefix: u64,
    chars: usize,
    previous: u64,
    /// The two characters before the next, `<` standing for the word's start.
    recent: [char; 2],
}

fn trigram(a: char, b: char, c: char) -> u32 {
    // three 21-bit code points side by side: one multiply in `bucket`, not a hash per byte
    bucket((u64::from(a) << 42) | (u64::from(b) << 21) | u64::from(c), KIND_TRIGRAM)
}

impl Word {
    fn push(&mut self, c: char, emit: &mut impl FnMut(u32)) {
        if self.chars >= MAX_WORD {
            return;
        }
        if self.chars > 0 {
            emit(trigram(self.recent[0], self.recent[1], c));
        }
        self.recent = [self.recent[1], c];
        self.hash = if c.is_ascii() {
            fnv(self.hash, &[c as u8])
        } else {
            fnv(self.hash, c.encode_utf8(&mut [0u8; 4]).as_bytes())
        };
        self.chars += 1;
        if self.chars == PREFIX {
            self.prefix = self.hash;
        }
    }

    fn end(&mut self, emit: &mut impl FnMut(u32)) {
        if self.chars == 0 {
            return;
        }
        emit(bucket(self.hash, KIND_WORD));
        if self.chars > PREFIX + 1 {
            emit(bucket(self.prefix, KIND_PREFIX));
        }
        emit(bucket(self.previous.rotate_left(23) ^ self.hash, KIND_PAIR));
        if self.chars > 1 {
            emit(trigram(self.recent[0], self.recent[1], '>'));
        }
        self.previous = self.hash;
        self.hash = FNV_OFFSET;
        self.chars = 0;
        self.recent = ['<', '<'];
    }
}

/// Calls `emit` with each feature of `normalized`, in text order.
pub fn features(normalized: &str, mut emit: impl FnMut(u32)) {
    let mut w = Word { hash: FNV_OFFSET, prefix: 0, chars: 0, previous: 0, recent: ['<', '<'] };
    for c in normalized.chars() {
        if c.is_ascii() {
            // most text: no table look-ups
            if c.is_ascii_alphanumeric() {
                w.push(if c.is_ascii_digit() { '0' } else { c.to_ascii_lowercase() }, &mut emit);
            } else if c != '\'' {
                w.end(&mut emit);
            }
        } else if unspaced(c) {
            w.end(&mut emit);
            w.push(c, &mut emit);
            w.end(&mut emit);
        } else if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                w.push(if l.is_numeric() { '0' } else { l }, &mut emit);
            }
        } else if c != '’' && !is_combining_mark(c) {
            // apostrophes stay inside a word ("don't"); so do combining marks (a Devanagari
            // virama, Arabic vowel signs)
            w.end(&mut emit);
        }
    }
    w.end(&mut emit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> Vec<u32> {
        let mut v = Vec::new();
        features(text, |f| v.push(f));
        v
    }

    #[test]
    fn features_ignore_case_and_punctuation_and_fold_digits() {
        assert_eq!(collect("Ignore, PREVIOUS instructions!"), collect("ignore previous instructions"));
        assert_eq!(collect("room 101"), collect("room 999"));
        assert_ne!(collect("ignore previous"), collect("previous ignore"), "word pairs keep the order");
        // a word yields itself, its pair with the previous one and its character trigrams
        // (with start and end marks: `<hi`, `hi>`), a long word its prefix too
        assert_eq!(collect("hi").len(), 4);
        assert_eq!(collect("instructions").len(), 3 + 12);
        assert!(collect("").is_empty() && collect(" ,.;\n").is_empty());
    }

    #[test]
    fn unspaced_scripts_read_character_by_character() {
        // 忽略 = two characters: two words, each with its pair
        assert_eq!(collect("忽略").len(), 4);
        assert_eq!(collect("忽略之前"), collect("忽略 之前"));
    }

    #[test]
    fn a_long_word_is_cut_and_every_input_is_finite() {
        let long = "a".repeat(10_000);
        assert_eq!(collect(&long), collect(&"a".repeat(MAX_WORD + 1)));
        let c = Classifier::shipped().unwrap();
        for t in ["", "....", &long, "x", &"word ".repeat(5000)] {
            let s = c.score(t);
            assert!((0.0..=1.0).contains(&s), "{t:.20}: {s}");
        }
        assert_eq!(c.score("  !? "), 0.0, "no words, no score");
    }

    #[test]
    fn a_model_file_of_another_size_or_version_is_refused() {
        assert!(Classifier::from_bytes(b"GHINJ001").is_none());
        let mut wrong: Vec<u8> = SHIPPED.to_vec();
        wrong[0] = b'X';
        assert!(Classifier::from_bytes(Box::leak(wrong.into_boxed_slice())).is_none());
        let short = &SHIPPED[..SHIPPED.len() - 2];
        assert!(Classifier::from_bytes(short).is_none());
        assert!(Classifier::shipped().is_ok());
    }
}
