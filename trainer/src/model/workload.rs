//! The benchmark workloads of shared/bench/WORKLOADS.md: fixed models and random, seeded data, the same
//! as the PyTorch + Opacus peer (`peer_opacus.py`) so that both can be timed and compared tensor for tensor.

use super::{
    Bert, BertConfig, Encoder, EncoderConfig, EncoderInput, HostBatch, HostInputs, HostTargets, Mlp, MlpConfig, Model,
};
use kernels::{Backend, Result};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    LabMlp,
    LabTransformer,
    NotesEncoder,
    /// Hugging Face `BertForSequenceClassification` the size of all-MiniLM-L6-v2 (22.7M weights)
    NotesBert,
}

pub const ALL: [Workload; 4] =
    [Workload::LabMlp, Workload::LabTransformer, Workload::NotesEncoder, Workload::NotesBert];

#[derive(Debug, thiserror::Error)]
#[error("unknown workload '{0}': expected one of lab-mlp, lab-transformer, notes-encoder, notes-bert")]
pub struct UnknownWorkload(pub String);

impl std::str::FromStr for Workload {
    type Err = UnknownWorkload;
    fn from_str(s: &str) -> std::result::Result<Self, UnknownWorkload> {
        match s {
            "lab-mlp" => Ok(Workload::LabMlp),
            "lab-transformer" => Ok(Workload::LabTransformer),
            "notes-encoder" => Ok(Workload::NotesEncoder),
            "notes-bert" => Ok(Workload::NotesBert),
            other => Err(UnknownWorkload(other.to_string())),
        }
    }
}

/// Lab series: 48 hourly buckets of 64 lab channels. Notes: 128 tokens from a vocabulary of 8000.
pub const LAB_STEPS: usize = 48;
pub const LAB_CHANNELS: usize = 64;
pub const NOTE_TOKENS: usize = 128;
pub const NOTE_VOCAB: usize = 8000;
/// BERT's (uncased English WordPiece) vocabulary, the notes-bert workload's.
pub const BERT_VOCAB: usize = 30522;

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::LabMlp => "lab-mlp",
            Workload::LabTransformer => "lab-transformer",
            Workload::NotesEncoder => "notes-encoder",
            Workload::NotesBert => "notes-bert",
        }
    }

    pub fn default_batch(self) -> usize {
        match self {
            Workload::LabMlp => 256,
            Workload::LabTransformer => 128,
            Workload::NotesEncoder => 64,
            Workload::NotesBert => 32,
        }
    }

    /// Token ids (text workloads) rather than float features.
    pub fn is_text(self) -> bool {
        matches!(self, Workload::NotesEncoder | Workload::NotesBert)
    }

    /// The vocabulary of a text workload (0 for the lab ones).
    pub fn vocab(self) -> usize {
        match self {
            Workload::NotesEncoder => NOTE_VOCAB,
            Workload::NotesBert => BERT_VOCAB,
            _ => 0,
        }
    }

    pub fn encoder_config(self) -> Option<EncoderConfig> {
        let input = match self {
            Workload::LabMlp | Workload::NotesBert => return None,
            Workload::LabTransformer => EncoderInput::Features(LAB_CHANNELS),
            Workload::NotesEncoder => EncoderInput::Tokens { vocab: NOTE_VOCAB, max_len: NOTE_TOKENS },
        };
        let outputs = if self == Workload::NotesEncoder { 2 } else { 1 };
        Some(EncoderConfig { input, d: 128, heads: 4, ff: 512, layers: 2, outputs })
    }

    pub fn model<B: Backend + 'static>(self, be: &B, seed: u64) -> Result<Box<dyn Model<B>>> {
        Ok(match (self, self.encoder_config()) {
            (Workload::NotesBert, _) => Box::new(Bert::new(be, &BertConfig::minilm_l6(2), seed)?),
            (_, None) => {
                Box::new(Mlp::new(be, MlpConfig { inputs: LAB_STEPS * LAB_CHANNELS, hidden: 256, outputs: 1 }, seed)?)
            }
            (_, Some(cfg)) => Box::new(Encoder::new(be, cfg, seed)?),
        })
    }

    /// Random data of the workload's shapes: x ~ N(0, 1), about 20% (lab) or 10% (notes) of steps
    /// masked, the first step always kept, labels uniform.
    pub fn random_batch(self, batch: usize, seed: u64) -> HostBatch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut unif = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let steps = if self.is_text() { NOTE_TOKENS } else { LAB_STEPS };
        let keep = match self {
            Workload::LabMlp => 1.0,
            Workload::LabTransformer => 0.8,
            Workload::NotesEncoder | Workload::NotesBert => 0.9,
        };
        let inputs = if self.is_text() {
            HostInputs::Tokens((0..batch * steps).map(|_| (unif() * self.vocab() as f64) as u32).collect())
        } else {
            let x = (0..batch * steps * LAB_CHANNELS)
                .map(|_| {
                    let u = 1.0 - unif();
                    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * unif()).cos()) as f32
                })
                .collect();
            HostInputs::Dense { x, features: LAB_CHANNELS }
        };
        let mask = (0..batch * steps).map(|i| if i % steps == 0 || unif() < keep { 1.0 } else { 0.0 }).collect();
        let targets = if self.is_text() {
            HostTargets::Classes((0..batch).map(|_| (unif() < 0.5) as u32).collect())
        } else {
            HostTargets::Binary((0..batch).map(|_| (unif() < 0.5) as u32 as f32).collect())
        };
        HostBatch { examples: batch, steps, inputs, mask, targets }
    }
}
