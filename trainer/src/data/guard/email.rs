//! E-mail addresses, with ASCII or non-ASCII local parts and domains and a full-width `＠`.
//!
//! Found from each `@`: the local part is read backwards (at most 64 characters, the RFC 5321 limit)
//! and the domain forwards (at most 255), and neither walk passes another `@`, so every character is
//! examined at most three times in all.

use super::{fold, Finding, IdentifierKind};

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;

fn is_local(c: char, ascii: bool) -> bool {
    if ascii {
        c.is_ascii_alphanumeric() || "._%+-".contains(c)
    } else {
        c.is_alphanumeric() || "._%+-".contains(c)
    }
}

fn is_domain(c: char, ascii: bool) -> bool {
    if ascii {
        c.is_ascii_alphanumeric() || c == '.' || c == '-'
    } else {
        c.is_alphanumeric() || c == '.' || c == '-'
    }
}

/// True for the chars an address is found from (the scan looks nowhere else).
pub(super) fn may_start(c: char) -> bool {
    c == '@' || c == '＠'
}

/// The e-mail address around the `@` at byte `at` (`len` bytes long), if there is one.
pub(super) fn email_at(text: &str, at: usize, len: usize, ops: &mut u64) -> Option<std::ops::Range<usize>> {
    // a local part that ends in ASCII is ASCII: `連絡先taro@...` keeps `連絡先` out of the address
    let before = fold(text[..at].chars().next_back()?);
    let ascii = before.is_ascii();
    let mut start = at;
    for (i, c) in text[..at].char_indices().rev().take(MAX_LOCAL) {
        *ops += 1;
        if !is_local(fold(c), ascii) {
            break;
        }
        start = i;
    }
    if start == at {
        return None;
    }
    let after = &text[at + len..];
    let first = fold(after.chars().next()?);
    let ascii = first.is_ascii();
    let mut end = 0;
    for (i, c) in after.char_indices().take(MAX_DOMAIN) {
        *ops += 1;
        if !is_domain(fold(c), ascii) {
            break;
        }
        end = i + c.len_utf8();
    }
    let domain = after[..end].trim_end_matches(['.', '-', '．']);
    if domain.starts_with(['.', '．']) {
        return None;
    }
    let (_, tld) = domain.rsplit_once(['.', '．'])?;
    (tld.chars().count() >= 2 && tld.chars().all(|c| fold(c).is_alphabetic())).then(|| start..at + len + domain.len())
}

/// E-mail addresses in `text`: this scanner's own pass (the guard runs all scanners in one pass,
/// [`super::scan`]; this one is its reference in the tests).
pub fn scan(text: &str, found: &mut Vec<Finding>, ops: &mut u64) {
    // most notes hold no `@` at all: one fast search instead of a walk over the chars
    if memchr::memchr(b'@', text.as_bytes()).is_none() && !text.contains('＠') {
        return;
    }
    for (at, c) in text.char_indices() {
        *ops += 1;
        if may_start(c) {
            if let Some(r) = email_at(text, at, c.len_utf8(), ops) {
                found.push((IdentifierKind::Email, r));
            }
        }
    }
}
