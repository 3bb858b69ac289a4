//! Numbers that identify a person: Individual Numbers (My Number) and phone numbers; and any number
//! a cue names as a medical record number or a date of birth (`MRN: 00123456`, `患者ID：12345`,
//! `DOB 04/17/1961`, `生年月日：昭和36年4月17日`, [`cued`]).
//!
//! One pass over the text. A *run* is digits joined by short separators (`-`, space, `.`, `・`, `~`,
//! `/`, brackets, or a spaced hyphen such as ` - `), read once from its first digit; the scan goes on
//! after its end, so each character is looked at a bounded number of times. A run keeps at most 16
//! digits and 6 group lengths: more never makes an identifier, and the bound keeps memory constant on
//! a 200 MB run of digits.

use super::{fold, Finding, IdentifierKind};
use std::ops::Range;

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

/// The folded char at byte `i` and the byte after it.
fn at(text: &str, i: usize) -> Option<(char, usize)> {
    let c = text.get(i..)?.chars().next()?;
    Some((fold(c), i + c.len_utf8()))
}

fn is_digit(c: Option<(char, usize)>) -> bool {
    c.is_some_and(|(c, _)| c.is_ascii_digit())
}

const MAX_DIGITS: usize = 16;
const MAX_GROUPS: usize = 6;

/// Separator marks, as bits of `Run::marks`.
const SPACE: u8 = 1;
const DASH: u8 = 2;
const DOT: u8 = 4;
const TILDE: u8 = 8;
const SLASH: u8 = 16;
const BRACKET: u8 = 32;

fn mark_bit(c: char) -> Option<u8> {
    match c {
        '-' => Some(DASH),
        '.' | '・' | '･' => Some(DOT),
        '~' => Some(TILDE),
        '/' => Some(SLASH),
        '(' | ')' => Some(BRACKET),
        _ => None,
    }
}

/// The separator starting at byte `i`: up to two spaces, at most one mark (or a `)(` pair), up to two
/// spaces, followed by a digit. Returns the byte of that digit and the marks used.
fn separator(text: &str, i: usize, ops: &mut u64) -> Option<(usize, u8)> {
    let mut j = i;
    let mut marks = 0u8;
    let mut spaces = 0;
    let mut seen_mark = 0;
    let mut len = 0;
    while let Some((c, next)) = at(text, j) {
        *ops += 1;
        if c.is_ascii_digit() {
            break;
        }
        if len >= 5 {
            return None;
        }
        // (a line break after a mark is a space: `090-1234-\n5678`, a number the note's lines cut; found
        // by a tester)
        if c == ' ' || (matches!(c, '\n' | '\r') && seen_mark >= 1) {
            if spaces >= 2 {
                return None;
            }
            spaces += 1;
            marks |= SPACE;
        } else if let Some(b) = mark_bit(c) {
            if seen_mark >= 1 && !(b == BRACKET && seen_mark == 1 && marks & BRACKET != 0) {
                return None;
            }
            seen_mark += 1;
            spaces = 0;
            marks |= b;
        } else {
            return None;
        }
        len += 1;
        j = next;
    }
    (j > i && is_digit(at(text, j))).then_some((j, marks))
}

/// A separator of a space, an opening bracket and nothing else (full-width forms too).
fn opens_bracket(separator: &str) -> bool {
    let mut marks = separator.chars().map(fold).skip_while(|c| *c == ' ').filter(|c| *c != ' ');
    separator.chars().next().map(fold) == Some(' ') && marks.next() == Some('(') && marks.next().is_none()
}

#[derive(Default)]
struct Run {
    digits: [u8; MAX_DIGITS],
    n: usize,
    groups: [usize; MAX_GROUPS],
    g: usize,
    marks: u8,
    plus: bool,
    paren: bool,
    /// ASCII letters directly before the run (`ID123...`)
    letter_before: bool,
    /// an ASCII letter directly after it
    letter_after: bool,
    /// the letters before are a phone cue (`TEL0312345678`)
    cue: bool,
}

impl Run {
    fn digit(&mut self, d: u8) {
        if self.n < MAX_DIGITS {
            self.digits[self.n] = d;
        }
        self.n += 1;
        if self.g <= MAX_GROUPS {
            self.groups[self.g - 1] += 1;
        }
    }

    fn group(&self) -> &[usize] {
        &self.groups[..self.g.min(MAX_GROUPS)]
    }
}

fn classify(run: &Run) -> Option<IdentifierKind> {
    let n = run.n;
    let groups = run.group();
    let g = run.g;
    if n == 12
        && !run.plus
        && (g == 1 || groups == [4, 4, 4] || groups == [3, 3, 3, 3])
        && run.marks & (TILDE | BRACKET) == 0
    {
        let d: [u8; 12] = run.digits[..12].try_into().ok()?;
        if my_number_valid(&d) {
            return Some(IdentifierKind::MyNumber);
        }
    }
    // a mobile number in its written groups (`090-1234-5678`, `090/1234/5678`, `080.1234.5678`) is one
    // whatever is glued to it (`aaaa090-1234-5678`: found by a tester); no date, code or decimal has
    // that shape
    if mobile_groups(run) {
        return Some(IdentifierKind::Phone);
    }
    // letters glued to a phone number make it a code (lot, accession number) unless they say TEL
    if (run.letter_before || run.letter_after) && !run.cue {
        return None;
    }
    if run.marks & SLASH != 0 {
        return None;
    }
    if run.plus {
        return (8..=15).contains(&n).then_some(IdentifierKind::Phone);
    }
    let d = &run.digits;
    if n > MAX_DIGITS {
        return None;
    }
    if d[0] == 0 && (n == 10 || n == 11) {
        if g > 1 && (2..=4).contains(&g) && (2..=5).contains(&groups[0]) {
            return Some(IdentifierKind::Phone);
        }
        if g == 1 && n == 11 && matches!(d[1], 5 | 7 | 8 | 9) && d[2] == 0 {
            return Some(IdentifierKind::Phone);
        }
        if g == 1 && n == 10 && d[1] != 0 {
            return Some(IdentifierKind::Phone);
        }
    }
    if n == 10 && groups == [3, 3, 4] && (run.paren || d[0] != 0) && run.marks & TILDE == 0 {
        return Some(IdentifierKind::Phone);
    }
    None
}

