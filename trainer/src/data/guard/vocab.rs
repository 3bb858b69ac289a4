//! Keeps identifiers out of a tokenizer trained in the node.
//!
//! A trained vocabulary holds the frequent strings of its corpus, and a phone number or a name the
//! guard missed (under `redact`) that repeats in one patient's notes becomes a vocabulary piece, kept
//! verbatim in tokenizer.json. After training, a piece stays only if it occurs in the notes of at least
//! `min_subjects` subjects (it is then no one patient's string) and matches no identifier pattern: no
//! [`super::scan`] finding, no `@`, fewer than 5 digits (a fragment of a phone number or an
//! Individual Number; lab values and doses need no longer number pieces). Special tokens, and the
//! single-character base alphabet of a byte-level BPE (its bytes, needed to encode any text), stay.
//! "Occurs in the notes of a subject" means the trained tokenizer uses the piece when it encodes one
//! of them. Removing a BPE piece removes the merges that make it and, in turn, the pieces made from it.

use rayon::prelude::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use tokenizers::Tokenizer;

/// What the filter kept and dropped, by count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct VocabFilterStats {
    pub kept: usize,
    pub dropped_rare: usize,
    pub dropped_identifier: usize,
}

/// True when a piece's surface text looks like (part of) an identifier.
pub fn piece_is_identifier(surface: &str) -> bool {
    let digits = surface.chars().filter(|c| super::fold(*c).is_ascii_digit()).count();
    digits >= 5 || surface.contains(['@', '＠']) || !super::scan(surface).is_empty()
}

/// For each token id, the number of subjects whose notes use it. `notes[i]` belongs to
/// `subjects[i]`.
fn subjects_per_token(tokenizer: &Tokenizer, notes: &[&str], subjects: &[u32]) -> Result<Vec<u32>, String> {
    let mut by_subject: HashMap<u32, Vec<&str>> = HashMap::new();
    for (n, s) in notes.iter().zip(subjects) {
        by_subject.entry(*s).or_default().push(n);
    }
    let groups: Vec<&Vec<&str>> = by_subject.values().collect();
    let used: Vec<Vec<u32>> = groups
        .par_iter()
        .map(|notes| {
            let mut ids = Vec::new();
            for n in notes.iter() {
                let enc = tokenizer.encode(*n, false).map_err(|e| format!("encoding a note: {e}"))?;
                ids.extend_from_slice(enc.get_ids());
            }
            ids.sort_unstable();
            ids.dedup();
            Ok(ids)
        })
        .collect::<Result<_, String>>()?;
    let mut count = vec![0u32; tokenizer.get_vocab_size(true)];
    for ids in used {
        for id in ids {
            if let Some(c) = count.get_mut(id as usize) {
                *c += 1;
            }
        }
    }
    Ok(count)
}

