//! The identifier guard: finds direct identifiers that a pseudonymized export must not hold.
//!
//! Structured fields (Patient name, telecom, address, birthDate, identifier, contact; a reference's
//! `display`, which often carries a name) are found by the readers. Free text (notes, string values,
//! narratives) is scanned here, one verb per file:
//! - [`number`]: 12-digit Individual Numbers (My Number) whose check digit is valid (ungrouped, 4-4-4,
//!   3-3-3-3, with hyphens, spaces, dots or slashes, also glued to letters); phone numbers: Japanese
//!   numbers (0 + 9 or 10 digits grouped by hyphens, spaces, dots, `・`, `〜`, spaced hyphens or
//!   brackets; ungrouped 10-digit landlines and 11-digit 050/070/080/090 mobiles; glued to `TEL`/`FAX`),
//!   international numbers (+ and 8 to 15 digits), North American (3-3-4) numbers;
//! - [`email`]: e-mail addresses, also with non-ASCII local parts or domains and a full-width `＠`;
//! - [`name`]: names introduced by a cue (氏名, 患者名, 名前, `Name:`), before an honorific (様, さん,
//!   殿, 君, 氏), or after a title (Mr., Mrs., Ms., Dr.);
//! - [`address`]: Japanese addresses (prefecture + municipality, 丁目/番地/番-号 patterns, 〒 postal
//!   codes) and English street addresses (number + capitalized words + street suffix);
//! - [`subject`]: a subject's own structured identifiers (from its Patient resource) searched for in
//!   that subject's notes;
//! - [`vocab`]: the filter that keeps identifiers out of a tokenizer trained in the node.
//!
//! Every scan is one pass over the text with bounded look-around per position, so its cost is linear
//! in the text (a counter of the characters examined proves it in the tests). Full-width digits,
//! letters and separators (common in Japanese text) count as their ASCII forms. A finding says what
//! kind of identifier was found and where; the matched text is never kept or printed.

pub mod address;
pub mod email;
pub mod name;
pub mod number;
pub mod subject;
pub mod vocab;

use std::ops::Range;

pub use number::my_number_valid;

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
    /// `Patient.identifier`: a medical record number or another id the export should not hold
    PatientIdentifier,
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
            IdentifierKind::PatientIdentifier => "patient_identifier",
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

/// A char with full-width forms folded to ASCII (digits, letters, separators, `＠`).
pub(crate) fn fold(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '−' | '‐' | '‑' | '‒' | '–' | '—' | 'ー' | '―' => '-',
        '　' => ' ',
        '〜' => '~',
        _ => c,
    }
}

/// One finding: its kind and byte span in the text.
pub type Finding = (IdentifierKind, Range<usize>);

/// Every identifier in `text`, with its byte span, sorted by start, without overlaps.
pub fn scan(text: &str) -> Vec<Finding> {
    scan_counted(text).0
}

/// [`scan`], and the number of characters the scanners examined: at most a small constant times the
/// text's length, whatever the text (the tests hold it to that, since a timed test would be flaky).
pub fn scan_counted(text: &str) -> (Vec<Finding>, u64) {
    let mut found = Vec::new();
    let mut ops = 0u64;
    email::scan(text, &mut found, &mut ops);
    number::scan(text, &mut found, &mut ops);
    name::scan(text, &mut found, &mut ops);
    address::scan(text, &mut found, &mut ops);
    (merge(found), ops)
}

/// Sorts findings by start and drops any that overlap an earlier (or, at the same start, longer) one.
pub(crate) fn merge(mut found: Vec<Finding>) -> Vec<Finding> {
    found.sort_by(|a, b| a.1.start.cmp(&b.1.start).then(b.1.end.cmp(&a.1.end)));
    let mut out: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        match out.last() {
            Some(last) if f.1.start < last.1.end => {}
            _ => out.push(f),
        }
    }
    out
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

    #[test]
    fn redaction_removes_the_values_and_keeps_the_rest() {
        let t = "患者 090-1234-5678, mail a.b@example.com 以上";
        let f = scan(t);
        assert_eq!(redact(t, &f), "患者 [PHONE], mail [EMAIL] 以上");
    }

    #[test]
    fn overlapping_findings_keep_the_first_and_longest() {
        let f = merge(vec![
            (IdentifierKind::Phone, 5..10),
            (IdentifierKind::Email, 0..12),
            (IdentifierKind::Name, 12..14),
            (IdentifierKind::Address, 13..20),
        ]);
        assert_eq!(f, vec![(IdentifierKind::Email, 0..12), (IdentifierKind::Name, 12..14)]);
    }
}