/// A Japanese mobile number (070, 080, 090) of 11 digits in groups of 3, 4 and 4 joined by one kind
/// of mark (`-`, `/`, `.`).
fn mobile_groups(run: &Run) -> bool {
    let d = &run.digits;
    run.n == 11
        && run.group() == [3, 4, 4]
        && d[0] == 0
        && matches!(d[1], 7..=9)
        && d[2] == 0
        && matches!(run.marks & !SPACE, DASH | SLASH | DOT)
}

/// Letters before a number that name it a phone number.
fn phone_cue(word: &str) -> bool {
    let w = word.as_bytes();
    let tail = &w[w.len().saturating_sub(6)..];
    let lower: Vec<u8> = tail.iter().map(u8::to_ascii_lowercase).collect();
    [&b"tel"[..], b"fax", b"phone", b"mobile", b"cell"].iter().any(|c| lower.ends_with(c))
}

/// True for the chars a number is read from: a digit, or `+` or `(` (before a digit), full-width
/// forms included (the scan looks nowhere else).
pub(super) fn may_start(c: char) -> bool {
    let c = fold(c);
    c.is_ascii_digit() || c == '+' || c == '('
}

/// What the scan knows of the text before a position.
pub(super) struct Before<'t> {
    /// the char before it, folded
    prev: Option<char>,
    /// that char is a `.` after a phone cue (`Tel.03-...`)
    dot_cue: bool,
    /// that char is a `.` after an ASCII letter (`No.1.090-...`, `Tel.`): an abbreviation's period,
    /// not a decimal point, so a number after it starts a run
    dot_word: bool,
    /// the ASCII letters right before it (at least their last 6 bytes: all that [`phone_cue`] reads)
    letters: &'t str,
    /// the char before is the period of a list number (`1.090-1234-5678`): set on [`run_at`]'s second
    /// read only, where that `.` would make the run a decimal's fraction
    list_period: bool,
}

/// The start of the ASCII letters (full-width ones too) that end at byte `end`, or any char
/// boundary 6 or more bytes before `end` inside them: [`phone_cue`] reads their last 6 bytes only.
fn letters_start(text: &str, end: usize) -> usize {
    let mut start = end;
    for (i, c) in text[..end].char_indices().rev() {
        if end - start >= 6 || !fold(c).is_ascii_alphabetic() {
            break;
        }
        start = i;
    }
    start
}

impl<'t> Before<'t> {
    /// The state at byte `i`, read back from `i`. The scan's own pass keeps the same state as it
    /// goes; at a position that no run covers, both are the same function of the text before it.
    pub(super) fn at(text: &'t str, i: usize) -> Self {
        let Some((p, c)) = text[..i].char_indices().next_back() else {
            return Before { prev: None, dot_cue: false, dot_word: false, letters: "", list_period: false };
        };
        let prev = fold(c);
        let dot_word = prev == '.' && text[..p].chars().next_back().is_some_and(|l| fold(l).is_ascii_alphabetic());
        let dot_cue = dot_word && {
            let start = letters_start(text, p);
            start < p && phone_cue(&text[start..p])
        };
        Before { prev: Some(prev), dot_cue, dot_word, letters: &text[letters_start(text, i)..i], list_period: false }
    }
}

/// The most digits a list number before an identifier has (`(2)`, `12)`, `100.`).
const MAX_LIST_NUMBER: usize = 3;

/// The run that starts at byte `i` (the folded char `c`, `next` the byte after it), if one starts
/// there: its finding, if it is a number that identifies, is pushed. Returns the byte after the run
/// and its last char (a digit).
///
/// A run whose first group is short and that is no identifier as a whole is read again from its
/// second group: a list number before a phone (`(2) 090-1234-5678`, `1) 03-1234-5678`, `3. 0312345678`)
/// joins the run through the separators a phone may have, and the 12 digits starting with 2 are
/// neither a phone nor an Individual Number. The second read is the run a text without the list number
/// would give, so it finds nothing a phone written alone would not; it is read once (not again from
/// its own second group) and only when the run is short enough to hold an identifier after its first
/// group, so the cost stays bounded.
pub(super) fn run_at(
    text: &str,
    i: usize,
    c: char,
    next: usize,
    before: &Before,
    found: &mut Vec<Finding>,
    ops: &mut u64,
) -> Option<(usize, char)> {
    let (end, last, second) = read_run(text, i, c, next, before, found, ops)?;
    let Some(second) = second else { return Some((end, last)) };
    let (c, after) = at(text, second)?;
    let mut before = Before::at(text, second);
    // a list number and a bare period (`1.090-1234-5678`, `1．090-...`): the `.` glues the rest to the
    // list number as a decimal's fraction, so it is read as after a list number only when that finds
    // an identifier grouped by marks ([`read_run`]); otherwise the run is given up as it was before
    // (the scan goes on char by char), so a decimal (`1.090`, `3.5-4.0`) reads as it always did
    if before.prev == Some('.') && text[..second].chars().nth_back(1).is_some_and(|d| fold(d).is_ascii_digit()) {
        before.list_period = true;
        let found_before = found.len();
        let (again, again_last, _) = read_run(text, second, c, after, &before, found, ops)?;
        return (found.len() > found_before).then_some(if again > end { (again, again_last) } else { (end, last) });
    }
    let (again, again_last, _) = read_run(text, second, c, after, &before, found, ops)?;
    Some(if again > end { (again, again_last) } else { (end, last) })
}

