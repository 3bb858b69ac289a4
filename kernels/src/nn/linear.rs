//! Linear: x: [R, Din], W: [Dout, Din], b: [Dout] -> y: [R, Dout] = x W^T + b.
//! backward (= or +=): dx = dy W.  param_grads (=): dW = (c ⊙ dY)^T X, db = sum_r c_r dy_r, scaling
//! whichever of X and dY is narrower. Per-group norms: the backend's `linear_group_sq_norms`.

use super::layer::{check_input, kept, Layer, Slot, Step};
use super::norms::keep_materialized;
use super::param::{GradReduce, Param, ParamInit};
use crate::backend::{Backend, Gemm, GroupRows, MatView, NormStrategy};
use crate::error::Result;

pub struct Linear<B: Backend> {
    name: String,
    pub weight: Param<B>,
    pub bias: Param<B>,
    pub d_in: usize,
    pub d_out: usize,
    x: Option<Slot>,
    out: Option<Slot>,
    scratch: LinearGrads<B>,
    /// per-group gradients [G, Dout*Din] and [G, Dout] materialized for the norms of this backward
    /// pass, and their layout: the clipped sum is then their weighted sum, not a second product
    group_w: B::Buf,
    group_b: B::Buf,
    kept_for: Option<GroupRows>,
}

/// The most values of per-group gradients a Linear keeps between norms and clipped sum (256 MiB of
/// f32); above it the clipped sum is recomputed from the activations.
pub const MAX_KEPT_GROUP_GRADS: usize = 1 << 26;

/// The parameter gradients of an affine map `y = x W^T + b` from its input rows and output gradient
/// rows, with the scratch they need kept between steps. Used by Linear, and by layers whose weights
/// act like a sequence Linear (a GRU's input and hidden weights, summed over time steps).
pub(crate) struct LinearGrads<B: Backend> {
    scaled: B::Buf,
    /// [Dout, Din+1]: the clipped weight gradient with the bias gradient as its last column
    grad_with_bias: B::Buf,
}

impl<B: Backend> Linear<B> {
    /// Whether this backward's norms materialize and keep the per-group gradients: groups of equal
    /// size n for which that is the cheaper way to the norms and the clipped sum (then materialized in
    /// one strided batch and kept for the sum).
    fn keeps(&self, s: &Step<B>, x: Slot, layout: &GroupRows, strategy: NormStrategy) -> bool {
        let (pe, g) = (s.per_example(x), layout.groups());
        let n = if g > 0 { layout.rows(0, pe).len() } else { 0 };
        let uniform = g > 0 && (0..g).all(|i| layout.rows(i, pe).len() == n) && g * n == s.rows(x);
        uniform
            && keep_materialized(strategy, n, self.d_in, self.d_out)
            && g * self.d_in * self.d_out <= MAX_KEPT_GROUP_GRADS
    }

    /// `norms[g] +=` group g's squared gradient norms of Linears that read one input slot (an
    /// attention's separate q, k and v) through the backend's `shared_input_group_sq_norms`, which may
    /// share the work on the input; a Linear that keeps its per-group gradients, or reads another
    /// input, takes its own path.
    pub(crate) fn add_shared_input_group_sq_norms(
        linears: &mut [&mut Linear<B>],
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        strategy: NormStrategy,
    ) -> Result<()> {
        // the input most of them read (with first-token queries, q reads its own rows: k and v share)
        let mut inputs = Vec::with_capacity(linears.len());
        for l in linears.iter() {
            inputs.push(kept(&l.name, l.x, l.out)?.0);
        }
        let Some(&x) = inputs.iter().max_by_key(|&&x| inputs.iter().filter(|&&y| y == x).count()) else {
            return Ok(());
        };
        let d_in = linears[inputs.iter().position(|&i| i == x).unwrap_or(0)].d_in;
        let mut shared = Vec::new();
        for (l, &lx) in linears.iter_mut().zip(&inputs) {
            if lx != x || l.d_in != d_in || l.keeps(s, x, groups.as_ref(), strategy) {
                l.add_group_sq_norms(s, norms, groups, strategy)?;
            } else {
                l.kept_for = None;
                let (_, out) = kept(&l.name, l.x, l.out)?;
                shared.push((s.grad(out)?, l.d_out));
            }
        }
        match shared.len() {
            0 => Ok(()),
            _ => s.be.shared_input_group_sq_norms(norms, s.act(x)?, &shared, d_in, groups, s.per_example(x), strategy),
        }
    }
}

