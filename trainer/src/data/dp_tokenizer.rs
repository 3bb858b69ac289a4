//! A tokenizer trained on the node's notes with differential privacy (`train_tokenizer = "dp_unigram"`),
//! so that it may leave the node with the model.
//!
//! The vocabulary is chosen by DP set union with the Gaussian mechanism (Gopi et al., "Differentially
//! private set union", ICML 2020, the weighted Gaussian policy in its simplest form):
//!
//! 1. Each training subject's notes (at most [`SUBJECT_TEXT_BYTES`] of them) are pre-tokenized as the
//!    tokenizer will encode them (Metaspace, runs cut as in [`super::text`]); every substring of a
//!    pre-token of 1 to [`MAX_PIECE_CHARS`] characters that looks like no identifier
//!    ([`super::guard::vocab::piece_is_identifier`]) is a candidate, scored by its occurrences times its
//!    length (the characters it would cover). The subject contributes at most `k` distinct candidates
//!    (`auto.tokenizer_pieces_per_subject`): its `k/2` most frequent single characters, then its best
//!    longer pieces up to `k` in all: a function of that subject's notes alone.
//! 2. A subject contributing `t` pieces adds `1/sqrt(t)` to the count of each: the count vector has L2
//!    sensitivity 1 (add or remove one subject).
//! 3. Every candidate's count gets `N(0, sigma^2)` (`auto.tokenizer_noise_multiplier`) from the secure
//!    noise stream: a Gaussian mechanism, charged to the run as the phase `(sigma, q = 1, 1 step)`.
//! 4. A candidate stays only when its noisy count passes `rho = max over t <= k of
//!    1/sqrt(t) + sigma * PhiBar^-1(delta_s / t)`: a piece only the added subject has (count at most
//!    `1/sqrt(t)`) passes with probability at most `delta_s` in all (union bound over its `t` pieces).
//!    `delta_s` (`auto.tokenizer_delta`) is added to the run's delta: the run states
//!    `(epsilon, delta)` with `delta` = the accountant's delta + `delta_s`.
//!
//! The model is a Unigram over the kept pieces, scored by the log of their noisy counts (post-
//! processing), with byte fallback (`<0x00>` .. `<0xFF>`, data-independent) for any character no piece
//! covers, so every text encodes and nothing maps to `[UNK]`. At most `vocab_size` entries: the pieces
//! with the largest noisy counts. Nothing else of the notes (no subject filter, no frequency) is used.

use super::guard::vocab::piece_is_identifier;
use super::text::{unigram_pre_tokenizer, NoteTokenizer, PAD, SEP, UNK};
use super::{DataError, Result};
use crate::privacy::accountant::special::log_erfc;
use crate::privacy::accountant::Delta;
use crate::privacy::noise::NoiseSource;
use crate::privacy::release::{self, GaussianRelease};
use rayon::prelude::*;
use std::collections::HashMap;
use tokenizers::models::unigram::Unigram;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, Tokenizer};

/// The longest piece considered, in characters.
pub const MAX_PIECE_CHARS: usize = 12;

/// A subject's notes count up to this many bytes (the first ones, in the order given): bounds the
/// time and memory one subject can take, and is a function of that subject's notes only.
/// (At most [`MAX_PIECE_CHARS`] candidates per character: a subject's count table stays under ~50 MB
/// however random its text.)
pub const SUBJECT_TEXT_BYTES: usize = 64 << 10;

/// Entries of the vocabulary that do not come from the data: the special tokens and the 256 bytes.
pub const FIXED_ENTRIES: usize = 3 + 256;

/// The DP parameters (`[auto]` keys `tokenizer_noise_multiplier`, `tokenizer_pieces_per_subject`,
/// `tokenizer_delta`).
#[derive(Debug, Clone, Copy)]
pub struct DpTokenizerParams {
    pub noise_multiplier: f64,
    pub pieces_per_subject: usize,
    pub delta: f64,
    pub vocab_size: usize,
}

/// What the selection did, for the manifest and the sidecar (counts only, no piece).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DpVocabStats {
    pub subjects: usize,
    pub candidates: usize,
    pub threshold: f64,
    pub kept: usize,
    pub noise_multiplier: f64,
    pub pieces_per_subject: usize,
    /// the probability added to the run's delta
    pub delta: f64,
}