/// [`run_at`]'s one read of a run: the byte after it, its last char, and, when the run is no
/// identifier but may hold one after a list number, the byte of its second group's first digit.
fn read_run(
    text: &str,
    i: usize,
    c: char,
    next: usize,
    before: &Before,
    found: &mut Vec<Finding>,
    ops: &mut u64,
) -> Option<(usize, char, Option<usize>)> {
    let prev = before.prev;
    let lead = (c == '+' || c == '(') && is_digit(at(text, next));
    let prev_letter = prev.is_some_and(|p| p.is_ascii_alphabetic());
    // after `_` a number is part of a name (`lab_2024`, `file_0312345678`): only a cue's (`MRN_1234567`)
    let underscore = prev == Some('_');
    let glued = prev.is_some_and(|p| p.is_ascii_digit() || matches!(p, ',' | '@'))
        || (prev == Some('.') && !before.dot_word && !before.list_period);
    if !(c.is_ascii_digit() || lead) || glued || (underscore && lead) {
        return None;
    }
    let start = i;
    let mut run = Run {
        g: 1,
        plus: c == '+',
        paren: c == '(',
        letter_before: prev_letter,
        cue: before.dot_cue || (prev_letter && phone_cue(before.letters)),
        ..Default::default()
    };
    let mut j = if lead { next } else { i };
    let mut last = c;
    let mut second = None;
    while let Some((c, next)) = at(text, j) {
        *ops += 1;
        if let Some(d) = c.to_digit(10).filter(|_| c.is_ascii_digit()) {
            run.digit(d as u8);
            last = c;
            j = next;
        } else if let Some((digit_at, marks)) = separator(text, j, ops) {
            // a bare space after a number written with marks (`090-1234-5678 03-...`), or after a
            // long group (`09012345678 0312345678`), starts the next number; but not after a bracketed
            // area code that starts with 0 and its first group (`(03) 5555 6473`, `(090) 1234 5678`)
            let current = run.groups.get(run.g - 1).copied().unwrap_or(usize::MAX);
            let area_code = run.paren && run.g == 2 && run.digits[0] == 0 && run.marks & !(SPACE | BRACKET) == 0;
            // nor in an international number with its trunk prefix in brackets (`+81 (0)90 1234 5678`:
            // found by a tester), while it is shorter than one
            let international = run.plus && run.marks & !(SPACE | BRACKET) == 0 && run.n < 11;
            if marks == SPACE && ((run.marks & !SPACE != 0 && !area_code && !international) || current >= 5) {
                break;
            }
            // and so does a space and an opening bracket after three groups or a long one (`(03) 5555
            // 6473 (03) 3410 5613`), where `03 (1234) 5678` goes on
            if marks == SPACE | BRACKET && (run.g >= 3 || current >= 5) && opens_bracket(&text[j..digit_at]) {
                break;
            }
            if run.g == 1 {
                second = Some(digit_at);
            }
            run.marks |= marks;
            run.g += 1;
            last = ' ';
            j = digit_at;
        } else {
            break;
        }
    }
    let after = at(text, j);
    run.letter_after = after.is_some_and(|(c, _)| c.is_ascii_alphabetic());
    let glued_after = after.is_some_and(|(c, n)| c == '_' || (c == ',' && is_digit(at(text, n))));
    // after a list number's bare period, only a number grouped by a mark (`-`, `.`, brackets) is one:
    // `1.0901234567` and `1.090 1234 5678` may be a decimal and a table's columns
    let decimal_like = before.list_period && run.marks & !SPACE == 0;
    if !glued_after && !decimal_like && !underscore {
        if let Some(kind) = classify(&run) {
            found.push((kind, start..j));
            return Some((j, last, None));
        }
    }
    if let Some((kind, span)) = cued(text, start, j, &run, ops) {
        found.push((kind, span));
        return Some((j, last, None));
    }
    if underscore {
        // no run (the scan goes on char by char, as after a digit)
        return None;
    }
    // after a list number: at most 3 digits, and no more digits after them than an identifier has
    let list_number = run.groups[0] <= MAX_LIST_NUMBER && run.n <= MAX_DIGITS + MAX_LIST_NUMBER;
    Some((j, last, second.filter(|_| list_number && !glued_after)))
}

/// Cues too general to name a short number (`ID: 12345` may be a specimen's, `No. 3` a list's) that
/// name one of 6 or more digits a record number (`ID: 7654321`, `ＩＤ：７６５４３２１`, `Pt No.
/// 7654321`, a table's `| ID | 7654321 |`: found by a tester; the commonest label in Japanese EHR
/// exports).
const SHORT_ID_CUES: &[&str] =
    &["id", "ＩＤ", "ｉｄ", "pt no", "pt no.", "pt id", "pt#", "pt #", "patient #", "患者no"];