impl<B: Backend> LinearGrads<B> {
    pub(crate) fn new(be: &B) -> Result<Self> {
        Ok(LinearGrads { scaled: be.zeros(0)?, grad_with_bias: be.zeros(0)? })
    }

    /// weight.grad, bias.grad = the (clipped) sums over the batch of x: [R, Din] and dy: [R, Dout];
    /// `shape` = (Din, Dout, R, rows per example)
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grads(
        &mut self,
        be: &B,
        weight: &mut Param<B>,
        bias: &mut Param<B>,
        x: &B::Buf,
        dy: &B::Buf,
        shape: (usize, usize, usize, usize),
        reduce: &GradReduce<B>,
    ) -> Result<()> {
        let (d_in, d_out, rows, pe) = shape;
        let dy_t = MatView::transposed(0, d_out);
        let Some(factors) = reduce.factors else {
            be.gemm(
                &mut weight.grad,
                MatView::row_major(0, d_in),
                dy,
                dy_t,
                x,
                MatView::row_major(0, d_in),
                Gemm::new(d_out, d_in, rows),
            )?;
            return be.sum_rows(&mut bias.grad, dy, d_out);
        };
        // (c ⊙ dY)^T [X, 1] = dY^T [c ⊙ X, c]: scale the narrower of X and dY
        if d_in < d_out {
            be.resize(&mut self.scaled, rows * (d_in + 1))?;
            be.scale_rows_by_group(&mut self.scaled, x, d_in, true, factors, reduce.groups, pe)?;
            be.resize(&mut self.grad_with_bias, d_out * (d_in + 1))?;
            be.gemm(
                &mut self.grad_with_bias,
                MatView::row_major(0, d_in + 1),
                dy,
                dy_t,
                &self.scaled,
                MatView::row_major(0, d_in + 1),
                Gemm::new(d_out, d_in + 1, rows),
            )?;
            be.split_last_column(&mut weight.grad, &mut bias.grad, &self.grad_with_bias, d_in + 1)
        } else {
            be.resize(&mut self.scaled, rows * d_out)?;
            be.scale_rows_by_group(&mut self.scaled, dy, d_out, false, factors, reduce.groups, pe)?;
            be.gemm(
                &mut weight.grad,
                MatView::row_major(0, d_in),
                &self.scaled,
                dy_t,
                x,
                MatView::row_major(0, d_in),
                Gemm::new(d_out, d_in, rows),
            )?;
            be.sum_rows(&mut bias.grad, &self.scaled, d_out)
        }
    }
}

impl<B: Backend> Linear<B> {
    /// A zero-filled layer; `prefix` is its module path (`net.0`), giving `net.0.weight`.
    pub fn new(be: &B, prefix: &str, d_in: usize, d_out: usize) -> Result<Self> {
        let init = ParamInit::Uniform { bound: 1.0 / (d_in.max(1) as f64).sqrt() };
        Ok(Linear {
            name: prefix.to_string(),
            weight: Param::new(be, format!("{prefix}.weight"), &[d_out, d_in], init)?,
            bias: Param::new(be, format!("{prefix}.bias"), &[d_out], init)?,
            d_in,
            d_out,
            x: None,
            out: None,
            scratch: LinearGrads::new(be)?,
            group_w: be.zeros(0)?,
            group_b: be.zeros(0)?,
            kept_for: None,
        })
    }