/// `x` with `P(N(0,1) > x) = p`, for `0 < p < 0.5` (bisection on the log tail, to ~1e-12).
pub fn normal_upper_quantile(p: f64) -> f64 {
    assert!(p > 0.0 && p < 0.5, "normal_upper_quantile needs 0 < p < 0.5 (got {p})");
    let log_tail = |x: f64| log_erfc(x / std::f64::consts::SQRT_2) - std::f64::consts::LN_2;
    let target = p.ln();
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if log_tail(mid) > target {
            lo = mid
        } else {
            hi = mid
        }
    }
    0.5 * (lo + hi)
}

/// The threshold `rho` of the module doc.
pub fn threshold(noise_multiplier: f64, pieces_per_subject: usize, delta: f64) -> f64 {
    (1..=pieces_per_subject)
        .map(|t| 1.0 / (t as f64).sqrt() + noise_multiplier * normal_upper_quantile(delta / t as f64))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// One subject's contribution: its best `k` candidate pieces (score = occurrences x characters, ties
/// by the piece's text), distinct.
fn subject_pieces(pre: &Sequence, notes: &[&str], k: usize) -> Result<Vec<String>> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut left = SUBJECT_TEXT_BYTES;
    for note in notes {
        if left == 0 {
            break;
        }
        let mut end = note.len().min(left);
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        left -= end;
        let mut pts = PreTokenizedString::from(&note[..end]);
        pre.pre_tokenize(&mut pts).map_err(|e| DataError::Invalid(format!("pre-tokenizing a note: {e}")))?;
        for (word, _, _) in pts.get_splits(OffsetReferential::Normalized, OffsetType::Byte) {
            let starts: Vec<usize> = word.char_indices().map(|(i, _)| i).chain([word.len()]).collect();
            for a in 0..starts.len() - 1 {
                for b in a + 1..starts.len().min(a + 1 + MAX_PIECE_CHARS) {
                    let piece = &word[starts[a]..starts[b]];
                    match counts.get_mut(piece) {
                        Some(c) => *c += 1,
                        None => {
                            counts.insert(piece.to_owned(), 1);
                        }
                    }
                }
            }
        }
    }
    // up to half of k for single characters (by occurrences), the rest for longer pieces (by the
    // characters they cover)
    let (mut chars, mut longer): (Vec<(u64, String)>, Vec<(u64, String)>) = counts
        .into_iter()
        .filter(|(p, _)| !piece_is_identifier(p))
        .map(|(p, c)| {
            let n = p.chars().count() as u64;
            (c * n, p)
        })
        .partition(|(_, p)| p.chars().nth(1).is_none());
    let best = |v: &mut Vec<(u64, String)>, n: usize| {
        if v.len() > n {
            v.select_nth_unstable_by(n.max(1) - 1, |a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            v.truncate(n);
        }
    };
    best(&mut chars, k / 2);
    best(&mut longer, k - chars.len());
    Ok(chars.into_iter().chain(longer).map(|(_, p)| p).collect())
}

/// Trains the DP Unigram tokenizer on the notes of the training subjects: `notes_by_subject` holds
/// each subject's notes (a subject's whole list is its contribution). Returns the tokenizer
/// (exportable), the Gaussian release to charge and what the selection did.
pub fn train(
    notes_by_subject: &[Vec<&str>],
    params: DpTokenizerParams,
    accounting_delta: Delta,
    source: &NoiseSource,
) -> Result<(NoteTokenizer, GaussianRelease, DpVocabStats)> {
    let k = params.pieces_per_subject;
    let pre = unigram_pre_tokenizer();
    let per_subject: Vec<Vec<String>> = notes_by_subject
        .par_iter()
        .filter(|n| n.iter().any(|t| !t.trim().is_empty()))
        .map(|n| subject_pieces(&pre, n, k))
        .collect::<Result<_>>()?;
    let mut counts: HashMap<String, f64> = HashMap::new();
    for pieces in &per_subject {
        let w = 1.0 / (pieces.len().max(1) as f64).sqrt();
        for p in pieces {
            *counts.entry(p.clone()).or_insert(0.0) += w;
        }
    }
    // a fixed order (the pieces' text) so that the noise stream maps to candidates reproducibly
    let mut candidates: Vec<(String, f64)> = counts.into_iter().collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    let mut values: Vec<f64> = candidates.iter().map(|c| c.1).collect();
    // no note text: nothing to release, but the mechanism is still run and charged (its phase is the same)
    let mut none = [0.0];
    let released: &mut [f64] = if values.is_empty() { &mut none } else { &mut values };
    let rel =
        release::gaussian("tokenizer_vocabulary", released, 1.0, params.noise_multiplier, accounting_delta, source, 0)
            .map_err(|e| DataError::Invalid(format!("auto.tokenizer_noise_multiplier: {e}")))?;
    let rho = threshold(params.noise_multiplier, k, params.delta);
    let mut kept: Vec<(String, f64)> =
        candidates.into_iter().zip(values).filter(|(_, v)| *v > rho).map(|((p, _), v)| (p, v)).collect();
    // the largest noisy counts first; ties by text
    kept.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    kept.truncate(params.vocab_size.saturating_sub(FIXED_ENTRIES));
    let stats = DpVocabStats {
        subjects: per_subject.len(),
        candidates: per_subject.iter().map(Vec::len).sum(),
        threshold: rho,
        kept: kept.len(),
        noise_multiplier: params.noise_multiplier,
        pieces_per_subject: k,
        delta: params.delta,
    };
    Ok((build(&kept)?, rel, stats))
}

/// The Unigram tokenizer over `pieces` (text, noisy count > 0), with the special tokens and byte
/// fallback.
fn build(pieces: &[(String, f64)]) -> Result<NoteTokenizer> {
    let total: f64 = pieces.iter().map(|p| p.1).sum::<f64>().max(1.0);
    let mut vocab: Vec<(String, f64)> = [PAD, UNK, SEP].iter().map(|t| (t.to_string(), 0.0)).collect();
    let scored: Vec<(String, f64)> = pieces.iter().map(|(p, c)| (p.clone(), (c / total).ln())).collect();
    let floor = scored.iter().map(|p| p.1).fold(0.0f64, f64::min) - 10.0;
    vocab.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), floor)));
    vocab.extend(scored);
    let model = Unigram::from(vocab, Some(1), true)
        .map_err(|e| DataError::Invalid(format!("building the DP tokenizer: {e}")))?;
    let mut t = Tokenizer::new(model);
    t.with_pre_tokenizer(Some(unigram_pre_tokenizer()));
    // SentencePiece's decoding (as Llama's tokenizer.json): bytes back to text, fused, ▁ to spaces,
    // the space the pre-tokenizer prepended dropped
    use tokenizers::decoders::{byte_fallback::ByteFallback, fuse::Fuse, strip::Strip};
    let replace = tokenizers::normalizers::replace::Replace::new("▁", " ")
        .map_err(|e| DataError::Invalid(format!("building the DP tokenizer: {e}")))?;
    t.with_decoder(Some(tokenizers::decoders::sequence::Sequence::new(vec![
        ByteFallback::default().into(),
        Fuse::new().into(),
        replace.into(),
        Strip::new(' ', 1, 0).into(),
    ])));
    t.add_special_tokens(&[AddedToken::from(PAD, true), AddedToken::from(UNK, true), AddedToken::from(SEP, true)]);
    Ok(NoteTokenizer::new_exportable(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_notes_give_a_working_tokenizer() {
        let params = DpTokenizerParams { noise_multiplier: 4.0, pieces_per_subject: 32, delta: 1e-7, vocab_size: 1000 };
        let source = NoiseSource::seeded([1; 32]);
        let delta = Delta::new(1e-5).unwrap();
        // no text at all: only the fixed entries, and text still encodes (through bytes)
        let (tok, rel, stats) = train(&[vec![], vec!["   ", "\n"]], params, delta, &source).unwrap();
        assert_eq!((stats.subjects, stats.kept, tok.vocab_size()), (0, 0, FIXED_ENTRIES));
        assert_eq!(rel.noise_multiplier, 4.0);
        assert!(!tok.tokenizer.encode("何か text", false).unwrap().get_ids().is_empty());
        // a megabyte of one character and of random-looking text in one subject: bounded, no panic
        let run = "=".repeat(1 << 20);
        let noise: String = (0..(1u32 << 18))
            .map(|i| char::from_u32(0x4E00 + (i.wrapping_mul(2654435761) >> 20) % 20000).unwrap())
            .collect();
        let (tok, _, stats) = train(&[vec![&run], vec![&noise]], params, delta, &source).unwrap();
        assert_eq!(stats.subjects, 2);
        assert!(stats.kept == 0 && tok.vocab_size() == FIXED_ENTRIES, "{stats:?}");
    }

    #[test]
    fn upper_quantile_matches_known_values() {
        // scipy.stats.norm.isf
        for (p, x) in [(0.025, 1.959963984540054), (1e-6, 4.753424308822899), (1e-12, 7.034483825301131)] {
            assert!((normal_upper_quantile(p) - x).abs() < 1e-9, "{p}: {}", normal_upper_quantile(p));
        }
    }

    #[test]
    fn threshold_bounds_a_lone_subjects_pieces() {
        // for every t <= k, t pieces of weight 1/sqrt(t) pass rho with probability <= delta in all
        let (sigma, k, delta) = (4.0, 32, 1e-7);
        let rho = threshold(sigma, k, delta);
        for t in 1..=k {
            let z = (rho - 1.0 / (t as f64).sqrt()) / sigma;
            let tail = (log_erfc(z / std::f64::consts::SQRT_2) - std::f64::consts::LN_2).exp();
            assert!(t as f64 * tail <= delta * (1.0 + 1e-9), "t = {t}");
        }
    }

    #[test]
    fn a_subject_contributes_at_most_k_distinct_pieces_and_no_identifier_shapes() {
        let pre = unigram_pre_tokenizer();
        let notes = ["発熱と咳嗽あり 電話 090-1234-5678 発熱", "fever and cough fever"];
        let p = subject_pieces(&pre, &notes, 20).unwrap();
        assert_eq!(p.len(), 20);
        let mut d = p.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 20);
        assert!(p.iter().all(|x| !piece_is_identifier(x)), "{p:?}");
    }

    #[test]
    fn common_pieces_survive_rare_ones_do_not_and_every_text_encodes() {
        let common = "▁patient ▁admitted ▁with ▁fever";
        let subjects: Vec<Vec<String>> =
            (0..2000).map(|i| vec![format!("patient admitted with fever {}", ["ok", "cough"][i % 2])]).collect();
        let mut subjects: Vec<Vec<&str>> = subjects.iter().map(|v| v.iter().map(String::as_str).collect()).collect();
        subjects.push(vec!["zygomorphic quixotry"]);
        let params = DpTokenizerParams { noise_multiplier: 2.0, pieces_per_subject: 16, delta: 1e-7, vocab_size: 2000 };
        let source = NoiseSource::seeded([7; 32]);
        let (tok, rel, stats) = train(&subjects, params, Delta::new(1e-5).unwrap(), &source).unwrap();
        assert_eq!(rel.noise_multiplier, 2.0);
        assert_eq!(rel.l2_sensitivity, 1.0);
        assert!(stats.kept > 0 && stats.kept <= 16 * 2, "{stats:?}");
        let vocab = tok.tokenizer.get_vocab(true);
        assert!(common.split(' ').any(|w| vocab.contains_key(w)), "no common word kept");
        assert!(!vocab.keys().any(|p| p.contains("zygo") || p.contains("quixo")), "a lone subject's piece was kept");
        // any text encodes, a character no piece covers through its bytes, never [UNK]
        let enc = tok.tokenizer.encode("患者 zygomorphic ☃", false).unwrap();
        let unk = tok.tokenizer.token_to_id(UNK).unwrap();
        assert!(!enc.get_ids().contains(&unk));
        assert_eq!(tok.tokenizer.decode(enc.get_ids(), true).unwrap(), "患者 zygomorphic ☃", "{:?}", enc.get_tokens());
    }
}
