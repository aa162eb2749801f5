//! The built-in PII and secret detectors: a pattern to find candidates and, where a pattern
//! alone would over-match, a validator (Luhn and issuer prefix, SSN ranges, address parsing,
//! IBAN mod-97, entropy).

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    Pii,
    Secret,
}

impl Category {
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Pii => "pii",
            Category::Secret => "secret",
        }
    }
}

pub struct Detector {
    /// Stable id: `pii.email`, `secret.openai`... (policies and audit use it).
    pub id: &'static str,
    pub category: Category,
    /// The placeholder label: `[EMAIL_1]`.
    pub label: &'static str,
    pub pattern: &'static str,
    /// Capture group holding the sensitive part (0 = the whole match).
    pub group: usize,
    pub validate: fn(&str) -> bool,
}

/// A PEM block runs from its header to `-----END ... PRIVATE KEY-----`, at most 16 KiB on; a
/// header without a footer is redacted to the end of its base64 body.
pub fn pem_end(text: &str, header_end: usize) -> usize {
    const MAX: usize = 16 * 1024;
    let mut limit = (header_end + MAX).min(text.len());
    while !text.is_char_boundary(limit) {
        limit -= 1;
    }
    let window = &text[header_end..limit];
    if let Some(i) = window.find("-----END ") {
        let after = &window[i + 9..];
        if let Some(j) = after.find("PRIVATE KEY-----") {
            return header_end + i + 9 + j + "PRIVATE KEY-----".len();
        }
    }
    let body = window
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r' | b' '))
        .count();
    header_end + body
}

fn any(_: &str) -> bool {
    true
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect()
}

/// Luhn over 13..19 digits, and a prefix some card network issues.
/// Maestro's ranges; 12-digit Maestro numbers exist but are left out (13-19 digits are
/// checked, and 12 bare digits are too often something else).
fn maestro(prefix4: u32, len: usize) -> bool {
    matches!(prefix4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763) && (13..=19).contains(&len)
}

pub fn card(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    if !sum.is_multiple_of(10) {
        return false;
    }
    let prefix = |n: usize| d.iter().take(n).fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    let len = d.len();
    match d[0] {
        4 => matches!(len, 13 | 16 | 19),                                            // Visa
        5 => (51..=55).contains(&prefix(2)) && len == 16 || maestro(prefix(4), len), // Mastercard, Maestro
        2 => (2221..=2720).contains(&prefix(4)) && len == 16,                        // Mastercard 2-series
        3 => {
            (matches!(prefix(2), 34 | 37) && len == 15)                               // Amex
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len))   // JCB
                || (((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38 | 39)) && (14..=19).contains(&len)) // Diners
        }
        6 => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3))) && (16..=19).contains(&len) // Discover
                || (prefix(2) == 62 && (16..=19).contains(&len)) // UnionPay
                || maestro(prefix(4), len)
        }
        _ => false,
    }
}