/// The tokenizer with only the pieces that `min_subjects` subjects' notes use and that look like no
/// identifier (see the module's text), and the counts of what was kept and dropped.
pub fn filter(
    tokenizer: &Tokenizer,
    notes: &[&str],
    subjects: &[u32],
    min_subjects: usize,
    special: &[&str],
) -> Result<(Tokenizer, VocabFilterStats), String> {
    let count = subjects_per_token(tokenizer, notes, subjects)?;
    let json = tokenizer.to_string(false).map_err(|e| format!("serializing the tokenizer: {e}"))?;
    let mut v: Value = serde_json::from_str(&json).map_err(|e| format!("reading the tokenizer: {e}"))?;
    let mut stats = VocabFilterStats::default();
    // whether the piece with this id and text stays
    let mut identifiers: HashSet<String> = HashSet::new();
    let mut keep = |id: usize, piece: &str, base: bool| -> bool {
        if special.contains(&piece) || base {
            stats.kept += 1;
            return true;
        }
        let surface = tokenizer.decode(&[id as u32], false).unwrap_or_else(|_| piece.to_owned());
        if piece_is_identifier(&surface) || piece_is_identifier(piece) {
            stats.dropped_identifier += 1;
            identifiers.insert(piece.to_owned());
            false
        } else if (count.get(id).copied().unwrap_or(0) as usize) < min_subjects {
            stats.dropped_rare += 1;
            false
        } else {
            stats.kept += 1;
            true
        }
    };
    let model = v.get_mut("model").ok_or("the tokenizer has no model")?;
    let kind = model.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
    let mut new_id: HashMap<String, usize> = HashMap::new();
    match kind.as_str() {
        "Unigram" => {
            let vocab = model.get("vocab").and_then(Value::as_array).ok_or("the Unigram model has no vocab")?;
            let unk = model.get("unk_id").and_then(Value::as_u64).map(|u| u as usize);
            let mut kept = Vec::new();
            let mut unk_new = None;
            for (id, entry) in vocab.iter().enumerate() {
                let piece = entry.get(0).and_then(Value::as_str).unwrap_or("");
                if Some(id) == unk || keep(id, piece, false) {
                    if Some(id) == unk {
                        unk_new = Some(kept.len());
                    }
                    new_id.insert(piece.to_owned(), kept.len());
                    kept.push(entry.clone());
                }
            }
            model["vocab"] = Value::Array(kept);
            if let Some(u) = unk_new {
                model["unk_id"] = u.into();
            }
        }
        "BPE" => {
            let vocab = model.get("vocab").and_then(Value::as_object).ok_or("the BPE model has no vocab")?;
            let mut by_id: Vec<(usize, String)> =
                vocab.iter().filter_map(|(p, id)| id.as_u64().map(|id| (id as usize, p.clone()))).collect();
            by_id.sort();
            let mut alive: HashSet<String> = HashSet::new();
            for (id, piece) in &by_id {
                if keep(*id, piece, piece.chars().count() == 1) {
                    alive.insert(piece.clone());
                }
            }
            let merges = model.get("merges").and_then(Value::as_array).cloned().unwrap_or_default();
            let parts = |m: &Value| match m {
                Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())),
                Value::Array(p) if p.len() == 2 => {
                    Some((p[0].as_str().unwrap_or("").to_owned(), p[1].as_str().unwrap_or("").to_owned()))
                }
                _ => None,
            };
            // the parts a kept piece is merged from stay with it (newest merges first, so that the
            // parts of parts follow): they are substrings of it, so they occur in as many subjects'
            // notes, though an encoding may never use them by themselves
            for m in merges.iter().rev() {
                let Some((a, b)) = parts(m) else { continue };
                if alive.contains(&format!("{a}{b}")) {
                    for p in [a, b] {
                        if !identifiers.contains(&p) && vocab.contains_key(&p) && alive.insert(p) {
                            stats.dropped_rare -= 1;
                            stats.kept += 1;
                        }
                    }
                }
            }
            // merges in training order: a merge stays when its parts and its result stay
            let mut kept_merges = Vec::new();
            for m in merges {
                let Some((a, b)) = parts(&m) else { continue };
                let joined = format!("{a}{b}");
                if alive.contains(&a) && alive.contains(&b) && alive.contains(&joined) {
                    kept_merges.push(m);
                } else if alive.remove(&joined) {
                    stats.kept -= 1;
                    stats.dropped_rare += 1;
                }
            }
            let mut new_vocab = serde_json::Map::new();
            for (_, piece) in by_id.into_iter().filter(|(_, p)| alive.contains(p)) {
                new_id.insert(piece.clone(), new_vocab.len());
                let id = new_vocab.len();
                new_vocab.insert(piece, id.into());
            }
            model["vocab"] = Value::Object(new_vocab);
            model["merges"] = Value::Array(kept_merges);
        }
        other => return Err(format!("cannot filter a {other:?} vocabulary")),
    }
    if let Some(added) = v.get_mut("added_tokens").and_then(Value::as_array_mut) {
        let mut next = new_id.len();
        for t in added.iter_mut() {
            let content = t.get("content").and_then(Value::as_str).unwrap_or("").to_owned();
            let id = *new_id.entry(content).or_insert_with(|| {
                next += 1;
                next - 1
            });
            t["id"] = id.into();
        }
    }
    let text = serde_json::to_string(&v).map_err(|e| format!("writing the tokenizer: {e}"))?;
    let t: Tokenizer = text.parse().map_err(|e| format!("rebuilding the filtered tokenizer: {e}"))?;
    Ok((t, stats))
}
