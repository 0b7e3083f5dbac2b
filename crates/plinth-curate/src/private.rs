//! Private-data scrubbing: typed placeholders for e-mail addresses, phone
//! numbers, IPv4 addresses, payment card numbers (Luhn-checked, so ordinary long
//! numbers stay) and secret-looking keys.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;

struct Patterns {
    email: Regex,
    secret: Regex,
    assigned: Regex,
    card: Regex,
    ip: Regex,
    phone: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).unwrap_or_else(|e| panic!("built-in pattern {s}: {e}"));
        Patterns {
            email: re(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b"),
            // Well-known key prefixes.
            secret: re(
                r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9]{20,}|xox[baprs]-[A-Za-z0-9-]{10,})\b",
            ),
            // A long value after key=/token:/password: (kept unless it mixes letters and digits).
            assigned: re(
                r#"(?i)\b(?:api[_-]?key|secret|token|password|passwd)\b\s*[:=]\s*["']?([A-Za-z0-9/+_\-]{12,})"#,
            ),
            card: re(r"\b\d(?:[ -]?\d){12,18}\b"),
            ip: re(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
            phone: re(r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\b\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}\b"),
        }
    })
}

fn luhn(digits: &str) -> bool {
    let ds: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&ds.len()) {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Replaces private data in `text` with `<EMAIL>`, `<SECRET>`, `<CARD>`, `<IP>`
/// and `<PHONE>`; returns the new text and how many of each kind it replaced.
pub fn scrub(text: &str) -> (String, BTreeMap<&'static str, usize>) {
    let p = patterns();
    let mut found = BTreeMap::new();
    let mut out = text.to_string();
    for (kind, re, placeholder) in
        [("email", &p.email, "<EMAIL>"), ("secret", &p.secret, "<SECRET>"), ("ip", &p.ip, "<IP>")]
    {
        let n = re.find_iter(&out).count();
        if n > 0 {
            out = re.replace_all(&out, placeholder).into_owned();
            found.insert(kind, n);
        }
    }
    let mixed = |c: &regex::Captures| {
        let v = &c[1];
        v.chars().any(|ch| ch.is_ascii_digit()) && v.chars().any(|ch| ch.is_ascii_alphabetic())
    };
    for (kind, re, placeholder, check) in [
        ("secret", &p.assigned, "<SECRET>", &mixed as &dyn Fn(&regex::Captures) -> bool),
        ("card", &p.card, "<CARD>", &|c: &regex::Captures| luhn(&c[0])),
    ] {
        let mut n = 0;
        out = re
            .replace_all(&out, |c: &regex::Captures| {
                if check(c) {
                    n += 1;
                    placeholder.to_string()
                } else {
                    c[0].to_string()
                }
            })
            .into_owned();
        if n > 0 {
            *found.entry(kind).or_insert(0) += n;
        }
    }
    // A phone number stands alone: not glued to letters, digits or hyphens on
    // either side (UUIDs and ARNs hold digit groups that look like one).
    let mut phones = 0;
    let mut rebuilt = String::with_capacity(out.len());
    let mut last = 0;
    for m in p.phone.find_iter(&out) {
        let before = out[..m.start()].chars().next_back();
        let after = out[m.end()..].chars().next();
        let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == ':');
        if glued(before) || glued(after) {
            continue;
        }
        rebuilt.push_str(&out[last..m.start()]);
        rebuilt.push_str("<PHONE>");
        last = m.end();
        phones += 1;
    }
    if phones > 0 {
        rebuilt.push_str(&out[last..]);
        out = rebuilt;
        found.insert("phone", phones);
    }
    (out, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_becomes_its_placeholder() {
        let cases = [
            ("mail jane.doe@example.com today", "mail <EMAIL> today", "email"),
            ("call +44 20 7946 0958 now", "call <PHONE> now", "phone"),
            ("call (555) 123-4567 now", "call <PHONE> now", "phone"),
            ("host 192.168.10.254 is down", "host <IP> is down", "ip"),
            ("card 4111 1111 1111 1111 ok", "card <CARD> ok", "card"),
            ("key AKIAIOSFODNN7EXAMPLE leaked", "key <SECRET> leaked", "secret"),
            ("api_key = 'q8Zr3kLm9Tx2Vb7Nw4Ps'", "<SECRET>'", "secret"),
        ];
        for (input, want, kind) in cases {
            let (out, found) = scrub(input);
            assert_eq!(out, want, "{input}");
            assert_eq!(found.get(kind), Some(&1), "{input}: {found:?}");
        }
    }

    #[test]
    fn ordinary_numbers_and_text_stay() {
        for text in [
            "In 1984 the population was 1234567890123 by one count.",
            "Version 3.11.7 was released; see section 4.2.",
            "The ratio 3:2 and the years 1990-2000 are fine.",
            "secret: communicated covertly; their password: unforgettable",
            "tenant_id: 72f98888-4444-3333-2d7cd0111111 and arn:aws:kms:us-east-1:1234-5678-9012",
        ] {
            let (out, found) = scrub(text);
            assert_eq!(out, text);
            assert!(found.is_empty(), "{text}: {found:?}");
        }
    }
}
