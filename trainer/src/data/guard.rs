//! The identifier guard: finds direct identifiers that a pseudonymized export must not hold.
//!
//! Structured fields (Patient name, telecom, address, birthDate; a reference's `display`, which often
//! carries a name) are found by the readers. Free text (notes, string values) is scanned here for:
//! - 12-digit Individual Numbers (My Number) whose check digit is valid (digits in a row, or 4-4-4);
//! - phone numbers: Japanese numbers (0 + 9 or 10 digits, grouped by hyphens, spaces or parentheses,
//!   or an ungrouped 11-digit 050/070/080/090 mobile number), international numbers (+ and 8 to 15
//!   digits), and North American (3-3-4) numbers;
//! - e-mail addresses.
//!
//! Full-width digits and hyphens (common in Japanese text) count as their ASCII forms. A finding says
//! what kind of identifier was found; the matched text is never kept or printed.

use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    Name,
    Telecom,
    Address,
    BirthDate,
    MyNumber,
    Phone,
    Email,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Name => "name",
            IdentifierKind::Telecom => "telecom",
            IdentifierKind::Address => "address",
            IdentifierKind::BirthDate => "birth_date",
            IdentifierKind::MyNumber => "my_number",
            IdentifierKind::Phone => "phone",
            IdentifierKind::Email => "email",
        }
    }
}

/// What to do with an identifier: refuse the input (default), or remove it and go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    #[default]
    Reject,
    Redact,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reject" => Ok(Policy::Reject),
            "redact" => Ok(Policy::Redact),
            _ => Err(format!("unknown identifier policy {s:?} (expected reject or redact)")),
        }
    }
}

/// True when the 12 digits form a valid Individual Number: the last digit is the check digit of the
/// first 11 (weights 2..7 then 2..6 from the right; remainder mod 11 of 0 or 1 gives 0, else 11 - r).
pub fn my_number_valid(d: &[u8; 12]) -> bool {
    let sum: u32 = (1..=11)
        .map(|n| {
            let p = d[11 - n] as u32;
            let q = if n <= 6 { n + 1 } else { n - 5 } as u32;
            p * q
        })
        .sum();
    let r = sum % 11;
    let check = if r <= 1 { 0 } else { 11 - r };
    d[11] as u32 == check
}

/// A char as an ASCII digit or separator, folding full-width forms.
fn fold(c: char) -> char {
    match c {
        '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
        '－' | '−' | '‐' | '‑' | '‒' | '–' | '—' | 'ー' => '-',
        '（' => '(',
        '）' => ')',
        '＋' => '+',
        '　' => ' ',
        _ => c,
    }
}

/// A run of digits and single separators (`-`, space, parentheses), optionally led by `+` or `(`.
struct Run {
    span: Range<usize>,
    digits: Vec<u8>,
    groups: Vec<usize>,
    plus: bool,
    paren: bool,
}

fn classify(run: &Run) -> Option<IdentifierKind> {
    let n = run.digits.len();
    let grouped = run.groups.len() > 1;
    if n == 12 && (!grouped || run.groups == [4, 4, 4]) {
        let d: [u8; 12] = run.digits.clone().try_into().ok()?;
        if my_number_valid(&d) {
            return Some(IdentifierKind::MyNumber);
        }
    }
    if run.plus {
        return (8..=15).contains(&n).then_some(IdentifierKind::Phone);
    }
    let d = &run.digits;
    if d[0] == 0 && (n == 10 || n == 11) {
        if grouped && (2..=4).contains(&run.groups.len()) && run.groups[0] <= 5 {
            return Some(IdentifierKind::Phone);
        }
        if !grouped && n == 11 && matches!(d[1], 5 | 7 | 8 | 9) && d[2] == 0 {
            return Some(IdentifierKind::Phone);
        }
    }
    if n == 10 && run.groups == [3, 3, 4] && (run.paren || d[0] != 0) {
        return Some(IdentifierKind::Phone);
    }
    None
}

fn is_email_local(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._%+-".contains(c)
}

fn is_email_domain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

/// The e-mail address around the `@` at byte `at`, if there is one.
fn email_at(text: &str, at: usize) -> Option<Range<usize>> {
    let start = text[..at].char_indices().rev().take_while(|&(_, c)| is_email_local(c)).last()?.0;
    let after = &text[at + 1..];
    let len = after.char_indices().take_while(|&(_, c)| is_email_domain(c)).last().map(|(i, c)| i + c.len_utf8())?;
    let domain = after[..len].trim_end_matches(['.', '-']);
    let tld = domain.rsplit_once('.')?.1;
    (tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()) && !domain.starts_with('.'))
        .then(|| start..at + 1 + domain.len())
}