/// Whether a general cue starting at byte `at` is a field's label of its own (`ID: ...` at a line's or
/// a cell's start, after punctuation), not the last word of another's (`Specimen ID`, `Accession ID`,
/// `オーダーID`: found by a tester, those were patient numbers and blocked the input): the char before it,
/// spaces skipped, is no letter, digit, kana or kanji.
fn field_label(text: &str, at: usize) -> bool {
    text.get(..at)
        .and_then(|t| t.trim_end_matches([' ', '\u{3000}']).chars().next_back())
        .is_none_or(|c| !c.is_alphanumeric())
}

/// Cues that name the number after them a patient's record number (ASCII compared without case).
const ID_CUES: &[&str] = &[
    "mrn",
    "mr#",
    "mr no",
    "medical record number",
    "medical_record_number",
    "medical record no",
    "patient id",
    "patient_id",
    "patientid",
    "patient no",
    "patient number",
    "chart no",
    "chart number",
    "hospital no",
    "hospital number",
    "hospital_number",
    "nhs number",
    "nhs no",
    "患者id",
    "患者ＩＤ",
    "患者番号",
    "カルテ番号",
    "カルテno",
    "カルテＮｏ",
    "診察券番号",
    "病歴番号",
    "id番号",
    "ＩＤ番号",
    "ＭＲＮ",
    // the insured person's number of a Japanese health insurance card, and the US Social Security number
    "被保険者番号",
    "被保険者証番号",
    "保険者番号",
    "ssn",
    "social security number",
    "social security no",
];

/// Cues that name the date after them a date of birth.
const DOB_CUES: &[&str] = &[
    "dob",
    "d.o.b",
    "d.o.b.",
    "date of birth",
    "date_of_birth",
    "date-of-birth",
    "birth date",
    "birth_date",
    "birth-date",
    "birthdate",
    "born",
    "born on",
    "生年月日",
    "誕生日",
];

/// What may stand between a date-of-birth cue and the date's first digit: a Japanese era, a month.
const ERAS: &[&str] = &["明治", "大正", "昭和", "平成", "令和"];
const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];

/// Whether the last byte of a text may end one of the cues (lower-cased ASCII, or the last byte of
/// `号`, `日`, `Ｄ`, `ｏ`, `Ｎ`): the one test most numbers fail.
fn may_end_cue(b: u8) -> bool {
    matches!(b.to_ascii_lowercase(), b'n' | b'o' | b'r' | b'd' | b'b' | b'h' | b'e' | b'#' | b'.' | b'y')
        || matches!(b, 0xB7 | 0xA5 | 0xA4 | 0x8F | 0xAE | 0x84)
}

/// The longest of `words` that `text[..at]` ends with (ASCII compared without case), not glued to
/// an ASCII letter or digit before it (`newborn` is no `born`): its length.
fn ends_with_word(text: &[u8], at: usize, words: &[&str]) -> Option<usize> {
    words
        .iter()
        .map(|w| w.as_bytes())
        .filter(|w| {
            at >= w.len()
                && text[at - w.len()..at].eq_ignore_ascii_case(w)
                && (at == w.len() || !text[at - w.len() - 1].is_ascii_alphanumeric())
        })
        .map(|w| w.len())
        .max()
}

/// The length in bytes of the separator that ends at `at`, 0 for none: `:`, `#`, `=`, `.`, `-`, `_`,
/// a space or tab; the full-width colon, number sign, comma and space, `、`, and the particles `は` and
/// `が` (`カルテ番号は12345678`, `誕生日は4月17日`).
fn separator_len(text: &[u8], at: usize) -> usize {
    if at >= 1 && matches!(text[at - 1], b' ' | b':' | b'#' | b'=' | b'.' | b'-' | b'_' | b'\t' | b')' | b']' | b'|') {
        1
    } else if at >= 3
        && matches!(
            &text[at - 3..at],
            [0xEF, 0xBC, 0x9A | 0x83 | 0x89 | 0x8C]
                | [0xEF, 0xBD, 0x9C]
                | [0xE3, 0x80, 0x80 | 0x81]
                | [0xE3, 0x81, 0xAF | 0x8C]
        )
    {
        3
    } else {
        0
    }
}

/// The byte where up to 4 separators before `at` start ([`separator_len`]).
fn separators_before(text: &[u8], mut at: usize) -> usize {
    for _ in 0..4 {
        match separator_len(text, at) {
            0 => break,
            n => at -= n,
        }
    }
    at
}

