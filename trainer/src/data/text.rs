//! Notes as token ids: a subject's notes up to the prediction time, newest first, tokenized with the
//! HF `tokenizers` crate and truncated to L tokens.
//!
//! The tokenizer is either brought by the user (a `tokenizer.json`; exportable with the model) or
//! trained in the node on the notes (Unigram with Metaspace pre-tokenization, or byte-level BPE; both
//! handle Japanese text without spaces). A tokenizer trained on private notes is data-dependent and is
//! marked non-exportable: its vocabulary can reveal rare strings of the notes. The mark is a sidecar file
//! (`<name>.medtrain.json`, `{"exportable": false, ...}`) so the tokenizer.json itself stays loadable by
//! any HF tokenizers implementation.

use super::labels::Label;
use super::{DataError, Dataset, EventKind, Result};
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::unigram::{Unigram, UnigramTrainerBuilder};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::SplitDelimiterBehavior;
use tokenizers::{AddedToken, Tokenizer};

pub const PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";
pub const SEP: &str = "[SEP]";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    Unigram,
    ByteBpe,
    /// Unigram over a vocabulary chosen with DP ([`super::dp_tokenizer`]): exportable
    DpUnigram,
}

/// Runs of one character longer than this are cut into pieces of this length before training and
/// encoding. Tokenizer training is superlinear in the length of a pre-token (byte-level BPE re-scans a
/// word at every merge; Unigram enumerates its substrings), so one long run (a line of `=` or `-`, a
/// row of digits) made training run for minutes or take gigabytes; real words are far shorter.
pub const MAX_RUN: usize = 16;

/// Runs of non-space characters longer than this (a repeated pattern, Japanese text without spaces)
/// are cut into pieces of this many characters, for the same reason.
pub const MAX_PIECE: usize = 64;

/// Default of `features.max_tokenizer_corpus_bytes`: a tokenizer is trained on at most this much note
/// text (the first notes, in dataset order). A vocabulary of a few thousand pieces is settled long
/// before; the trainers' memory grows with the corpus (Unigram: about 20 bytes per character).
pub const DEFAULT_MAX_CORPUS_BYTES: u64 = 64 << 20;

/// The pre-tokenizer that cuts runs of one character (newlines included) into pieces of at most
/// [`MAX_RUN`] and runs of non-space characters into pieces of at most [`MAX_PIECE`], on the text's own
/// characters (before byte-level mapping, where one Japanese character becomes three). The pattern (a
/// backreference, Oniguruma syntax as HF tokenizers uses) is stored in tokenizer.json, so any HF
/// tokenizers implementation encodes the same way.
fn run_cap() -> Split {
    let pattern = format!("([\\s\\S])\\1{{{}}}|\\S{{{}}}", MAX_RUN - 1, MAX_PIECE);
    Split::new(SplitPattern::Regex(pattern), SplitDelimiterBehavior::Isolated, false)
        .expect("the run pattern is a valid regex")
}

/// The first texts up to `max_bytes` in all (a text that would pass the bound is cut at a character
/// boundary), skipping blank ones.
fn corpus(texts: &[String], max_bytes: u64) -> Vec<&str> {
    let mut left = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for t in texts.iter().filter(|t| !t.trim().is_empty()) {
        if left == 0 {
            break;
        }
        let mut end = t.len().min(left);
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        out.push(&t[..end]);
        left -= end;
        if end < t.len() {
            break;
        }
    }
    out
}

/// The pre-tokenizer of the Unigram tokenizers trained here: Metaspace, then runs capped ([`run_cap`]).
pub(super) fn unigram_pre_tokenizer() -> Sequence {
    Sequence::new(vec![Metaspace::new('▁', PrependScheme::Always, true).into(), run_cap().into()])
}