/// US SSN `AAA-GG-SSSS`: area not 000, 666 or 900-999; group not 00; serial not 0000.
pub fn ssn(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn ipv4(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok()
}

fn ipv6(s: &str) -> bool {
    s.matches(':').count() >= 2 && s.parse::<Ipv6Addr>().is_ok()
}

fn phone(s: &str) -> bool {
    (8..=15).contains(&digits(s).len())
}

/// IBAN: country + check digits + BBAN, length per country where known, mod-97 == 1.
pub fn iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let b = compact.as_bytes();
    if !(15..=34).contains(&b.len()) || !b[..2].iter().all(u8::is_ascii_uppercase) {
        return false;
    }
    let want = match &compact[..2] {
        "DE" => 22,
        "GB" | "IE" => 22,
        "FR" | "IT" | "MC" => 27,
        "ES" | "SE" => 24,
        "NL" => 18,
        "BE" => 16,
        "CH" | "LI" => 21,
        "AT" => 20,
        "PL" => 28,
        "PT" => 25,
        "DK" | "FI" => 18,
        "NO" => 15,
        "LU" => 20,
        _ => b.len(),
    };
    if b.len() != want {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in b[4..].iter().chain(&b[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    #[expect(clippy::cast_precision_loss, reason = "lengths of secrets are small")]
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn high_entropy(s: &str) -> bool {
    s.len() >= 16
        && entropy(s) >= 3.5
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

pub const DETECTORS: &[Detector] = &[
    // secrets first: where spans overlap, the more specific finding wins
    Detector {
        id: "secret.private_key",
        category: Category::Secret,
        label: "PRIVATE_KEY",
        // The header; the span extends to the matching footer (see `extend`).
        pattern: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.anthropic",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{20,}",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.openai",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9]{20,}[A-Za-z0-9_-]*",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.aws_access_key",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?-u:\b)",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.github",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.slack",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)xox[abposr]-[A-Za-z0-9-]{10,}",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.stripe",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}(?-u:\b)",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.google",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)AIza[0-9A-Za-z_-]{35}",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.gatehouse",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)gtha?_[A-Za-z0-9]{49}(?-u:\b)",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.jwt",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.assigned",
        category: Category::Secret,
        label: "SECRET",
        pattern: r#"(?i)(?:api[_-]?key|secret|token|passw(?:or)?d|pwd|access[_-]?key|client[_-]?secret|auth[_-]?key)[a-z0-9_-]{0,20}["']?\s{0,3}[:=]\s{0,3}["']?([A-Za-z0-9+/=_.-]{16,256})"#,
        group: 1,
        validate: high_entropy,
    },
    // PII
    Detector {
        id: "pii.email",
        category: Category::Pii,
        label: "EMAIL",
        pattern: r"(?i)(?-u:\b)[a-z0-9._%+-]{1,64}@[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})*\.[a-z]{2,24}(?-u:\b)",
        group: 0,
        validate: any,
    },
    Detector {
        id: "pii.card",
        category: Category::Pii,
        label: "CARD",
        pattern: r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)",
        group: 0,
        validate: card,
    },
    Detector {
        id: "pii.ssn",
        category: Category::Pii,
        label: "SSN",
        pattern: r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
        group: 0,
        validate: ssn,
    },
    Detector {
        id: "pii.iban",
        category: Category::Pii,
        label: "IBAN",
        pattern: r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)",
        group: 0,
        validate: iban,
    },
    Detector {
        id: "pii.phone",
        category: Category::Pii,
        label: "PHONE",
        // E.164 compact; international with a + and groups; North American (NANP) shapes.
        pattern: r"\+[1-9][0-9]{7,14}(?-u:\b)|\+[1-9][0-9]{0,2}(?:[ .-]?\([0-9]{1,4}\))?(?:[ .-][0-9]{1,7}){1,6}(?-u:\b)|(?:\([2-9][0-9]{2}\) ?|(?-u:\b)[2-9][0-9]{2}[ .-]?)[2-9][0-9]{2}[ .-][0-9]{4}(?-u:\b)",
        group: 0,
        validate: phone,
    },
    Detector {
        id: "pii.ipv4",
        category: Category::Pii,
        label: "IP",
        pattern: r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)",
        group: 0,
        validate: ipv4,
    },
    Detector {
        id: "pii.ipv6",
        category: Category::Pii,
        label: "IP",
        pattern: r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}",
        group: 0,
        validate: ipv6,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators() {
        assert!(card("4111 1111 1111 1111") && card("5500-0000-0000-0004") && card("378282246310005"));
        assert!(!card("4111 1111 1111 1112"), "Luhn");
        assert!(!card("1234 5678 9012 3452"), "no issuer");
        assert!(ssn("123-45-6789") && !ssn("000-12-3456") && !ssn("666-12-3456") && !ssn("912-12-3456"));
        assert!(!ssn("123-00-6789") && !ssn("123-45-0000"));
        assert!(iban("DE89 3704 0044 0532 0130 00") && iban("GB82WEST12345698765432"));
        assert!(!iban("DE89 3704 0044 0532 0130 01") && !iban("DE89 3704 0044 0532 0130"));
        assert!(ipv6("2001:db8::1") && !ipv6("10:30:00") && ipv4("192.168.1.1") && !ipv4("999.1.1.1"));
        assert!(high_entropy("a8F3kq9ZxP2mV7tLw4Rb") && !high_entropy("aaaaaaaaaaaaaaaaaaaa"));
    }
}