/// A number (the run at `start..end`) that a cue before it names a patient's record number or date of
/// birth: the finding's kind and span. A record number is the token (ASCII letters, digits, `-`, `_`)
/// the run ends, with 3 or more digits and not shaped as a date, after `MRN`, `患者ID`, ... and up to
/// 4 separators (`:`, `#`, `=`, `.`, `)`, spaces), or glued to the cue (`MRN1234567`, `患者ID12345`,
/// `MRN-CANARY-7777`). A date of birth is a run shaped as a date (3 groups by `/`, `-` or `.`; 8
/// digits; a year, month or day before `年`/`月`/`日`; a day before or after a month's name) after
/// `DOB`, `born`, `生年月日`, ... and separators, a Japanese era (`昭和`, or its initial before a dotted
/// date: `S36.4.17`) or a month between; the span takes the date's other parts where the run is not
/// the whole date (`4月17日`, `, 1961`, ` Apr 1961`). Looks back a bounded number of bytes, without
/// allocating: it runs for every number that is no phone.
#[inline(never)]
fn cued(text: &str, start: usize, end: usize, run: &Run, ops: &mut u64) -> Option<(IdentifierKind, Range<usize>)> {
    *ops += 4;
    let b = text.as_bytes();
    let next = at_char(text, end);
    let date_groups = run.g >= 3 && run.marks & (DASH | SLASH | DOT) != 0 && run.marks & (TILDE | BRACKET) == 0;
    let kanji_date = matches!(next, Some('年' | '月' | '日'));
    // the token the run ends: ASCII letters, digits, `-`, `_` (at most 24 bytes)
    let mut tok = start;
    while tok > 0 && start - tok < 24 && (b[tok - 1].is_ascii_alphanumeric() || matches!(b[tok - 1], b'-' | b'_')) {
        tok -= 1;
    }
    let token_digits = run.n + b[tok..start].iter().filter(|c| c.is_ascii_digit()).count();
    if token_digits >= 3 && !(date_groups && date_like(run)) && !kanji_date {
        // a cue the token's leading letters end (`MRN1234567`, `MRN_1234567`, `患者ID12345`, `Patient
        // ID12345`), not inside a word (`mRNA-1273`)
        let letters = b[tok..start].iter().take_while(|c| c.is_ascii_alphabetic()).count();
        let k = tok + letters;
        if letters > 0 && k < start + 1 && !b.get(k).is_some_and(u8::is_ascii_alphabetic) {
            let short = ends_with_word(b, k, SHORT_ID_CUES).filter(|_| token_digits >= 6);
            if ends_with_word(b, k, ID_CUES).is_some() || short.is_some_and(|n| field_label(text, k - n)) {
                return Some((IdentifierKind::PatientIdentifier, tok..end));
            }
        }
        // a cue of words joined by `_` glued by `_` to the number (`Patient_ID_1234567`)
        if start > tok && b[start - 1] == b'_' && ends_with_word(b, start - 1, ID_CUES).is_some() {
            return Some((IdentifierKind::PatientIdentifier, start..end));
        }
        // the cue right before the token or up to 4 separators before it (`MR#` ends with what is
        // also a separator)
        let mut at = tok;
        for _ in 0..5 {
            let cue = |cues| at > 0 && may_end_cue(b[at - 1]) && ends_with_word(b, at, cues).is_some();
            let short = || {
                let n = ends_with_word(b, at, SHORT_ID_CUES).filter(|_| at > 0 && may_end_cue(b[at - 1]));
                n.is_some_and(|n| field_label(text, at - n))
            };
            if cue(ID_CUES) || (token_digits >= 6 && at < tok && short()) {
                return Some((IdentifierKind::PatientIdentifier, tok..end));
            }
            match separator_len(b, at) {
                0 => break,
                n => at -= n,
            }
        }
    }
    // a date of birth: the run itself, at most an era's initial glued before it (`S36.4.17`), or its
    // cue glued by `_` or `-` (`DOB_04/17/1961`: the token is the cue's, the date starts at the run)
    let tok = if start > 0 && matches!(b[start - 1], b'_' | b'-') { start } else { tok };
    let era_initial = tok + 1 == start && date_groups && matches!(b[tok], b'M' | b'T' | b'S' | b'H' | b'R');
    if tok != start && !era_initial {
        return None;
    }
    // a day before a month's name (`17 Apr 1961`, `17-Apr-1961`): the month and year after it
    let month_after = ((1..=2).contains(&run.n) && run.g == 1).then(|| month_then_year(b, end)).flatten();
    let mut at = separators_before(b, tok);
    let after_word = at > 0 && b[at - 1].is_ascii_alphabetic();
    let month_before = (1..=2).contains(&run.n) && run.g == 1 && after_word;
    let shaped = date_groups || (run.g == 1 && run.n == 8) || kanji_date;
    if !shaped && !month_before && month_after.is_none() {
        return None;
    }
    let mut date_start = tok;
    let mut stop = end;
    if let Some(n) = ends_with_word(b, at, ERAS).filter(|_| shaped && !era_initial) {
        date_start = at - n;
        at = separators_before(b, date_start);
    } else if let Some(e) = month_after {
        stop = e;
    } else if month_before {
        let n = ends_with_word(b, at, MONTHS)?;
        date_start = at - n;
        at = separators_before(b, date_start);
        // `April 17, 1961`: the year after
        stop = year_after(b, end).unwrap_or(end);
    } else if !shaped {
        return None;
    }
    if kanji_date {
        // the date's other parts: `4月17日` after `1961年`
        for (k, c) in text[end..].char_indices().take(12) {
            let f = fold(c);
            if !(f.is_ascii_digit() || matches!(f, '年' | '月' | '日')) {
                break;
            }
            stop = end + k + c.len_utf8();
        }
    }
    let cue_before = at > 0 && may_end_cue(b[at - 1]) && ends_with_word(b, at, DOB_CUES).is_some();
    // (named by what follows it, a date read from its year: its month's and day's runs after it are
    // inside the span found; a kanji date needs its era or a year of 4 digits and a month: `小学3年生`
    // is a school year, not a birth)
    let whole_kanji_date = date_start < tok || run.n == 4;
    let from_year = !kanji_date || (next == Some('年') && whole_kanji_date && text[end..stop].contains('月'));
    if !cue_before && !(from_year && born_after(text, stop)) {
        return None;
    }
    Some((IdentifierKind::BirthDate, date_start..stop))
}

