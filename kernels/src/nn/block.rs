//! Transformer encoder blocks as compositions of layers (x, out: [B*T, D]; the FF width F):
//! - pre-LN (the project's encoders): `mid = x + o(attn(ln1(x)));  out = mid + ff2(gelu(ff1(ln2(mid))))`
//! - post-LN (Hugging Face BERT): `mid = LN(x + O(attn(x)));  out = LN(mid + W2(gelu(W1(mid))))`
//!
//! With [`Queries::First`] a block gives only each example's first row (`[B, D]`: the same values as
//! the first rows of the full block's output, to the rounding): the last block of a model that reads
//! only the `[CLS]` row, whose other rows would be computed, differentiated and clipped for nothing.

use super::activation::Act;
use super::attention::{Queries, SelfAttention};
use super::layer::{Layer, Residual, Sequential};
use super::layer_norm::LayerNorm;
use super::linear::Linear;
use crate::backend::{Activation, Backend, MaskFill};
use crate::error::Result;

/// A pre-LN block named like the project's reference models: `{prefix}.ln1`, `{prefix}.att.qkv`,
/// `{prefix}.att.o`, `{prefix}.ln2`, `{prefix}.ff1`, `{prefix}.ff2`.
pub fn pre_ln_block<B: Backend>(
    be: &B,
    prefix: &str,
    d: usize,
    heads: usize,
    ff: usize,
    queries: Queries,
) -> Result<Sequential<B>> {
    let p = |s: &str| format!("{prefix}.{s}");
    let att = SelfAttention::new(be, &p("att"), d, heads)?.with_queries(queries);
    let att = Sequential::new(p("att_branch"), vec![Box::new(LayerNorm::new(be, &p("ln1"), d)?), Box::new(att)])?;
    let mlp = Sequential::new(
        p("ff_branch"),
        vec![
            Box::new(LayerNorm::new(be, &p("ln2"), d)?),
            Box::new(Linear::new(be, &p("ff1"), d, ff)?),
            Box::new(Act::new(p("gelu"), Activation::Gelu)),
            Box::new(Linear::new(be, &p("ff2"), ff, d)?),
        ],
    )?;
    Sequential::new(
        prefix,
        vec![
            Box::new(residual(queries, p("att_res"), Box::new(att), d)),
            Box::new(Residual::new(p("ff_res"), Box::new(mlp))),
        ],
    )
}

/// The residual around an attention with `queries`.
fn residual<B: Backend>(queries: Queries, name: String, inner: Box<dyn Layer<B>>, d: usize) -> Residual<B> {
    match queries {
        Queries::All => Residual::new(name, inner),
        Queries::First => Residual::first_row(name, inner, d),
    }
}

/// A post-LN block with Hugging Face BERT's module names under `prefix` (`bert.encoder.layer.0`):
/// `attention.self.{query,key,value}`, `attention.output.dense`, `attention.output.LayerNorm`,
/// `intermediate.dense`, `output.dense`, `output.LayerNorm`; LayerNorm eps `eps`, masked keys `fill`.
#[allow(clippy::too_many_arguments)]
pub fn post_ln_block<B: Backend>(
    be: &B,
    prefix: &str,
    d: usize,
    heads: usize,
    ff: usize,
    eps: f32,
    fill: MaskFill,
    queries: Queries,
) -> Result<Sequential<B>> {
    let p = |s: &str| format!("{prefix}.{s}");
    let att = SelfAttention::separate(
        be,
        &p("attention"),
        d,
        heads,
        [&p("attention.self.query"), &p("attention.self.key"), &p("attention.self.value")],
        &p("attention.output.dense"),
        fill,
    )?
    .with_queries(queries);
    let mlp = Sequential::new(
        p("mlp"),
        vec![
            Box::new(Linear::new(be, &p("intermediate.dense"), d, ff)?),
            Box::new(Act::new(p("intermediate.gelu"), Activation::Gelu)),
            Box::new(Linear::new(be, &p("output.dense"), ff, d)?),
        ],
    )?;
    Sequential::new(
        prefix,
        vec![
            Box::new(residual(queries, p("attention.residual"), Box::new(att), d)),
            Box::new(LayerNorm::with_eps(be, &p("attention.output.LayerNorm"), d, eps)?),
            Box::new(Residual::new(p("output.residual"), Box::new(mlp))),
            Box::new(LayerNorm::with_eps(be, &p("output.LayerNorm"), d, eps)?),
        ],
    )
}

/// Boxes a layer (type inference helper for compositions).
pub fn boxed<B: Backend, L: Layer<B> + 'static>(l: L) -> Box<dyn Layer<B>> {
    Box::new(l)
}
