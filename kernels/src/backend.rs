//! The device abstraction: one trait that every backend (CPU today, CUDA next, an NPU later) implements.
//!
//! A backend owns f32 buffers (`Buf`) and u32 index buffers (`Ids`) on its device, and offers the
//! kernels the layers of `nn` are written in: a strided, batched matmul, the fused elementwise kernels
//! of each layer (llm.c style: `layer_norm_forward` / `layer_norm_backward` side by side), losses,
//! optimizers, Gaussian noise from a keyed stream, and the DP-SGD primitives (per-group squared gradient
//! norms and clipped accumulation). Layers and models are generic over it, so the same model code runs on
//! every device.
//!
//! Shape legend used in every signature: `R` rows (examples, or tokens = examples x `T`), `B` batch,
//! `T` time steps / tokens, `D` or `C` channels, `H` heads, `G` privacy groups, `V` vocabulary.
//! `=` after an output means overwritten, `+=` accumulated into.
//!
//! A new backend starts from the required methods; the composable ones (`add`, `sum_rows`,
//! `split_last_column`, `add_row_sq_norms`, `broadcast_rows`, `weighted_row_sum`) and the per-group norm
//! algorithm of a Linear (`linear_group_sq_norms`, see `nn::norms`) have default implementations in
//! the required ones, which a backend overrides where a fused kernel is faster (the CPU does).
//!
//! Determinism: every reduction has a fixed order that does not depend on the number of threads, so a
//! step gives the same bits with 1 or N threads.

use crate::error::Result;

/// How a matrix lies in a buffer: exactly what a strided-batched BLAS gemm (cuBLAS'
/// `gemmStridedBatched`) can express. The matrix is stored row-major with leading dimension `ld`
/// (elements between consecutive stored rows) and read as stored or, with `trans`, transposed; item p
/// of a batch starts `p * batch_stride` after `offset` (0: the same matrix for every item). Element
/// (i, j) of item p is at `offset + p*batch_stride + i*ld + j` (`+ j*ld + i` when transposed).
/// Attention's per-(example, head) products are one such batch per head (see `nn::SelfAttention`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatView {
    pub offset: usize,
    pub ld: usize,
    pub trans: bool,
    pub batch_stride: usize,
}

impl MatView {
    /// A dense row-major `[rows, cols]` matrix at `offset`.
    pub fn row_major(offset: usize, cols: usize) -> Self {
        MatView { offset, ld: cols, trans: false, batch_stride: 0 }
    }
    /// The transpose of a dense row-major matrix with `cols` columns (read as `[cols, rows]`).
    pub fn transposed(offset: usize, cols: usize) -> Self {
        MatView { offset, ld: cols, trans: true, batch_stride: 0 }
    }
    /// The same storage with another leading dimension (rows `ld` apart: a column block of a wider
    /// matrix, or every T-th row).
    pub fn with_ld(mut self, ld: usize) -> Self {
        self.ld = ld;
        self
    }
    /// The same storage read transposed.
    pub fn t(mut self) -> Self {
        self.trans = !self.trans;
        self
    }
    pub fn batched(mut self, batch_stride: usize) -> Self {
        self.batch_stride = batch_stride;
        self
    }
    /// (row stride, column stride) of the matrix as read.
    pub fn strides(&self) -> (usize, usize) {
        if self.trans {
            (1, self.ld)
        } else {
            (self.ld, 1)
        }
    }
    /// The largest element index this view touches (exclusive) for a `rows x cols` matrix in a batch
    /// of `batch`; 0 when the matrix is empty (it touches nothing, whatever its offset).
    pub fn extent(&self, rows: usize, cols: usize, batch: usize) -> usize {
        if rows == 0 || cols == 0 || batch == 0 {
            return 0;
        }
        let (rs, cs) = self.strides();
        // an extent past usize (a hostile view) saturates, and no buffer is that long
        [(batch - 1, self.batch_stride), (rows - 1, rs), (cols - 1, cs)]
            .iter()
            .try_fold(self.offset, |acc, &(n, s)| acc.checked_add(n.checked_mul(s)?))
            .and_then(|e| e.checked_add(1))
            .unwrap_or(usize::MAX)
    }
}

/// `C[p] = beta * C[p] + alpha * A[p] · B[p]` for every batch item p < `batch`:
/// A is `[m, k]`, B `[k, n]`, C `[m, n]` (C is never read transposed); `beta` is 0 (overwrite) or any
/// other value (read C).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub alpha: f32,
    pub beta: f32,
}

