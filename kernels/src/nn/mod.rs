//! Layers with explicit forward and backward, generic over the [`Backend`](crate::Backend), and the
//! compositions models are made of. See [`layer`] for the contract every layer keeps (what forward
//! keeps, the DP norm and clipped-gradient calls, the named-parameter visitor).
//!
//! Shape legend: `R` rows (= `B` examples x `T` steps for sequence layers), `D` model width,
//! `H` heads, `V` vocabulary, `G` groups.

mod activation;
mod attention;
mod block;
mod embedding;
mod gru;
pub mod layer;
mod layer_norm;
mod linear;
pub mod norms;
mod param;
mod pool;

pub use activation::Act;
pub use attention::{Projections, Queries, SelfAttention};
pub use block::{boxed, post_ln_block, pre_ln_block};
pub use embedding::{Embeddings, Ids};
pub use gru::Gru;
pub use layer::{trains, Concat, Frozen, Layer, Masked, Residual, Sequential, Slot, Step, Tape};
pub use layer_norm::{LayerNorm, LAYER_NORM_EPS};
pub use linear::Linear;
pub use param::{GradReduce, Param, ParamInit};
pub use pool::{FirstRow, Flatten, MaskedMeanPool, PrependRow};