/// Whether the text at `at` names the date before it a date of birth, as Japanese records write one
/// after the date: `昭和45年1月2日生`, `S45.1.2生まれ`, `1970年1月2日生れ`, `…生、` — `生` not starting a
/// word of kanji or katakana (`生検` biopsy, `生化学`, `生食` saline, `生理`, `生活` are no birth).
fn born_after(text: &str, at: usize) -> bool {
    let mut rest = text.get(at..).unwrap_or("").chars();
    if rest.next() != Some('生') {
        return false;
    }
    !rest
        .next()
        .is_some_and(|c| matches!(c, '\u{3400}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{30A0}'..='\u{30FF}'))
}

/// Whether a run of three groups reads as a calendar date: a year of 4 digits (1800-2199) first or
/// last, and a month (1-12) and a day (1-31) of 1 or 2 digits, or a year of 2 digits last
/// (`2024-01-05`, `01/05/2024`, `5.1.24`); `2023-001-456` and `12/345/678` are record numbers.
fn date_like(run: &Run) -> bool {
    let g = run.group();
    if g.len() != 3 || run.n > MAX_DIGITS || g.iter().any(|&len| len > 4) {
        return false;
    }
    let value = |from: usize, len: usize| run.digits[from..from + len].iter().fold(0u32, |v, &d| v * 10 + d as u32);
    let (a, b, c) = (value(0, g[0]), value(g[0], g[1]), value(g[0] + g[1], g[2]));
    let small = |len: usize, v: u32, max: u32| len <= 2 && (1..=max).contains(&v);
    let year4 = |len: usize, v: u32| len == 4 && (1800..=2199).contains(&v);
    (year4(g[0], a) && small(g[1], b, 12) && small(g[2], c, 31))
        || ((year4(g[2], c) || g[2] == 2)
            && ((small(g[0], a, 12) && small(g[1], b, 31)) || (small(g[0], a, 31) && small(g[1], b, 12))))
}