impl Gemm {
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Gemm { m, n, k, batch: 1, alpha: 1.0, beta: 0.0 }
    }
    pub fn batched(mut self, count: usize) -> Self {
        self.batch = count;
        self
    }
    pub fn alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }
    /// Accumulate into C (`beta = 1`) instead of overwriting it.
    pub fn accumulate(mut self) -> Self {
        self.beta = 1.0;
        self
    }
}

/// Where each privacy group's rows lie. Rows of one group are contiguous: group `g` owns example rows
/// `offsets[g]..offsets[g+1]`; a sequence layer with `T` rows per example owns `T*offsets[g]..`.
/// One example per group is per-example clipping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRows {
    pub offsets: Vec<usize>,
}

impl GroupRows {
    /// One group per example.
    pub fn per_example(examples: usize) -> Self {
        GroupRows { offsets: (0..=examples).collect() }
    }
    /// All examples in one group (a non-private step's plain gradient).
    pub fn single(examples: usize) -> Self {
        GroupRows { offsets: vec![0, examples] }
    }
    pub fn groups(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    pub fn examples(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }
    /// The row range of group `g` when each example has `rows_per_example` rows.
    pub fn rows(&self, g: usize, rows_per_example: usize) -> std::ops::Range<usize> {
        self.offsets[g] * rows_per_example..self.offsets[g + 1] * rows_per_example
    }
}

/// Which way a sequence layer computes its per-group squared gradient norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NormStrategy {
    /// The cheaper of the two for each group (counted in multiply-adds).
    #[default]
    Auto,
    /// Ghost norm: `sum_{t,s} (x_t . x_s)(dy_t . dy_s)`, cost `n^2 (d_in + d_out)` for `n` rows.
    Ghost,
    /// Materialize the group's gradient `X^T dY`, cost `n d_in d_out`.
    Materialize,
}

/// A keyed Gaussian noise stream: the same key and stream give the same noise on every backend and
/// thread count. The key never leaves the node.
#[derive(Clone)]
pub struct NoiseKey {
    pub key: [u8; 32],
    pub stream: u64,
}

impl std::fmt::Debug for NoiseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the key is a secret: never print it
        f.debug_struct("NoiseKey").field("stream", &self.stream).finish_non_exhaustive()
    }
}

/// Hyper-parameters of AdamW (PyTorch semantics: decoupled weight decay, bias-corrected moments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// An elementwise activation function (PyTorch semantics; GELU is the exact erf form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Gelu,
    Sigmoid,
    Tanh,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }
}

/// What a masked key's attention score becomes before the softmax.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum MaskFill {
    /// -inf: masked keys get no weight, and a query whose keys are all masked attends to nothing (zeros).
    #[default]
    NegInf,
    /// `scale * score + value` (Hugging Face BERT adds the most negative finite f32, `f32::MIN`): a query
    /// whose keys are all masked then spreads its weight over all of them.
    Add(f32),
}

impl AsRef<GroupRows> for GroupRows {
    fn as_ref(&self) -> &GroupRows {
        self
    }
}

/// The rows of one id that `Backend::embedding_backward` sums before adding them to the table (the
/// order of the sum, which every backend keeps).
pub const EMBEDDING_CHUNK: usize = 64;

