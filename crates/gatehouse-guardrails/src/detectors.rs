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
        for footer in ["PRIVATE KEY BLOCK-----", "PRIVATE KEY-----"] {
            if let Some(j) = after.find(footer) {
                return header_end + i + 9 + j + footer.len();
            }
        }
    }
    let body = window
        .bytes()
        .take_while(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r' | b' ' | b':' | b'-')
        })
        .count();
    header_end + body
}

/// A provider token found by its documented prefix and shape, not a placeholder.
const fn vendor(id: &'static str, pattern: &'static str) -> Detector {
    Detector { id, category: Category::Secret, label: "SECRET", pattern, group: 0, validate: real }
}

/// Where a candidate's span really ends: a PEM block runs to its footer; a value assigned in a
/// URL's query (`?token=...&page=2`) ends before the next parameter; an assigned value or a
/// password does not take the full stop that ends its sentence.
pub fn span_end(id: &str, text: &str, start: usize, end: usize) -> usize {
    match id {
        "secret.private_key" => pem_end(text, end),
        "secret.assigned" | "secret.password" => {
            let value = &text[start..end];
            let mut cut = value.len();
            // in a query string (`?token=...&page=2`, the name after `?` or `&`), an `&name=` is
            // the next parameter; elsewhere `&` is one more character of the value
            let before =
                text[..start].rsplit(|c: char| c.is_whitespace() || c == '"' || c == '\'').next().unwrap_or("");
            let query = before.contains(['?', '&']);
            if let Some(amp) = value.find('&').filter(|&i| query && query_parameter(&value[i + 1..])) {
                cut = amp;
            }
            let sentence_end = text[end..].chars().next().is_none_or(char::is_whitespace);
            if cut == value.len() && sentence_end && value.ends_with('.') {
                cut -= 1;
            }
            start + cut
        }
        _ => end,
    }
}