/// After a day at `end`: ` Apr 1961`, `-Apr-1961`, ` April, 1961`, `Apr1961` (a month's name and a
/// year of 4 digits): the byte after the year.
fn month_then_year(b: &[u8], end: usize) -> Option<usize> {
    let mut i = end;
    if i < b.len() && matches!(b[i], b' ' | b'-' | b'/' | b'.') {
        i += 1;
    }
    // (glued to the day too: `17Apr1961`)
    let letters = b[i..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
    if letters < 3 || !MONTHS.iter().any(|m| b[i..i + letters].eq_ignore_ascii_case(m.as_bytes())) {
        return None;
    }
    year_after(b, i + letters)
}

/// After `end`: a separator or two (`, `, ` `, `-`) and a year of 4 digits: the byte after it.
fn year_after(b: &[u8], end: usize) -> Option<usize> {
    let mut i = end;
    for _ in 0..2 {
        if i < b.len() && matches!(b[i], b' ' | b',' | b'-' | b'/' | b'.') {
            i += 1;
        }
    }
    let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    (digits == 4).then_some(i + 4)
}

/// The folded char at byte `i`.
fn at_char(text: &str, i: usize) -> Option<char> {
    text.get(i..)?.chars().next().map(fold)
}

/// Phone numbers and Individual Numbers in `text`: this scanner's own pass (the guard runs all
/// scanners in one pass, [`super::scan`]; this one is its reference in the tests).
pub fn scan(text: &str, found: &mut Vec<Finding>, ops: &mut u64) {
    // no ASCII digit and no full-width form (all start with byte 0xEF): nothing to find
    if !text.bytes().any(|b| b.is_ascii_digit()) && memchr::memchr(0xEF, text.as_bytes()).is_none() {
        return;
    }
    let mut i = 0;
    // the previous (folded) char, and where the ASCII letters right before `i` start
    let mut prev: Option<char> = None;
    let mut word_start = 0;
    // the previous char is a `.` after a phone cue (`Tel.03-...`)
    let mut dot_cue = false;
    // the previous char is a `.` after an ASCII letter
    let mut dot_word = false;
    while let Some((c, next)) = at(text, i) {
        *ops += 1;
        let before = Before { prev, dot_cue, dot_word, letters: &text[word_start..i], list_period: false };
        if let Some((j, last)) = run_at(text, i, c, next, &before, found, ops) {
            prev = Some(last);
            (dot_cue, dot_word) = (false, false);
            word_start = j;
            i = j;
            continue;
        }
        let prev_letter = prev.is_some_and(|p| p.is_ascii_alphabetic());
        dot_word = c == '.' && prev_letter;
        dot_cue = dot_word && phone_cue(&text[word_start..i]);
        if !prev_letter || !c.is_ascii_alphabetic() {
            word_start = i;
        }
        prev = Some(c);
        i = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spans of what the cues name, as text.
    fn cued_spans(t: &str) -> Vec<(IdentifierKind, &str)> {
        let mut f = Vec::new();
        scan(t, &mut f, &mut 0);
        f.into_iter().map(|(k, r)| (k, &t[r])).collect()
    }

    #[test]
    fn a_number_a_cue_names_a_record_number_or_a_birth_date_is_found() {
        use IdentifierKind::{BirthDate as B, PatientIdentifier as P};
        for (text, want) in [
            ("MRN: 00123456 seen today", vec![(P, "00123456")]),
            ("mrn#4455667", vec![(P, "4455667")]),
            ("MR# 123456", vec![(P, "123456")]),
            ("MRN-CANARY-7777", vec![(P, "MRN-CANARY-7777")]),
            ("MRN1234567", vec![(P, "MRN1234567")]),
            ("Patient ID = A-12345", vec![(P, "A-12345")]),
            ("患者ID：12345678", vec![(P, "12345678")]),
            ("カルテ番号 ００１２３４", vec![(P, "００１２３４")]),
            ("DOB 04/17/1961.", vec![(B, "04/17/1961")]),
            ("Zyxwq Canarytest, born 1961-04-17", vec![(B, "1961-04-17")]),
            ("date of birth: April 17, 1961", vec![(B, "April 17, 1961")]),
            ("生年月日：昭和36年4月17日生", vec![(B, "昭和36年4月17日")]),
            ("生年月日 1961年4月17日", vec![(B, "1961年4月17日")]),
            ("DOB: 19610417", vec![(B, "19610417")]),
            ("患者ID12345678", vec![(P, "ID12345678")]),
            ("患者ID１２３４５ 受診", vec![(P, "ID１２３４５")]),
            ("Patient ID12345", vec![(P, "ID12345")]),
            ("カルテNo12345", vec![(P, "No12345")]),
            ("ＭＲＮ：１２３４５６", vec![(P, "１２３４５６")]),
            ("(MRN) 123456", vec![(P, "123456")]),
            ("DOB: 17 Apr 1961, seen", vec![(B, "17 Apr 1961")]),
            ("DOB: 17-Apr-1961", vec![(B, "17-Apr-1961")]),
            ("生年月日：S36.4.17", vec![(B, "S36.4.17")]),
            ("DOB 04/17/1961 tel 03-1234-5678", vec![(B, "04/17/1961"), (IdentifierKind::Phone, "03-1234-5678")]),
            ("Patient ID 2023-001-456", vec![(P, "2023-001-456")]),
            ("MRN 1234.5678.9", vec![(P, "1234.5678.9")]),
            ("MRN: 12/345/678", vec![(P, "12/345/678")]),
            // found by a tester: a bare `ID` (the commonest label) before 6 or more digits, full width,
            // in a pasted table, `Pt No.`
            ("ID: 7654321", vec![(P, "7654321")]),
            ("ＩＤ：７６５４３２１", vec![(P, "７６５４３２１")]),
            ("| ID | 7654321 |", vec![(P, "7654321")]),
            ("｜ＩＤ｜７６５４３２１｜", vec![(P, "７６５４３２１")]),
            ("ID\t7654321", vec![(P, "7654321")]),
            ("Pt No. 7654321", vec![(P, "7654321")]),
            ("ID7654321", vec![(P, "ID7654321")]),
            ("seen.\nID 7654321", vec![(P, "7654321")]),
            ("MRN_1234567 seen", vec![(P, "MRN_1234567")]),
            ("DOB: 17Apr1961", vec![(B, "17Apr1961")]),
            ("誕生日は4月17日です", vec![(B, "4月17日")]),
            ("生年月日が1961年4月17日", vec![(B, "1961年4月17日")]),
            ("DOB_04/17/1961 noted", vec![(B, "04/17/1961")]),
            ("pt_DOB_1961-04-17", vec![(B, "1961-04-17")]),
            ("DOB_17Apr1961", vec![(B, "17Apr1961")]),
            ("birth_date: 1961-04-17", vec![(B, "1961-04-17")]),
            ("カルテ番号は12345678", vec![(P, "12345678")]),
            ("患者IDが1234567", vec![(P, "1234567")]),
            ("生年月日は、1961年4月17日", vec![(B, "1961年4月17日")]),
            ("Patient_ID_1234567", vec![(P, "1234567")]),
            ("DOB-04/17/1961", vec![(B, "04/17/1961")]),
            ("birth-date: 1961-04-17", vec![(B, "1961-04-17")]),
            ("生年月日は、S36.4.17", vec![(B, "S36.4.17")]),
            // found by a tester: the date first, then 生 (生まれ, 生れ), as Japanese records write it;
            // insurance and social security numbers
            ("患者 昭和45年1月2日生 来院", vec![(B, "昭和45年1月2日")]),
            ("1970年1月2日生", vec![(B, "1970年1月2日")]),
            ("S45.1.2生の男性", vec![(B, "S45.1.2")]),
            ("H2.3.4生まれ", vec![(B, "H2.3.4")]),
            ("平成2年3月4日生まれ、", vec![(B, "平成2年3月4日")]),
            ("1970-01-02生れ", vec![(B, "1970-01-02")]),
            ("被保険者番号 12345678", vec![(P, "12345678")]),
            ("SSN 123-45-6789", vec![(P, "123-45-6789")]),
            ("Social Security Number: 123456789", vec![(P, "123456789")]),
        ] {
            assert_eq!(cued_spans(text), want, "{text}");
        }
        // no cue, or numbers a cue does not name
        for text in [
            "mRNA-1273 vaccine given",
            "born at 38 weeks, 3200 g",
            "newborn 2020-01-01 screening",
            "dobutamine 5 mcg/kg/min",
            "MRN: 12",
            "creatinine 1.2 mg/dL on 2024-01-05",
            "ID: 12345",
            "COVID 2024-01-05 123456 cells",
            "RAPID 1234567",
            // another thing's number (found by a tester: blocked as a patient's)
            "Specimen ID: 123456 採取",
            "Accession ID 2023100201",
            "オーダーID: 88812345",
            "sample ID7654321",
            "born 1961",
            "Reviewed medical record 2019-03-01 visit",
            "See medical record 2015 for details",
            "hospital number 2024-01-05",
            "MRI 2024-01-05: no change",
            "患者 3名、検体 120本",
            "file lab_0312345678 and run_19610417",
            "誕生日会は4月17日",
            "visit_2024-01-05 and lab_04/17/2024",
            // 生 starting a word: biopsy, biochemistry, saline
            "2024年3月5日生検施行",
            "3月5日生化学検査",
            "2024-03-05生食 500mL",
            // school years (found by a review)
            "小学3年生の男児",
            "高校1年生。",
        ] {
            assert_eq!(cued_spans(text), vec![], "{text}");
        }
    }

    fn kinds(t: &str) -> Vec<IdentifierKind> {
        let mut f = Vec::new();
        scan(t, &mut f, &mut 0);
        f.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn my_number_check_digit() {
        // the published example: 1234 5678 9018 is valid
        assert!(my_number_valid(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 8]));
        assert!(!my_number_valid(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 9]));
        assert_eq!(kinds("番号は123456789018です"), [IdentifierKind::MyNumber]);
        assert!(kinds("1234567890187").is_empty());
        assert!(kinds("123456789019").is_empty());
    }

    #[test]
    fn grouping_decides_between_phone_and_decimal() {
        assert_eq!(kinds("03.1234.5678"), [IdentifierKind::Phone]);
        assert!(kinds("ratio 0.123 456 789").is_empty());
        assert!(kinds("2024.03.05 10.5").is_empty());
    }

    /// Found by a tester: a mobile number with slashes, with half-width prolonged sound marks, or
    /// glued to letters was no phone.
    #[test]
    fn a_mobile_number_in_its_groups_is_one_whatever_surrounds_it() {
        for text in [
            "090/1234/5678",
            "090ｰ1234ｰ5678",
            "aaaa090-1234-5678",
            "090-1234-5678x",
            "tel:080.1234.5678",
            "090-1234-\n5678",
            "+81 (0)90 1234 5678",
        ] {
            assert_eq!(kinds(text), [IdentifierKind::Phone], "{text}");
        }
        // dates and codes of other groups are not
        for text in ["2024/01/05", "LOT123-4567-8901", "12/345/678"] {
            assert!(kinds(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn numbers_side_by_side_are_read_apart() {
        let two = [IdentifierKind::Phone, IdentifierKind::Phone];
        assert_eq!(kinds("090-1234-5678 03-1234-5678"), two);
        assert_eq!(kinds("09012345678 0312345678"), two);
        assert_eq!(kinds("+81 90 1234 5678"), [IdentifierKind::Phone]);
        assert_eq!(kinds("(03) 5555 6473 03-1234-5678"), two);
        assert_eq!(kinds("(03) 5555 6473 0312345678"), two);
        assert_eq!(kinds("(03) 5555 6473 (03) 3410 5613"), two);
        assert_eq!(kinds("03-5555-6473 （03）3410-5613"), two);
        assert_eq!(kinds("0355556473 (03) 3410 5613"), two);
        assert_eq!(kinds("03 (5555) 6473"), [IdentifierKind::Phone]);
    }

    /// `1.090-1234-5678` read as the decimal `1.090` and the groups after it: the period glued the
    /// phone to the list number, and the second read from `090` gave up at the period.
    #[test]
    fn phone_after_a_list_number_and_a_period_was_missed() {
        for t in [
            "1.090-1234-5678",
            "1．090-1234-5678",
            "１．０９０－１２３４－５６７８",
            "12.03-1234-5678",
            "2.03(1234)5678",
        ] {
            assert_eq!(kinds(t), [IdentifierKind::Phone], "{t}");
            let mut f = Vec::new();
            scan(t, &mut f, &mut 0);
            assert!(f[0].1.start > 0, "{t}: the list number is not part of the finding");
        }
        assert_eq!(kinds("1.090-1234-5678 2.03-1234-5678"), [IdentifierKind::Phone, IdentifierKind::Phone]);
        // decimals, ranges and table columns stay what they were
        for t in [
            "1.09",
            "1.090",
            "3.5-4.0",
            "SG 1.010-1.030",
            "1.0901234567",
            "1.090 1234 5678",
            "0.5-1234-5678",
            "1.5-2.0-3.5",
            "2.2024-03-05",
            "1.123456789018",
        ] {
            assert!(kinds(t).is_empty(), "{t}: {:?}", kinds(t));
        }
    }

    /// `No.1.090-1234-5678`: the period of `No.` glued the list number to the word as a decimal's
    /// fraction would be, and nothing after it was read.
    #[test]
    fn phone_after_an_abbreviations_period_was_missed() {
        for t in [
            "No.1.090-1234-5678",
            "no.2 03-1234-5678",
            "Ｎｏ．１．０９０－１２３４－５６７８",
            "ID.0312345678",
            "e.g.090-1234-5678",
        ] {
            assert_eq!(kinds(t), [IdentifierKind::Phone], "{t}");
        }
        // short numbers after a word's period stay what they were
        for t in ["No.1", "Fig.12", "vol.3.5-4.0", "ver.1.0901234567", "No.1.090"] {
            assert!(kinds(t).is_empty(), "{t}: {:?}", kinds(t));
        }
    }
}