pub struct NoteTokenizer {
    pub tokenizer: Tokenizer,
    /// false when trained on the node's private notes
    pub exportable: bool,
    pad: u32,
    sep: u32,
    /// the model's unknown token (`[UNK]`, `<unk>`), where it has one
    unk: Option<u32>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Sidecar {
    exportable: bool,
    trained_in_node: bool,
    kind: Option<TokenizerKind>,
    vocab_size: usize,
    /// how a DP vocabulary was chosen (no piece, counts only)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dp: Option<super::dp_tokenizer::DpVocabStats>,
}

fn sidecar_path(path: &Path) -> std::path::PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{stem}.medtrain.json"))
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Format { path: path.into(), msg: format!("tokenizer: {e}") }
}

/// Puts a trained Unigram's pieces in one order whatever the run: by score (highest first, to 9
/// decimals), then by piece; the pieces the trainer put first (the special tokens) stay where they are.
/// The trainer orders pieces of equal score as its hash maps iterate and sums in parallel, which differs
/// from run to run: `data prepare` of one input gave another tokenizer.json and other token ids each
/// time (found by an outside-in tester).
fn canonical_unigram(t: &mut Tokenizer) -> Result<()> {
    let tokenizers::models::ModelWrapper::Unigram(u) = t.get_model() else { return Ok(()) };
    // (the scores to 9 decimals: the trainer's parallel sums differ in their last bits from run to run)
    let mut vocab: Vec<(String, f64)> = u.iter().map(|(p, s)| (p.clone(), (s * 1e9).round() / 1e9)).collect();
    let fixed = vocab.iter().take_while(|(p, _)| [PAD, UNK, SEP].contains(&p.as_str())).count();
    vocab[fixed..].sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    // the characters the trainer adds at the end get the lowest score plus 0.0001 each, in the order its
    // hash set iterates: each run of single characters 0.0001 apart (in score order, other pieces
    // between them left out) keeps its scores, its characters given them in order of text, and the
    // whole is put in order again
    let singles: Vec<usize> = (fixed..vocab.len()).filter(|&k| vocab[k].0.chars().count() == 1).collect();
    let mut m = 0;
    while m < singles.len() {
        let mut n = m + 1;
        while n < singles.len() && ((vocab[singles[n - 1]].1 - vocab[singles[n]].1) - 1e-4).abs() < 1e-7 {
            n += 1;
        }
        if n - m > 1 {
            let mut names: Vec<String> = singles[m..n].iter().map(|&k| std::mem::take(&mut vocab[k].0)).collect();
            names.sort();
            for (&k, name) in singles[m..n].iter().zip(names) {
                vocab[k].0 = name;
            }
        }
        m = n;
    }
    vocab[fixed..].sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let unk = vocab.iter().position(|(p, _)| p == UNK);
    let ordered = Unigram::from(vocab, unk, u.byte_fallback())
        .map_err(|e| DataError::Invalid(format!("training the tokenizer: {e}")))?;
    t.with_model(ordered);
    Ok(())
}

impl NoteTokenizer {
    fn with(mut tokenizer: Tokenizer, exportable: bool) -> Self {
        // notes are assembled, cut and padded here: a tokenizer.json's own padding or truncation (a
        // sentence-transformers file pads to 128) would count pads as text
        tokenizer.with_padding(None);
        let _ = tokenizer.with_truncation(None);
        let pad = tokenizer.token_to_id(PAD).unwrap_or(0);
        let sep = tokenizer.token_to_id(SEP).or_else(|| tokenizer.token_to_id("</s>")).unwrap_or(pad);
        let unk = [UNK, "[UNK]", "<unk>", "<UNK>"].iter().find_map(|t| tokenizer.token_to_id(t));
        NoteTokenizer { tokenizer, exportable, pad, sep, unk }
    }

    /// A tokenizer whose vocabulary is public or was chosen with DP.
    pub(super) fn new_exportable(tokenizer: Tokenizer) -> Self {
        Self::with(tokenizer, true)
    }

