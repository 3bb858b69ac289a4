//! A subject's own structured identifiers (names, phones, e-mails, addresses and record numbers in
//! its Patient resource, when an export wrongly holds them) searched for in that subject's notes.
//!
//! Only hashes are kept: per subject, a 64-bit hash and the length of each identifier after
//! normalization (full-width folded, ASCII lowercased, spaces and separators such as `-`, `.`, `(`
//! dropped, so `03-1234-5678` matches `０３（１２３４）５６７８` and `山田 太郎` matches `山田太郎`). A note
//! is normalized the same way and every window of each stored length is hashed with a rolling hash:
//! O(note length x distinct lengths), a handful per subject. Memory: 16 bytes per identifier.
//!
//! Too-short values are not kept (a 1-character name part, a phone with fewer than 7 digits): they
//! would match everywhere.

use super::{fold, Finding, IdentifierKind};
use std::collections::HashMap;

const BASE: u64 = 0x0000_0100_0000_01B3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Needle {
    hash: u64,
    len: u32,
    kind: IdentifierKind,
}

/// Normalized identifiers per subject id (as the input writes it).
#[derive(Debug, Default)]
pub struct Store {
    by_subject: HashMap<String, Vec<Needle>>,
    /// (subject, events read when identifiers it did not have arrived): earlier notes are checked at
    /// the end
    pub arrivals: Vec<(String, usize)>,
    /// Hashes of the subjects that had free text read that is not kept (every note when events are
    /// not kept, `data check`; `Observation.note` always), and whether one of them got identifiers it
    /// did not have later (a Patient resource after its notes, in a file not named `Patient*`; a
    /// RelatedPerson after them): then the read checks the text again, in a second pass.
    pub noted_before: std::collections::HashSet<u64>,
    pub recheck: bool,
    /// The patients that RelatedPerson and Person resources name ((resource, id), and how many times
    /// it is named): those that are no subject of the input are counted at the end of the read.
    pub related: HashMap<(&'static str, String), u64>,
    /// The Patients each Person links, where it links two or more: records of one human, made one
    /// privacy unit at the end of the read as `Patient.link` makes them.
    pub same_person: Vec<Vec<String>>,
    /// Hashes ([`subject_key`]) of the ids a Person links by `urn:uuid:` with no `type`, and of the
    /// ids of the resources of the input that such a link may name and are no Patient (Practitioner,
    /// PractitionerRole, RelatedPerson, Person): a link to one of those is no missing patient.
    pub uuid_linked: std::collections::HashSet<u64>,
    pub not_patients: std::collections::HashSet<u64>,
}

/// The key of a subject in [`Store::noted_before`].
pub fn subject_key(subject: &str) -> u64 {
    hash(subject.chars()).0
}

/// The char a note and an identifier are compared on; `None` for characters that are skipped.
fn norm(c: char) -> Option<char> {
    let f = fold(c);
    if f.is_whitespace()
        || matches!(f, '-' | '.' | '(' | ')' | '・' | ',' | '/' | '~' | '_' | '、' | '。' | '「' | '」')
    {
        return None;
    }
    Some(f.to_ascii_lowercase())
}

fn hash(chars: impl Iterator<Item = char>) -> (u64, u32) {
    chars.fold((0u64, 0u32), |(h, n), c| (h.wrapping_mul(BASE).wrapping_add(c as u64 + 1), n + 1))
}

impl Store {
    /// Remembers `value` as an identifier of `subject`, unless it is too short to be one. Returns
    /// whether `subject` has an identifier it did not have.
    pub fn add(&mut self, subject: &str, kind: IdentifierKind, value: &str) -> bool {
        let normalized: Vec<char> = value.chars().filter_map(norm).collect();
        let ascii = normalized.iter().all(char::is_ascii);
        let digits = normalized.iter().filter(|c| c.is_ascii_digit()).count();
        let long_enough = match kind {
            IdentifierKind::Phone | IdentifierKind::Telecom if digits == normalized.len() => digits >= 7,
            IdentifierKind::PatientIdentifier => normalized.len() >= 5,
            IdentifierKind::Address => normalized.len() >= if ascii { 6 } else { 4 },
            // a photo's title: short ones are words (`front`, `face`, `正面`), not a name
            IdentifierKind::Photo => normalized.len() >= if ascii { 6 } else { 3 },
            _ => normalized.len() >= if ascii { 3 } else { 2 },
        };
        if !long_enough || normalized.len() > 256 {
            return false;
        }
        let (hash, len) = hash(normalized.into_iter());
        let needles = self.by_subject.entry(subject.to_owned()).or_default();
        let n = Needle { hash, len, kind };
        if needles.contains(&n) {
            return false;
        }
        needles.push(n);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.by_subject.is_empty()
    }

