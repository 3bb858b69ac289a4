//! A batch in host memory, before it goes to a device: what readers, the benchmark generator and the
//! auditor's `dp-grad` file produce.

use super::{Batch, Inputs, Targets};
use kernels::Backend;

#[derive(Clone, Debug, PartialEq)]
pub enum HostInputs {
    /// [B, T, F]
    Dense { x: Vec<f32>, features: usize },
    /// [B, T]
    Tokens(Vec<u32>),
    /// a lab series [B, T, F] and a note's ids [B, L] with their mask [B, L]
    Both { x: Vec<f32>, features: usize, ids: Vec<u32>, tokens: usize, token_mask: Vec<f32> },
}

#[derive(Clone, Debug, PartialEq)]
pub enum HostTargets {
    Binary(Vec<f32>),
    Classes(Vec<u32>),
    Real(Vec<f32>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    pub examples: usize,
    pub steps: usize,
    pub inputs: HostInputs,
    /// [B, T], 1 keep, 0 padding
    pub mask: Vec<f32>,
    pub targets: HostTargets,
}

impl HostBatch {
    pub fn upload<B: Backend>(&self, be: &B) -> kernels::Result<Batch<B>> {
        Ok(Batch {
            examples: self.examples,
            steps: self.steps,
            inputs: match &self.inputs {
                HostInputs::Dense { x, features } => Inputs::Dense { x: be.upload(x)?, features: *features },
                HostInputs::Tokens(ids) => Inputs::Tokens { ids: be.upload_ids(ids)? },
                HostInputs::Both { x, features, ids, tokens, token_mask } => Inputs::Both {
                    x: be.upload(x)?,
                    features: *features,
                    ids: be.upload_ids(ids)?,
                    tokens: *tokens,
                    token_mask: be.upload(token_mask)?,
                },
            },
            mask: be.upload(&self.mask)?,
            targets: match &self.targets {
                HostTargets::Binary(y) => Targets::Binary(be.upload(y)?),
                HostTargets::Classes(c) => Targets::Classes(be.upload_ids(c)?),
                HostTargets::Real(y) => Targets::Real(be.upload(y)?),
            },
        })
    }

    /// The batch restricted to `examples` (in that order): what one group's brute-force reference
    /// gradient, or a reordering by group, needs.
    pub fn select(&self, examples: &[usize]) -> HostBatch {
        let t = self.steps;
        let rows = |v: &[f32], w: usize| {
            examples.iter().flat_map(|&i| v[i * w..(i + 1) * w].iter().copied()).collect::<Vec<_>>()
        };
        HostBatch {
            examples: examples.len(),
            steps: t,
            inputs: match &self.inputs {
                HostInputs::Dense { x, features } => {
                    HostInputs::Dense { x: rows(x, t * features), features: *features }
                }
                HostInputs::Tokens(ids) => {
                    HostInputs::Tokens(examples.iter().flat_map(|&i| ids[i * t..(i + 1) * t].iter().copied()).collect())
                }
                HostInputs::Both { x, features, ids, tokens, token_mask } => HostInputs::Both {
                    x: rows(x, t * features),
                    features: *features,
                    ids: examples.iter().flat_map(|&i| ids[i * tokens..(i + 1) * tokens].iter().copied()).collect(),
                    tokens: *tokens,
                    token_mask: rows(token_mask, *tokens),
                },
            },
            mask: rows(&self.mask, t),
            targets: match &self.targets {
                HostTargets::Binary(y) => HostTargets::Binary(examples.iter().map(|&i| y[i]).collect()),
                HostTargets::Classes(c) => HostTargets::Classes(examples.iter().map(|&i| c[i]).collect()),
                HostTargets::Real(y) => HostTargets::Real(examples.iter().map(|&i| y[i]).collect()),
            },
        }
    }
}