/// The compute device. Kernels validate the sizes of the buffers they are given and return
/// `KernelError::Shape` rather than reading out of bounds.
pub trait Backend: Send + Sync + 'static {
    /// f32 buffer on the device.
    type Buf: Send + Sync;
    /// u32 buffer on the device (token ids, class labels).
    type Ids: Send + Sync;
    /// A privacy group layout on the device, built once per step by [`Backend::groups`] and read by
    /// every per-group kernel of that step (a GPU uploads the offsets once, not once per layer). It
    /// keeps the host layout too, which the host-side algorithms read.
    type Groups: Send + Sync + AsRef<GroupRows>;

    fn name(&self) -> &'static str;
    fn threads(&self) -> usize;
    /// Runs `f` (a whole step's calls) in the backend's execution context, so that each kernel call
    /// inside skips the hand-over a call from outside would cost (for the CPU: entering its thread pool,
    /// several microseconds a call). Kernel calls work outside a scope too.
    fn scope<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }
    /// Waits until every call queued so far has finished (a device's calls are asynchronous; its
    /// errors may surface here). A no-op where calls finish when they return (the CPU).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    /// The memory, in bytes, that buffers of this backend can take at most now, where it is known: the
    /// host's available memory for the CPU, the device's for a GPU. A run checks a model's size against
    /// it before allocating (an allocation the host overcommits is answered by the out-of-memory killer,
    /// not an error).
    fn memory_limit(&self) -> Option<u64> {
        None
    }

    // ---- buffers ----
    // Every op that allocates or moves memory can fail on a device (out of memory, a lost device): it
    // returns the error, naming the op and the size asked for, rather than panicking.
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    fn upload(&self, data: &[f32]) -> Result<Self::Buf>;
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    fn upload_ids(&self, ids: &[u32]) -> Result<Self::Ids>;
    fn len(&self, buf: &Self::Buf) -> usize;
    fn ids_len(&self, ids: &Self::Ids) -> usize;
    /// Make `buf` exactly `len` long (contents unspecified after a size change); reuses its memory.
    fn resize(&self, buf: &mut Self::Buf, len: usize) -> Result<()>;
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()>;
    fn copy(&self, dst: &mut Self::Buf, src: &Self::Buf) -> Result<()>;
    /// The device copy of a group layout (see [`Backend::Groups`]).
    fn groups(&self, layout: &GroupRows) -> Result<Self::Groups>;

    // ---- matmul ----
    /// See [`Gemm`] and [`MatView`].
    fn gemm(
        &self,
        c: &mut Self::Buf,
        cv: MatView,
        a: &Self::Buf,
        av: MatView,
        b: &Self::Buf,
        bv: MatView,
        g: Gemm,
    ) -> Result<()>;

    // ---- elementwise and reductions ----
    /// y: [R, D] = broadcast bias: [D]; composed of a gemm with a column of ones unless overridden
    fn broadcast_rows(&self, y: &mut Self::Buf, bias: &Self::Buf, rows: usize) -> Result<()> {
        let d = self.len(bias);
        let ones = self.upload(&vec![1.0; rows])?;
        self.gemm(
            y,
            MatView::row_major(0, d),
            &ones,
            MatView::row_major(0, 1),
            bias,
            MatView::row_major(0, d),
            Gemm::new(rows, d, 1),
        )
    }
    /// out = a + b (same length); composed of `copy` and `add_assign` unless a backend fuses it
    fn add(&self, out: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) -> Result<()> {
        self.resize(out, self.len(a))?;
        self.copy(out, a)?;
        self.add_assign(out, b)
    }
    /// y += x (same length)
    fn add_assign(&self, y: &mut Self::Buf, x: &Self::Buf) -> Result<()>;
    /// out: [G, D] = per-group sums of x: [R, D] rows (`rows_per_example` rows per example)
    fn group_row_sums(
        &self,
        out: &mut Self::Buf,
        x: &Self::Buf,
        d: usize,
        groups: &Self::Groups,
        rows_per_example: usize,
    ) -> Result<()>;
    /// out: [G] += dot product of row g of a: [G, D] and row g of b: [G, D]
    fn add_row_dots(&self, out: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf, d: usize) -> Result<()>;
    /// out: [G] += squared L2 norm of each row of x: [G, D]; composed of `add_row_dots`
    fn add_row_sq_norms(&self, out: &mut Self::Buf, x: &Self::Buf, d: usize) -> Result<()> {
        self.add_row_dots(out, x, x, d)
    }
    /// dst[r, dst_col .. dst_col+width] = src[r, src_col .. src_col+width] for r < rows, where dst rows are
    /// `dst_w` wide and src rows `src_w` wide (concatenation and its backward, column splits)
    #[allow(clippy::too_many_arguments)]
    fn copy_columns(
        &self,
        dst: &mut Self::Buf,
        dst_w: usize,
        dst_col: usize,
        src: &Self::Buf,
        src_w: usize,
        src_col: usize,
        width: usize,
        rows: usize,
    ) -> Result<()>;
    /// out: [D] = sum of the rows of x: [R, D]; composed of `group_row_sums` over one group
    fn sum_rows(&self, out: &mut Self::Buf, x: &Self::Buf, d: usize) -> Result<()> {
        let rows = if d == 0 { 0 } else { self.len(x) / d };
        let all = self.groups(&GroupRows::single(rows))?;
        self.group_row_sums(out, x, d, &all, 1)
    }
    /// x: [R, W] -> head: [R, W-1] = x[:, :W-1], last: [R] = x[:, W-1]; composed of `copy_columns`
    fn split_last_column(&self, head: &mut Self::Buf, last: &mut Self::Buf, x: &Self::Buf, w: usize) -> Result<()> {
        if w == 0 {
            return Err(crate::KernelError::Invalid {
                op: "split_last_column",
                msg: "width 0 has no last column".into(),
            });
        }
        let rows = self.len(x) / w;
        self.copy_columns(head, w - 1, 0, x, w, 0, w - 1, rows)?;
        self.copy_columns(last, 1, 0, x, w, w - 1, 1, rows)
    }
    /// out: [D] (= or +=) sum_g w[g] * x[g, :]   (x: [G, D], w: [G]); fixed order over g. Composed
    /// of a gemm `[1, G] x [G, D]` unless overridden.
    fn weighted_row_sum(
        &self,
        out: &mut Self::Buf,
        x: &Self::Buf,
        w: &Self::Buf,
        d: usize,
        accumulate: bool,
    ) -> Result<()> {
        let g = self.len(w);
        let gm = Gemm::new(1, d, g);
        let gm = if accumulate { gm.accumulate() } else { gm };
        self.gemm(out, MatView::row_major(0, d), w, MatView::row_major(0, g), x, MatView::row_major(0, d), gm)
    }
    /// y: [R, D] = f_r * x, where f_r = factors[g] for the group g of example r / rows_per_example.
    /// With `append_factor`, y is [R, D+1] and its last column holds f_r (the scaled constant input
    /// whose weight is a Linear's bias).
    #[allow(clippy::too_many_arguments)]
    fn scale_rows_by_group(
        &self,
        y: &mut Self::Buf,
        x: &Self::Buf,
        d: usize,
        append_factor: bool,
        factors: &Self::Buf,
        groups: &Self::Groups,
        rows_per_example: usize,
    ) -> Result<()>;
    /// factors: [G] = min(1, clip / sqrt(sq_norms[g])), and 1 where the norm is 0
    fn clip_factors(&self, factors: &mut Self::Buf, sq_norms: &Self::Buf, clip: f32) -> Result<()>;

    // ---- activations ----
    /// y = f(x) elementwise
    fn activation_forward(&self, f: Activation, y: &mut Self::Buf, x: &Self::Buf) -> Result<()>;
    /// dx = dy * f'(x), from the forward input x or output y (whichever `f` needs; both are given)
    fn activation_backward(
        &self,
        f: Activation,
        dx: &mut Self::Buf,
        dy: &Self::Buf,
        x: &Self::Buf,
        y: &Self::Buf,
    ) -> Result<()>;

    // ---- layer norm ----
    /// x: [R, C] -> y: [R, C] =, mean: [R] =, rstd: [R] =
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_forward(
        &self,
        y: &mut Self::Buf,
        mean: &mut Self::Buf,
        rstd: &mut Self::Buf,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        c: usize,
        eps: f32,
    ) -> Result<()>;
    /// dx: [R, C] =, dxhat_dy: [R, C] = dy * xhat (what the gamma gradient sums; dbeta sums dy)
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_backward(
        &self,
        dx: &mut Self::Buf,
        dy_xhat: &mut Self::Buf,
        dy: &Self::Buf,
        x: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        rstd: &Self::Buf,
        c: usize,
    ) -> Result<()>;

    // ---- attention ----
    /// att: [B, H, Tq, T] in place (Tq query rows: T, or 1 when only the first token queries): softmax
    /// over the last axis of `scale * att`, where keys with mask[b, s] == 0 get `fill` (see [`MaskFill`]).
    #[allow(clippy::too_many_arguments)]
    fn masked_softmax_forward(
        &self,
        att: &mut Self::Buf,
        mask: &Self::Buf,
        b: usize,
        h: usize,
        tq: usize,
        t: usize,
        scale: f32,
        fill: MaskFill,
    ) -> Result<()>;
    /// datt: [B, H, Tq, T] in place: dscores = scale * att * (datt - sum_s(datt * att))
    fn softmax_backward(&self, datt: &mut Self::Buf, att: &Self::Buf, t: usize, scale: f32) -> Result<()>;

    // ---- recurrent ----
    /// One GRU time step `t` for all `b` examples (PyTorch's gates r, z, n, in that order). The row of
    /// example e at step t is row `e*steps + t` of every `[B*T, *]` buffer. gi, gh: [B*T, 3H] the input
    /// and hidden projections (biases included); h_prev: [B*T, H] the state entering each step.
    /// Writes gates[e,t] = (r, z, n), h[e,t] = (1-z) n + z h_prev[e,t], and h_prev[e,t+1] = h[e,t]
    /// when t+1 < steps, where r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r gh_n).
    #[allow(clippy::too_many_arguments)]
    fn gru_step_forward(
        &self,
        h: &mut Self::Buf,
        h_prev: &mut Self::Buf,
        gates: &mut Self::Buf,
        gi: &Self::Buf,
        gh: &Self::Buf,
        b: usize,
        steps: usize,
        t: usize,
        hidden: usize,
    ) -> Result<()>;
    /// The backward of [`Backend::gru_step_forward`] at step t: with dh = dy[e,t] + carry[e] (carry:
    /// [B, H], the gradient reaching h[e,t] from step t+1), writes dgi[e,t] and dgh[e,t] (the gradients
    /// of the 3H pre-activations; they differ in the n gate, dgh_n = r dgi_n) and carry[e] = z dh, the
    /// direct part of the gradient at h_prev[e,t] (the caller adds dgh W_hh).
    #[allow(clippy::too_many_arguments)]
    fn gru_step_backward(
        &self,
        dgi: &mut Self::Buf,
        dgh: &mut Self::Buf,
        carry: &mut Self::Buf,
        dy: &Self::Buf,
        gates: &Self::Buf,
        gh: &Self::Buf,
        h_prev: &Self::Buf,
        b: usize,
        steps: usize,
        t: usize,
        hidden: usize,
    ) -> Result<()>;

    // ---- embedding ----
    /// y: [R, D] (= or +=) table[ids[r], :]
    fn embedding_forward(
        &self,
        y: &mut Self::Buf,
        ids: &Self::Ids,
        table: &Self::Buf,
        d: usize,
        accumulate: bool,
    ) -> Result<()>;
    /// dtable: [V, D] += sum_r w_r * dy[r, :] at ids[r], w_r = factors[group(r)] (or 1 when None).
    /// The order, which every backend keeps (the CPU's bits): an id's rows, in increasing order, are
    /// summed in chunks of [`EMBEDDING_CHUNK`] consecutive ones, each chunk from 0 (`0 + w_r dy_r`, the
    /// product rounded before the sum), and the chunk sums are added to the table's row in order. A
    /// frequent id (padding, a position at a large batch) is then summed in parallel on a device.
    #[allow(clippy::too_many_arguments)]
    fn embedding_backward(
        &self,
        dtable: &mut Self::Buf,
        ids: &Self::Ids,
        dy: &Self::Buf,
        d: usize,
        factors: Option<&Self::Buf>,
        groups: &Self::Groups,
        rows_per_example: usize,
    ) -> Result<()>;
    /// out: [G] += || sum over the group's rows of dy scattered at ids ||^2, i.e.
    /// `sum_{t,s in g: ids_t = ids_s} dy_t . dy_s`
    fn embedding_group_sq_norms(
        &self,
        out: &mut Self::Buf,
        ids: &Self::Ids,
        dy: &Self::Buf,
        d: usize,
        groups: &Self::Groups,
        rows_per_example: usize,
    ) -> Result<()>;

    // ---- pooling ----
    /// h: [B, T, C], mask: [B, T] -> out: [B, C] = sum_t h*m / max(sum_t m, 1)
    fn masked_mean_pool_forward(
        &self,
        out: &mut Self::Buf,
        h: &Self::Buf,
        mask: &Self::Buf,
        t: usize,
        c: usize,
    ) -> Result<()>;
    /// dh: [B, T, C] = dout[b, :] * m[b, t] / max(sum_t m, 1)
    fn masked_mean_pool_backward(
        &self,
        dh: &mut Self::Buf,
        dout: &Self::Buf,
        mask: &Self::Buf,
        t: usize,
        c: usize,
    ) -> Result<()>;

    // ---- losses ----
    /// logits: [B], targets: [B] in {0,1} (or soft) -> losses: [B] =, dlogits: [B] = grad_scale * dloss/dlogit
    fn bce_with_logits(
        &self,
        losses: &mut Self::Buf,
        dlogits: &mut Self::Buf,
        logits: &Self::Buf,
        targets: &Self::Buf,
        grad_scale: f32,
    ) -> Result<()>;
    /// Regression, preds and targets: [B] -> losses: [B] =, dlogits: [B] = grad_scale * dloss/dpred.
    /// `huber` None: squared error (p - y)^2 (PyTorch's `MSELoss`); Some(delta): Huber loss,
    /// 0.5 r^2 for |r| <= delta and delta (|r| - 0.5 delta) beyond (PyTorch's `HuberLoss(delta=delta)`).
    fn regression_loss(
        &self,
        losses: &mut Self::Buf,
        dlogits: &mut Self::Buf,
        preds: &Self::Buf,
        targets: &Self::Buf,
        huber: Option<f32>,
        grad_scale: f32,
    ) -> Result<()>;
    /// logits: [B, K], classes: [B] -> losses: [B] =, dlogits: [B, K] = grad_scale * (softmax - onehot)
    fn cross_entropy(
        &self,
        losses: &mut Self::Buf,
        dlogits: &mut Self::Buf,
        logits: &Self::Buf,
        classes: &Self::Ids,
        k: usize,
        grad_scale: f32,
    ) -> Result<()>;

    // ---- DP primitives ----
    /// out: [G] += per-group squared norm of a Linear's weight and bias gradient `dY_g^T [X_g, 1]`,
    /// from x: [R, Din] and dy: [R, Dout], without forming per-example gradients. The default is the
    /// algorithm of [`crate::nn::norms`], written once in this trait's primitives (batched gemm, group
    /// row sums, row dots); a backend may override it with a fused version (the CPU's symmetric Gram
    /// tiles with zero-row skipping), which the tests hold to the same values.
    #[allow(clippy::too_many_arguments)]
    fn linear_group_sq_norms(
        &self,
        out: &mut Self::Buf,
        x: &Self::Buf,
        dy: &Self::Buf,
        d_in: usize,
        d_out: usize,
        groups: &Self::Groups,
        rows_per_example: usize,
        strategy: NormStrategy,
    ) -> Result<()> {
        crate::nn::norms::linear_group_sq_norms(self, out, x, dy, d_in, d_out, groups, rows_per_example, strategy)
    }
    /// out: [G] += per-group squared norms of several Linears that read the same input x: [R, Din] (an
    /// attention's separate q, k and v), `dys` their output gradients and widths. The same values as
    /// one [`Backend::linear_group_sq_norms`] each, which is the default; a backend may share the work
    /// on x (the CPU computes each group's input Gram once).
    #[allow(clippy::too_many_arguments)]
    fn shared_input_group_sq_norms(
        &self,
        out: &mut Self::Buf,
        x: &Self::Buf,
        dys: &[(&Self::Buf, usize)],
        d_in: usize,
        groups: &Self::Groups,
        rows_per_example: usize,
        strategy: NormStrategy,
    ) -> Result<()> {
        dys.iter().try_for_each(|&(dy, d_out)| {
            self.linear_group_sq_norms(out, x, dy, d_in, d_out, groups, rows_per_example, strategy)
        })
    }

    // ---- noise ----
    /// buf = scale * grid * round_half_even((buf + std * z) / grid) in f64, rounded to f32, with one
    /// standard normal `z` per element from the keyed stream (see [`NoiseKey`]); one pass for DP-SGD's
    /// "add noise, divide by the expected batch size". `grid` is the snapping grid, a positive power of
    /// two chosen by the caller from the public noise level; with `std == 0` the result is `scale * buf`.
    /// The exact computation, which every backend reproduces bit for bit, is kernels/NOISE.md; its test
    /// vectors are kernels/tests/vectors/noise.txt.
    fn add_normal(&self, buf: &mut Self::Buf, std: f32, scale: f32, grid: f64, key: &NoiseKey) -> Result<()>;

    // ---- optimizers ----
    /// PyTorch SGD: g' = g + wd*w; m = momentum*m + g' (m = g' on the first step); w -= lr*m
    #[allow(clippy::too_many_arguments)]
    fn sgd_step(
        &self,
        w: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        first_step: bool,
    ) -> Result<()>;
    /// PyTorch AdamW at step t (1-based).
    fn adamw_step(
        &self,
        w: &mut Self::Buf,
        g: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        h: &AdamW,
        t: u64,
    ) -> Result<()>;
}