    /// A user's tokenizer.json. It is exportable unless its sidecar says it was trained in the node.
    pub fn load(path: &Path) -> Result<Self> {
        // regular files of bounded size (a FIFO in their place waited for ever)
        let bytes = crate::read_bounded(path, 256 << 20).map_err(|e| DataError::io(path, e))?;
        let tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| tok_err(path, e))?;
        let side = sidecar_path(path);
        let exportable = match crate::read_bounded(&side, crate::MAX_CONFIG_BYTES) {
            Ok(b) => serde_json::from_slice::<Sidecar>(&b).map_err(|e| tok_err(&side, e))?.exportable,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(DataError::io(&side, e)),
        };
        Ok(Self::with(tokenizer, exportable))
    }

    /// Trains a tokenizer on texts (the node's notes): non-exportable. Trains on at most
    /// [`DEFAULT_MAX_CORPUS_BYTES`] of them (see [`NoteTokenizer::train_within`]).
    pub fn train(texts: &[String], kind: TokenizerKind, vocab_size: usize) -> Result<Self> {
        Self::train_within(texts, kind, vocab_size, DEFAULT_MAX_CORPUS_BYTES)
    }

    /// Trains a tokenizer on texts, bounded in time and memory: on the first notes up to
    /// `max_corpus_bytes` (`features.max_tokenizer_corpus_bytes`), with runs of one character cut into
    /// pieces of [`MAX_RUN`] ([`run_cap`]). Without text to learn from (no notes, or only blank ones)
    /// it is an error, not a tokenizer.
    pub fn train_within(
        texts: &[String],
        kind: TokenizerKind,
        vocab_size: usize,
        max_corpus_bytes: u64,
    ) -> Result<Self> {
        let corpus = corpus(texts, max_corpus_bytes);
        if corpus.iter().all(|t| t.trim().is_empty()) {
            return Err(DataError::Invalid(
                "features.train_tokenizer: the train split has no note text to train a tokenizer on; use features.tokenizer or note_tokens = 0".into(),
            ));
        }
        let texts = corpus;
        let special: Vec<AddedToken> = [PAD, UNK, SEP].iter().map(|t| AddedToken::from(*t, true)).collect();
        let err = |e: tokenizers::Error| DataError::Invalid(format!("training the tokenizer: {e}"));
        let mut tokenizer = match kind {
            TokenizerKind::Unigram => {
                let mut t = Tokenizer::new(Unigram::default());
                t.with_pre_tokenizer(Some(unigram_pre_tokenizer()));
                t.with_decoder(Some(tokenizers::decoders::metaspace::Metaspace::new('▁', PrependScheme::Always, true)));
                let mut trainer: TrainerWrapper = UnigramTrainerBuilder::default()
                    .show_progress(false)
                    .vocab_size(vocab_size as u32)
                    .special_tokens(special)
                    .unk_token(Some(UNK.into()))
                    .build()
                    .map_err(|e| DataError::Invalid(format!("tokenizer trainer: {e}")))?
                    .into();
                t.train(&mut trainer, texts.iter().copied()).map_err(err)?;
                canonical_unigram(&mut t)?;
                t
            }
            TokenizerKind::DpUnigram => {
                return Err(DataError::Invalid(
                    "features.train_tokenizer: dp_unigram is trained per subject (data::dp_tokenizer::train)".into(),
                ))
            }
            TokenizerKind::ByteBpe => {
                let mut t = Tokenizer::new(BPE::default());
                t.with_pre_tokenizer(Some(Sequence::new(vec![
                    run_cap().into(),
                    ByteLevel::default().add_prefix_space(false).into(),
                ])));
                t.with_decoder(Some(ByteLevel::default().add_prefix_space(false)));
                let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
                    .show_progress(false)
                    .vocab_size(vocab_size)
                    .min_frequency(2)
                    .special_tokens(special)
                    .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                    .build()
                    .into();
                t.train(&mut trainer, texts.iter().copied()).map_err(err)?;
                t
            }
        };
        tokenizer.add_special_tokens(&[
            AddedToken::from(PAD, true),
            AddedToken::from(UNK, true),
            AddedToken::from(SEP, true),
        ]);
        Ok(Self::with(tokenizer, false))
    }

    /// Keeps only the pieces used by the notes of at least `min_subjects` subjects and that look like
    /// no identifier ([`super::guard::vocab`]): `notes[i]` is a note of `subjects[i]`.
    pub fn keep_common_pieces(
        self,
        notes: &[&str],
        subjects: &[u32],
        min_subjects: usize,
    ) -> Result<(Self, super::guard::vocab::VocabFilterStats)> {
        let (t, stats) = super::guard::vocab::filter(&self.tokenizer, notes, subjects, min_subjects, &[PAD, UNK, SEP])
            .map_err(|e| DataError::Invalid(format!("filtering the tokenizer's vocabulary: {e}")))?;
        Ok((Self::with(t, self.exportable), stats))
    }

    /// Writes tokenizer.json and its sidecar (exportability; how a DP vocabulary was chosen).
    pub fn save(
        &self,
        path: &Path,
        kind: Option<TokenizerKind>,
        dp: Option<&super::dp_tokenizer::DpVocabStats>,
    ) -> Result<()> {
        self.tokenizer.save(path, false).map_err(|e| tok_err(path, e))?;
        let side = Sidecar {
            exportable: self.exportable,
            trained_in_node: kind.is_some(),
            kind,
            vocab_size: self.tokenizer.get_vocab_size(true),
            dp: dp.cloned(),
        };
        let side_path = sidecar_path(path);
        std::fs::write(&side_path, serde_json::to_vec_pretty(&side).expect("sidecar serializes"))
            .map_err(|e| DataError::io(&side_path, e))
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc =
            self.tokenizer.encode(text, false).map_err(|e| DataError::Invalid(format!("tokenizing a note: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }
}

/// Token ids of each label's notes, `labels.len() x max_len`, padded with the pad id; `lengths` holds the
/// tokens used per example. Notes up to and including the prediction time, newest first, separated by
/// `[SEP]`, truncated to `max_len`. The dataset must be sorted ([`Dataset::sort`]).
pub struct NoteTokens {
    pub max_len: usize,
    pub ids: Vec<u32>,
    pub lengths: Vec<usize>,
    /// tokens of the notes used, and how many of them are the tokenizer's unknown token
    pub tokens: u64,
    pub unknown: u64,
}

pub fn note_tokens(data: &Dataset, tok: &NoteTokenizer, labels: &[Label], max_len: usize) -> Result<NoteTokens> {
    use rayon::prelude::*;
    let ranges = data.by_subject();
    // tokenize each note used once, in parallel
    let mut wanted: Vec<u32> = labels
        .iter()
        .flat_map(|l| {
            let r = ranges.get(l.subject as usize).cloned().unwrap_or(0..0);
            data.events[r].iter().filter(|e| e.kind == EventKind::Note && e.time <= l.prediction_time).map(|e| e.text)
        })
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let encoded: Vec<Vec<u32>> =
        wanted.par_iter().map(|&t| tok.encode(&data.texts[t as usize])).collect::<Result<_>>()?;
    let tokens = encoded.iter().map(|e| e.len() as u64).sum();
    let unknown = tok.unk.map_or(0, |u| encoded.iter().flatten().filter(|&&id| id == u).count() as u64);
    let mut out = NoteTokens {
        max_len,
        ids: vec![tok.pad; labels.len() * max_len],
        lengths: vec![0; labels.len()],
        tokens,
        unknown,
    };
    for (i, l) in labels.iter().enumerate() {
        let r = ranges.get(l.subject as usize).cloned().unwrap_or(0..0);
        let ev = &data.events[r];
        let end = ev.partition_point(|e| e.time <= l.prediction_time);
        let row = &mut out.ids[i * max_len..(i + 1) * max_len];
        let mut n = 0;
        for e in ev[..end].iter().rev().filter(|e| e.kind == EventKind::Note) {
            if n >= max_len {
                break;
            }
            if n > 0 {
                row[n] = tok.sep;
                n += 1;
            }
            let ids = &encoded[wanted.binary_search(&e.text).expect("note was tokenized")];
            let take = ids.len().min(max_len - n);
            row[n..n + take].copy_from_slice(&ids[..take]);
            n += take;
        }
        out.lengths[i] = n;
    }
    Ok(out)
}
