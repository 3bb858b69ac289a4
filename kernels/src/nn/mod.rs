//! Layers with explicit forward and backward, generic over the [`Backend`](crate::Backend).
//!
//! Every parametric layer follows the same DP contract, in two calls after its input backward:
//! - `add_group_sq_norms(norms, ...)`: `norms[g] +=` the squared norm of privacy group g's gradient of
//!   this layer's parameters, from the activations and output gradients of the one backward pass;
//! - `param_grads(..., &GradReduce)`: `param.grad =` the sum over groups of `c_g` times group g's
//!   gradient (`c_g = 1` without clipping), as one weighted matmul `X^T (c ⊙ dY)` for a Linear.
//! A model sums the norms of all its layers before any `param_grads`, since `c_g` needs the whole norm.
//!
//! Shape legend: `R` rows (= `B` examples x `T` steps for sequence layers), `D` model width,
//! `H` heads, `V` vocabulary, `G` groups.

mod attention;
mod block;
mod embedding;
mod layer_norm;
mod linear;
mod param;

pub use attention::SelfAttention;
pub use block::EncoderBlock;
pub use embedding::Embedding;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use param::{GradReduce, Param};