    /// y: [R, Dout] = x W^T + b, for x: [R, Din]
    fn apply(&self, be: &B, y: &mut B::Buf, x: &B::Buf, rows: usize) -> Result<()> {
        be.resize(y, rows * self.d_out)?;
        be.broadcast_rows(y, &self.bias.value, rows)?;
        be.gemm(
            y,
            MatView::row_major(0, self.d_out),
            x,
            MatView::row_major(0, self.d_in),
            &self.weight.value,
            MatView::transposed(0, self.d_in),
            Gemm::new(rows, self.d_out, self.d_in).accumulate(),
        )
    }
}

impl<B: Backend> Layer<B> for Linear<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        check_input(s, &self.name, x, self.d_in)?;
        let out = s.slot(&mut self.out)?;
        self.x = Some(x);
        self.kept_for = None;
        let rows = s.rows(x);
        s.write_act(out, s.per_example(x), |s, y| self.apply(s.be, y, s.act(x)?, rows))?;
        Ok(out)
    }

    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        self.kept_for = None; // a new backward pass: new per-group gradients
        let rows = s.rows(x);
        let (d_in, d_out) = (self.d_in, self.d_out);
        s.update_grad(x, |s, dx| {
            let g = Gemm::new(rows, d_in, d_out);
            let g = if acc {
                g.accumulate()
            } else {
                s.be.resize(dx, rows * d_in)?;
                g
            };
            s.be.gemm(
                dx,
                MatView::row_major(0, d_in),
                s.grad(out)?,
                MatView::row_major(0, d_out),
                &self.weight.value,
                MatView::row_major(0, d_in),
                g,
            )
        })
    }

    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        strategy: NormStrategy,
    ) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        let (be, pe, layout) = (s.be, s.per_example(x), groups.as_ref());
        let (d_in, d_out, g) = (self.d_in, self.d_out, layout.groups());
        if !self.keeps(s, x, layout, strategy) {
            self.kept_for = None;
            return be.linear_group_sq_norms(norms, s.act(x)?, s.grad(out)?, d_in, d_out, groups, pe, strategy);
        }
        let n = layout.rows(0, pe).len();
        // group_w[g] = dY_g^T X_g: [Dout, Din], PyTorch's weight layout
        be.resize(&mut self.group_w, g * d_out * d_in)?;
        be.gemm(
            &mut self.group_w,
            MatView::row_major(0, d_in).batched(d_out * d_in),
            s.grad(out)?,
            MatView::transposed(0, d_out).batched(n * d_out),
            s.act(x)?,
            MatView::row_major(0, d_in).batched(n * d_in),
            Gemm::new(d_out, d_in, n).batched(g),
        )?;
        be.resize(&mut self.group_b, g * d_out)?;
        be.group_row_sums(&mut self.group_b, s.grad(out)?, d_out, groups, pe)?;
        be.add_row_sq_norms(norms, &self.group_w, d_out * d_in)?;
        be.add_row_sq_norms(norms, &self.group_b, d_out)?;
        self.kept_for = Some(layout.clone());
        Ok(())
    }

    fn param_grads(&mut self, s: &Step<B>, reduce: &GradReduce<B>) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        let (be, pe, rows) = (s.be, s.per_example(x), s.rows(x));
        if let (Some(factors), Some(layout)) = (reduce.factors, &self.kept_for) {
            if layout == reduce.groups.as_ref() {
                // the clipped sum of the per-group gradients the norms materialized
                be.weighted_row_sum(&mut self.weight.grad, &self.group_w, factors, self.d_out * self.d_in, false)?;
                return be.weighted_row_sum(&mut self.bias.grad, &self.group_b, factors, self.d_out, false);
            }
        }
        let shape = (self.d_in, self.d_out, rows, pe);
        self.scratch.grads(be, &mut self.weight, &mut self.bias, s.act(x)?, s.grad(out)?, shape, reduce)
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        f(&self.weight);
        f(&self.bias);
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        f(&mut self.weight);
        f(&mut self.bias);
    }
}