/// Every identifier in `text`, with its byte span.
pub fn scan(text: &str) -> Vec<(IdentifierKind, Range<usize>)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices('@') {
        if let Some(r) = email_at(text, at) {
            found.push((IdentifierKind::Email, r));
        }
    }
    if !text.bytes().any(|b| b.is_ascii_digit()) && !text.contains(|c| ('０'..='９').contains(&c)) {
        return found;
    }
    let cs: Vec<(usize, char)> = text.char_indices().map(|(i, c)| (i, fold(c))).collect();
    let end_of = |k: usize| cs.get(k).map_or(text.len(), |&(i, _)| i);
    let digit = |k: usize| cs.get(k).is_some_and(|&(_, c)| c.is_ascii_digit());
    let glue =
        |k: usize| cs.get(k).is_some_and(|&(_, c)| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ','));
    let mut k = 0;
    while k < cs.len() {
        let c = cs[k].1;
        let lead = (c == '+' || c == '(') && digit(k + 1);
        if !(c.is_ascii_digit() || lead) || (k > 0 && glue(k - 1)) {
            k += 1;
            continue;
        }
        let start = k;
        let mut run = Run { span: 0..0, digits: Vec::new(), groups: vec![0], plus: c == '+', paren: c == '(' };
        if lead {
            k += 1;
        }
        while k < cs.len() {
            let c = cs[k].1;
            if c.is_ascii_digit() {
                run.digits.push(c as u8 - b'0');
                *run.groups.last_mut().expect("groups start non-empty") += 1;
                k += 1;
            } else if matches!(c, '-' | ' ' | '(') && digit(k + 1) {
                run.groups.push(0);
                k += 1;
            } else if c == ')'
                && run.paren
                && (digit(k + 1) || (cs.get(k + 1).is_some_and(|x| x.1 == ' ') && digit(k + 2)))
            {
                run.groups.push(0);
                k += if digit(k + 1) { 1 } else { 2 };
            } else {
                break;
            }
        }
        run.span = cs[start].0..end_of(k);
        // punctuation after the number ends it unless a digit follows (1,234 or 1.5 or 120/80)
        let glued_after = glue(k) && (digit(k + 1) || !matches!(cs[k].1, '.' | ',' | '/'));
        if !glued_after && !found.iter().any(|(_, s)| s.start < run.span.end && run.span.start < s.end) {
            if let Some(kind) = classify(&run) {
                found.push((kind, run.span));
            }
        }
    }
    found.sort_by_key(|(_, r)| r.start);
    found
}

/// `text` with every identifier replaced by `[KIND]`.
pub fn redact(text: &str, found: &[(IdentifierKind, Range<usize>)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (k, r) in found {
        if r.start < at {
            continue;
        }
        out.push_str(&text[at..r.start]);
        out.push('[');
        out.push_str(&k.as_str().to_ascii_uppercase());
        out.push(']');
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(t: &str) -> Vec<IdentifierKind> {
        scan(t).into_iter().map(|(k, _)| k).collect()
    }

    /// A valid Individual Number from 11 digits.
    fn with_check(d11: &str) -> String {
        for c in 0..10u8 {
            let mut d = [0u8; 12];
            for (i, b) in d11.bytes().enumerate() {
                d[i] = b - b'0';
            }
            d[11] = c;
            if my_number_valid(&d) {
                return format!("{d11}{c}");
            }
        }
        unreachable!()
    }

    #[test]
    fn my_number_check_digit() {
        // the published example: 1234 5678 9018 is valid
        assert!(my_number_valid(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 8]));
        assert!(!my_number_valid(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 9]));
        let n = with_check("31415926535");
        assert_eq!(kinds(&format!("番号は{n}です")), [IdentifierKind::MyNumber]);
        assert_eq!(kinds(&format!("no {}-{}-{}", &n[..4], &n[4..8], &n[8..])), [IdentifierKind::MyNumber]);
        // an invalid check digit, or a 12-digit run inside a longer number, is not one
        let mut bad = n.clone().into_bytes();
        bad[11] = b'0' + (bad[11] - b'0' + 1) % 10;
        assert!(kinds(std::str::from_utf8(&bad).unwrap()).is_empty());
        assert!(kinds(&format!("{n}7")).is_empty());
        assert!(kinds(&format!("ID{n}")).is_empty());
    }

    #[test]
    fn phones_and_emails() {
        for t in [
            "連絡先 090-1234-5678 まで",
            "TEL 03-1234-5678",
            "電話：０９０－１２３４－５６７８",
            "call 09012345678",
            "(03) 1234-5678",
            "+81 90 1234 5678",
            "(415) 555-0132",
            "415-555-0132",
        ] {
            assert_eq!(kinds(t), [IdentifierKind::Phone], "{t}");
        }
        assert_eq!(kinds("mail taro.yamada@example.co.jp please"), [IdentifierKind::Email]);
        assert_eq!(kinds("山田さん（yamada+x@hosp.example.jp）"), [IdentifierKind::Email]);
        // not identifiers: dates, lab values, ids glued to letters, short numbers, a bare @
        for t in [
            "2024-03-05 Cr 1.23 mg/dL",
            "BP 120/80, HR 88, 体温 37.5℃",
            "JLAC10 3C015000002327101",
            "lot 1234-5678",
            "score @ 3",
            "ratio 0.123 456 789",
            "a@b",
        ] {
            assert!(kinds(t).is_empty(), "{t}: {:?}", kinds(t));
        }
    }

    #[test]
    fn redaction_removes_the_values_and_keeps_the_rest() {
        let t = "患者 090-1234-5678, mail a.b@example.com 以上";
        let f = scan(t);
        assert_eq!(redact(t, &f), "患者 [PHONE], mail [EMAIL] 以上");
    }
}