    /// Gives every subject of `group` (records linked as one person) the identifiers of all of them:
    /// a note filed under one record may name the person as another record knows them. Returns
    /// whether one of them gained an identifier it did not have.
    pub fn share(&mut self, group: &[&str]) -> bool {
        let mut all: Vec<Needle> = vec![];
        for s in group {
            for n in self.by_subject.get(*s).into_iter().flatten() {
                if !all.contains(n) {
                    all.push(*n);
                }
            }
        }
        if all.is_empty() {
            return false;
        }
        let mut gained = false;
        for s in group {
            gained |= self.by_subject.get(*s).map_or(0, Vec::len) < all.len();
            self.by_subject.insert((*s).to_owned(), all.clone());
        }
        gained
    }

    pub fn has(&self, subject: &str) -> bool {
        self.by_subject.contains_key(subject)
    }

    /// Where `text` holds one of `subject`'s identifiers (byte spans in `text`), and the count of
    /// characters examined.
    pub fn find(&self, subject: &str, text: &str, ops: &mut u64) -> Vec<Finding> {
        let Some(needles) = self.by_subject.get(subject) else { return Vec::new() };
        // the note's compared chars and their byte spans
        let (chars, spans): (Vec<char>, Vec<(u32, u32)>) = text
            .char_indices()
            .filter_map(|(i, c)| norm(c).map(|n| (n, (i as u32, (i + c.len_utf8()) as u32))))
            .unzip();
        *ops += text.len() as u64;
        let mut lengths: Vec<u32> = needles.iter().map(|n| n.len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let mut found = Vec::new();
        for len in lengths {
            let l = len as usize;
            if l > chars.len() {
                continue;
            }
            let top = (0..l - 1).fold(1u64, |p, _| p.wrapping_mul(BASE));
            let (mut h, _) = hash(chars[..l].iter().copied());
            let mut i = 0;
            loop {
                *ops += 1;
                if let Some(n) = needles.iter().find(|n| n.len == len && n.hash == h) {
                    found.push((n.kind, spans[i].0 as usize..spans[i + l - 1].1 as usize));
                }
                if i + l >= chars.len() {
                    break;
                }
                h = h
                    .wrapping_sub((chars[i] as u64 + 1).wrapping_mul(top))
                    .wrapping_mul(BASE)
                    .wrapping_add(chars[i + l] as u64 + 1);
                i += 1;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_match_across_spacing_width_and_separators() {
        let mut s = Store::default();
        s.add("p1", IdentifierKind::Name, "山田 太郎");
        s.add("p1", IdentifierKind::Phone, "03-1234-5678");
        s.add("p1", IdentifierKind::Name, "T");
        let t = "山田太郎は０３（１２３４）５６７８に連絡";
        let f = s.find("p1", t, &mut 0);
        let got: Vec<(IdentifierKind, &str)> = f.iter().map(|(k, r)| (*k, &t[r.clone()])).collect();
        assert_eq!(got, [(IdentifierKind::Name, "山田太郎"), (IdentifierKind::Phone, "０３（１２３４）５６７８")]);
        assert!(s.find("p2", t, &mut 0).is_empty());
        // a one-letter name part is not kept: it would match everywhere
        assert!(s.find("p1", "T wave", &mut 0).is_empty());
    }
}