/// `name=` at the start of `s`: what follows an `&` in a query string.
fn query_parameter(s: &str) -> bool {
    let name = s.bytes().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')).count();
    name > 0 && s.as_bytes().get(name) == Some(&b'=')
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

/// An IPv6 address with at least one hex digit: a bare `::` (Rust's `Type::<T>::new`) is not one
/// anybody writes for an address.
fn ipv6(s: &str) -> bool {
    s.matches(':').count() >= 2 && s.bytes().any(|b| b.is_ascii_hexdigit()) && s.parse::<Ipv6Addr>().is_ok()
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

/// A documented placeholder or example, not a secret: `...EXAMPLE` (AWS's documentation keys),
/// `your-api-key`, `<token>`, `${TOKEN}`, `{{ secret }}`, a run of one repeated character
/// (`xxxxxxxx`, `00000000`) or a word people put where a secret goes.
pub fn placeholder(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    const WORDS: &[&str] =
        &["example", "your_", "your-", "yourkey", "placeholder", "redacted", "changeme", "dummy", "insert_"];
    let run = s.as_bytes().windows(6).any(|w| w.iter().all(|&b| b == w[0]));
    WORDS.iter().any(|w| lower.contains(w)) || s.contains(['<', '>', '{', '}', '$']) || run
}

/// A secret of a documented shape that is not a placeholder.
fn real(s: &str) -> bool {
    !placeholder(s)
}

/// Words people write where a password goes in examples and docs.
const NOT_PASSWORDS: &[&str] = &["password", "passwd", "pass", "secret", "changeme", "admin", "root", "user", "test"];

/// A password-like value: 8+ characters of at least three kinds (lower, upper, digit, symbol),
/// not a placeholder or a stock word.
fn password(s: &str) -> bool {
    let kinds = [
        s.bytes().any(|b| b.is_ascii_lowercase()),
        s.bytes().any(|b| b.is_ascii_uppercase()),
        s.bytes().any(|b| b.is_ascii_digit()),
        s.bytes().any(|b| b.is_ascii_punctuation()),
    ];
    s.len() >= 8
        && kinds.iter().filter(|k| **k).count() >= 3
        && !placeholder(s)
        && !NOT_PASSWORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}

/// A password in a URL's userinfo (`scheme://user:PASSWORD@host`): anything but a placeholder or
/// a stock word.
fn url_password(s: &str) -> bool {
    !s.is_empty()
        && !placeholder(s)
        && !s.bytes().all(|b| b == b'*')
        && !NOT_PASSWORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}

/// HTTP basic credentials: base64 of `user:password` (printable, both parts present).
fn basic_credentials(s: &str) -> bool {
    use base64::Engine as _;
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(s) else { return false };
    let Ok(text) = std::str::from_utf8(&raw) else { return false };
    matches!(text.split_once(':'), Some((u, p)) if !u.is_empty() && url_password(p))
        && text.chars().all(|c| !c.is_control())
}

/// A token after `Bearer` that no specific detector named: long and random enough.
fn bearer(s: &str) -> bool {
    s.len() >= 20 && entropy(s) >= 3.5 && !placeholder(s)
}

fn high_entropy(s: &str) -> bool {
    s.len() >= 16
        && !placeholder(s)
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
        pattern: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
        group: 0,
        validate: any,
    },
    Detector {
        id: "secret.anthropic",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{20,}",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.openai",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9]{20,}[A-Za-z0-9_-]*",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.aws_access_key",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?-u:\b)",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.github",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.slack",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[0-9]-[A-Z0-9]{9,12}-[0-9]{10,16}-[a-f0-9]{32,80})",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.stripe",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)(?:(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,64})(?-u:\b)",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.google",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)(?:AIza[0-9A-Za-z_-]{35}|GOCSPX-[A-Za-z0-9_-]{28}|ya29\.[A-Za-z0-9_-]{30,})",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.gatehouse",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)gtha?_[A-Za-z0-9]{49}(?-u:\b)",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.huggingface",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)hf_[A-Za-z]{34}(?-u:\b)",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.gitlab",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)gl(?:pat|dt|rt|ptt|cbt|imt|oas|soat|ffct|agent)-[A-Za-z0-9_-]{20,}",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.slack_webhook",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"https://hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{8,12}/[A-Z0-9]{8,12}/[A-Za-z0-9]{20,32}",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.discord",
        category: Category::Secret,
        label: "SECRET",
        // a webhook URL, or a bot token (user id in base64, timestamp, HMAC)
        pattern: r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}|(?-u:\b)[MNO][A-Za-z0-9]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.telegram",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)[0-9]{8,10}:AA[A-Za-z0-9_-]{33}(?-u:\b)",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.digitalocean",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)do[opr]_v1_[a-f0-9]{64}(?-u:\b)",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.mailgun",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)key-[0-9a-f]{32}(?-u:\b)",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.notion",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)(?:secret_[A-Za-z0-9]{43}|ntn_[0-9]{11}[A-Za-z0-9]{35})(?-u:\b)",
        group: 0,
        validate: real,
    },
    // More providers by their documented token prefixes and lengths (one named rule each)
    vendor("secret.openrouter", r"(?-u:\b)sk-or-v1-[a-f0-9]{64}(?-u:\b)"),
    vendor("secret.groq", r"(?-u:\b)gsk_[A-Za-z0-9]{52}(?-u:\b)"),
    vendor("secret.replicate", r"(?-u:\b)r8_[A-Za-z0-9]{37}(?-u:\b)"),
    vendor("secret.perplexity", r"(?-u:\b)pplx-[A-Za-z0-9]{40,64}(?-u:\b)"),
    vendor("secret.xai", r"(?-u:\b)xai-[A-Za-z0-9]{60,100}(?-u:\b)"),
    vendor("secret.pinecone", r"(?-u:\b)pcsk_[A-Za-z0-9]{4,8}_[A-Za-z0-9]{40,80}(?-u:\b)"),
    vendor("secret.langsmith", r"(?-u:\b)lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}(?-u:\b)"),
    vendor("secret.tavily", r"(?-u:\b)tvly-(?:dev-|prod-)?[A-Za-z0-9]{32}(?-u:\b)"),
    vendor("secret.sendgrid", r"(?-u:\b)SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
    vendor("secret.npm", r"(?-u:\b)npm_[A-Za-z0-9]{36}(?-u:\b)"),
    vendor("secret.pypi", r"(?-u:\b)pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"),
    vendor("secret.rubygems", r"(?-u:\b)rubygems_[a-f0-9]{48}(?-u:\b)"),
    vendor("secret.shopify", r"(?-u:\b)shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}(?-u:\b)"),
    vendor("secret.twilio", r"(?-u:\b)SK[0-9a-f]{32}(?-u:\b)"),
    vendor("secret.databricks", r"(?-u:\b)dapi[a-f0-9]{32}(?:-[0-9])?(?-u:\b)"),
    vendor("secret.vault", r"(?-u:\b)hv[sbr]\.[A-Za-z0-9_-]{24,}"),
    vendor("secret.age", r"(?-u:\b)AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}(?-u:\b)"),
    vendor("secret.docker", r"(?-u:\b)dckr_pat_[A-Za-z0-9_-]{27}"),
    vendor("secret.atlassian", r"(?-u:\b)(?:ATATT3[A-Za-z0-9_=-]{150,}|ATBB[A-Za-z0-9]{32})(?-u:\b)"),
    vendor("secret.linear", r"(?-u:\b)lin_(?:api|oauth)_[A-Za-z0-9]{40}(?-u:\b)"),
    vendor("secret.postman", r"(?-u:\b)PMAK-[a-f0-9]{24}-[a-f0-9]{34}(?-u:\b)"),
    vendor("secret.doppler", r"(?-u:\b)dp\.(?:pt|st|ct|sa|scim|audit)\.[A-Za-z0-9]{40,44}(?-u:\b)"),
    vendor("secret.pulumi", r"(?-u:\b)pul-[a-f0-9]{40}(?-u:\b)"),
    vendor("secret.grafana", r"(?-u:\b)(?:glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})"),
    vendor("secret.newrelic", r"(?-u:\b)NRAK-[A-Z0-9]{27}(?-u:\b)"),
    vendor("secret.sentry", r"(?-u:\b)sntry[su]_[A-Za-z0-9+/=_-]{40,}"),
    vendor("secret.figma", r"(?-u:\b)figd_[A-Za-z0-9_-]{40}"),
    vendor("secret.onepassword", r"(?-u:\b)ops_eyJ[A-Za-z0-9+/=_-]{100,}"),
    vendor("secret.terraform", r"(?-u:\b)[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}"),
    vendor("secret.supabase", r"(?-u:\b)sbp_[a-f0-9]{40}(?-u:\b)"),
    vendor("secret.netlify", r"(?-u:\b)nfp_[A-Za-z0-9]{36}(?-u:\b)"),
    vendor("secret.flyio", r"(?-u:\b)fo1_[A-Za-z0-9_-]{43}"),
    vendor("secret.heroku", r"(?-u:\b)HRKU-[A-Za-z0-9_-]{58,64}"),
    vendor("secret.mapbox", r"(?-u:\b)sk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}"),
    vendor("secret.azure_ad", r"(?-u:\b)[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}"),
    vendor("secret.alibaba", r"(?-u:\b)LTAI[A-Za-z0-9]{12,20}(?-u:\b)"),
    vendor("secret.square", r"(?-u:\b)(?:sq0(?:atp|csp)-[A-Za-z0-9_-]{22,43}|EAAA[A-Za-z0-9_-]{60})"),
    vendor("secret.airtable", r"(?-u:\b)pat[A-Za-z0-9]{14}\.[a-f0-9]{64}(?-u:\b)"),
    vendor("secret.planetscale", r"(?-u:\b)pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.-]{32,64}"),
    vendor("secret.dropbox", r"(?-u:\b)sl\.[A-Za-z0-9_-]{130,}"),
    vendor("secret.resend", r"(?-u:\b)re_[A-Za-z0-9]{8}_[A-Za-z0-9]{24}(?-u:\b)"),
    Detector {
        id: "secret.azure_storage",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"AccountKey=([A-Za-z0-9+/]{86}==)",
        group: 1,
        validate: real,
    },
    Detector {
        id: "secret.url_credentials",
        category: Category::Secret,
        label: "SECRET",
        // the password of `scheme://user:password@host`
        pattern: r"(?i)(?-u:\b)[a-z][a-z0-9+.-]{1,15}://[^\s:/@]{0,64}:([^\s:/@]{1,128})@[a-z0-9.\[-]",
        group: 1,
        validate: url_password,
    },
    Detector {
        id: "secret.basic_auth",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?i)(?-u:\b)basic\s+([A-Za-z0-9+/]{6,512}={0,2})",
        group: 1,
        validate: basic_credentials,
    },
    Detector {
        id: "secret.jwt",
        category: Category::Secret,
        label: "SECRET",
        pattern: r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        group: 0,
        validate: real,
    },
    Detector {
        id: "secret.assigned",
        category: Category::Secret,
        label: "SECRET",
        pattern: r#"(?i)(?:api[_-]?key|secret|token|passw(?:or)?d|pwd|access[_-]?key|client[_-]?secret|auth[_-]?key)[a-z0-9_-]{0,20}["']?\s{0,3}[:=]\s{0,3}["']?([A-Za-z0-9+/=_.!@#%^&*()~-]{16,256})"#,
        group: 1,
        validate: high_entropy,
    },
    Detector {
        id: "secret.password",
        category: Category::Secret,
        label: "SECRET",
        // shorter than `secret.assigned` takes, or of other characters: a password by its name
        pattern: r#"(?i)(?:passw(?:or)?d|pwd|passphrase)[a-z0-9_-]{0,20}(?:["']?\s{0,3}[:=]\s{0,3}|\s{1,3}(?:is|was)\s{1,3})["']?([^\s"',;]{8,128})"#,
        group: 1,
        validate: password,
    },
    Detector {
        id: "secret.bearer",
        category: Category::Secret,
        label: "SECRET",
        // a token no specific detector named, after `Bearer` (headers, logs, curl lines)
        pattern: r"(?i)(?-u:\b)bearer\s+([A-Za-z0-9._~+/-]{20,512}=*)",
        group: 1,
        validate: bearer,
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
        // dashed; or, next to its name, without dashes or with spaces
        pattern: r"(?i)(?:ssn|social security(?: number| no\.?| #)?)[\s#:.-]{0,4}(?:is\s+)?([0-9]{3}[ -]?[0-9]{2}[ -]?[0-9]{4})(?-u:\b)|(?-u:\b)([0-9]{3}-[0-9]{2}-[0-9]{4})(?-u:\b)",
        group: 1,
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
        // `00`-prefixed international and national (leading 0) forms count only where they do not
        // continue a longer run of digit groups (a card or an order number)
        pattern: r"\+[1-9][0-9]{7,14}(?-u:\b)|\+[1-9][0-9]{0,2}(?:[ .-]?\([0-9]{1,4}\))?(?:[ .-][0-9]{1,7}){1,6}(?-u:\b)|(?:(?-u:\b)1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|(?-u:\b)[2-9][0-9]{2}[ .-]?)[2-9][0-9]{2}[ .-][0-9]{4}(?-u:\b)|(?:^|[^0-9\s.-]|[^0-9\s][.-])\s?(00[1-9][0-9]{0,3}(?:[ .-]?\([0-9]{1,4}\))?(?:[ .-][0-9]{1,7}){1,6}|0[1-9][0-9]{1,3}[ -][0-9]{3,4}[ -][0-9]{3,4}|0[1-9][0-9]{1,3}[ /-][0-9]{5,8}|0[1-9](?:[ .][0-9]{2}){4})(?-u:\b)",
        group: 1,
        validate: phone,
    },
    Detector {
        id: "pii.ipv4",
        category: Category::Pii,
        label: "IP",
        // a version number is taken whole by the first branch, which never validates as an
        // address, so its digits are not one either: after a version word (`version 10.2.0.1`,
        // `release 1.4.2.7`) or a package pin (`==1.2.3.4`, `>=`, `~=`), with a pre-release or
        // build suffix (`1.2.3.4-beta`, `1.2.3.4+git`) or a fifth part (`1.2.3.4.5`)
        pattern: r"(?i)((?:(?-u:\b)(?:version|ver\.|release|build|firmware|v)\s?|[=~<>!]=\s?)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)|(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?:-[a-z]|\+[a-z0-9]|\.[0-9]))|(?-u:\b)((?:[0-9]{1,3}\.){3}[0-9]{1,3})(?-u:\b)",
        group: 1,
        validate: ipv4,
    },
    Detector {
        id: "pii.ipv6",
        category: Category::Pii,
        label: "IP",
        pattern: r"(?i)(?:^|[^0-9a-z_:.])((?:[0-9a-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9a-f]{0,4}))",
        group: 1,
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
        assert!(!ipv6("::") && ipv6("::1") && ipv6("::ffff:192.0.2.1"));
        for p in ["AKIAIOSFODNN7EXAMPLE", "your-api-key", "<token>", "${TOKEN}", "xxxxxxxxxxxx", "ghp_000000000000"] {
            assert!(placeholder(p), "{p}");
        }
        assert!(!placeholder("sk_test_4eC39HqLyjWDarjtT1zdp7dc"), "a test-mode key is still a key");
        assert!(password("Summer2024!") && !password("changeme") && !password("password") && !password("abcdefgh"));
        assert!(basic_credentials("YWRtaW46U3VtbWVyMjAyNCE=") && !basic_credentials("dXNlcjpwYXNzd29yZA=="));
    }
}
