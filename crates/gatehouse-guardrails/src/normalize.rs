//! Normalisation that defeats the cheap smuggling tricks before any detector runs: NFKC
//! (fullwidth and other compatibility forms fold to ASCII: `ｓｋ-` -> `sk-`), and removal of
//! zero-width and bidirectional control characters (`s\u{200b}k-` -> `sk-`).
//!
//! Detectors run on the normalised text; every byte of it remembers which original byte it
//! came from, so findings are reported (and redacted) as spans of the original.

use unicode_normalization::UnicodeNormalization;

/// Characters that render as nothing or reorder text: dropped before detection.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                      // soft hyphen
        | '\u{034F}'                    // combining grapheme joiner
        | '\u{061C}'                    // arabic letter mark
        | '\u{115F}' | '\u{1160}'       // hangul fillers
        | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'       // mongolian variation selectors and vowel separator
        | '\u{200B}'..='\u{200F}'       // zero-width space/joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}'       // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}'       // word joiner, invisible operators
        | '\u{2066}'..='\u{206F}'       // bidi isolates, deprecated format controls
        | '\u{3164}' | '\u{FFA0}'       // hangul fillers
        | '\u{FE00}'..='\u{FE0F}'       // variation selectors
        | '\u{FEFF}'                    // zero-width no-break space / BOM
        | '\u{E0000}'..='\u{E007F}'     // tag characters (ASCII smuggling)
    )
}

/// The normalised text and, for each of its bytes, the original byte offset it came from.
pub struct Normalized {
    pub text: String,
    /// Empty for ASCII input (unchanged), where every byte maps to itself.
    origin: Vec<u32>,
    original_len: usize,
    /// Whether any character was dropped or replaced (equal lengths do not imply equal text).
    changed: bool,
}

impl Normalized {
    /// Maps a span of the normalised text back to the original. The end maps to the end of
    /// the original character the last normalised byte came from.
    pub fn original_span(&self, start: usize, end: usize, original: &str) -> (usize, usize) {
        if self.origin.is_empty() && !self.changed {
            let s = start.min(self.original_len);
            return (s, end.min(self.original_len).max(s));
        }
        let s = self.origin.get(start).map_or(self.original_len, |o| *o as usize);
        let e = if end == 0 {
            s
        } else {
            match self.origin.get(end - 1) {
                Some(o) => {
                    let o = *o as usize;
                    o + original[o..].chars().next().map_or(0, char::len_utf8)
                }
                None => self.original_len,
            }
        };
        (s, e.max(s))
    }

    /// True when normalisation changed nothing (spans map one to one).
    pub fn is_identity(&self) -> bool {
        !self.changed
    }
}

/// NFKC per character (composition across characters is not needed to expose a smuggled
/// ASCII token) and invisible characters removed. Texts over 4 GiB are not ours to scan.
pub fn normalize(original: &str) -> Normalized {
    // ASCII is its own NFKC and has no invisible characters: a copy, and spans map one to one
    if original.is_ascii() {
        return Normalized {
            text: original.to_owned(),
            origin: Vec::new(),
            original_len: original.len(),
            changed: false,
        };
    }
    let mut text = String::with_capacity(original.len());
    let mut origin = Vec::with_capacity(original.len());
    let mut changed = false;
    for (i, c) in original.char_indices() {
        let at = u32::try_from(i).unwrap_or(u32::MAX);
        if is_invisible(c) {
            changed = true;
            continue;
        }
        let before = text.len();
        if c.is_ascii() {
            text.push(c);
        } else {
            text.extend(std::iter::once(c).nfkc());
            changed |= text[before..].chars().ne(std::iter::once(c));
        }
        origin.resize(text.len(), at);
    }
    Normalized { text, origin, original_len: original.len(), changed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smuggling_folds_away_and_spans_map_back() {
        let s = "key: ｓｋ-\u{200b}abc";
        let n = normalize(s);
        assert_eq!(n.text, "key: sk-abc");
        let i = n.text.find("sk-").unwrap();
        let (a, b) = n.original_span(i, n.text.len(), s);
        assert_eq!(&s[a..b], "ｓｋ-\u{200b}abc");
        assert!(!n.is_identity());
        assert!(normalize("plain ascii").is_identity());
        let ascii = normalize("call 555");
        assert_eq!((ascii.text.as_str(), ascii.original_span(5, 8, "call 555")), ("call 555", (5, 8)));
        assert!(normalize("naïve café").is_identity(), "already NFKC");
        // same byte length, different text: a 4-byte letter folds to 2 bytes, a 2-byte
        // cedilla unfolds to 3
        let tricky = "𞹴¸x";
        let n = normalize(tricky);
        assert!(!n.is_identity());
    }
}
