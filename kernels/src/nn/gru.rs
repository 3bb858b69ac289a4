//! A one-layer GRU over time (PyTorch's `nn.GRU(I, H, batch_first=True)`): x: [B*T, I] (T = rows per
//! example of its input) -> every state h: [B*T, H], from h_0 = 0, with PyTorch's gates and names:
//!   r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz),
//!   n = tanh(W_in x + b_in + r (W_hn h + b_hn)),  h' = (1 - z) n + z h,
//! `weight_ih_l0` [3H, I], `weight_hh_l0` [3H, H], `bias_ih_l0`, `bias_hh_l0` [3H] (gates r, z, n).
//! It runs through padding steps as PyTorch does without packing (pool with the mask afterwards).
//!
//! DP: both weight matrices act on every step of an example, so each is a sequence Linear for the
//! norms and the clipped sums: `W_ih` with input rows x_t and output gradients dgi_t, `W_hh` with input
//! rows h_{t-1} and output gradients dgh_t, each example's T rows summed (the backend's
//! `linear_group_sq_norms` with T rows per example).

use super::layer::{check_input, kept, Layer, Slot, Step};
use super::linear::LinearGrads;
use super::param::{GradReduce, Param, ParamInit};
use crate::backend::{Backend, Gemm, MatView, NormStrategy};
use crate::error::Result;

pub struct Gru<B: Backend> {
    name: String,
    pub weight_ih: Param<B>,
    pub weight_hh: Param<B>,
    pub bias_ih: Param<B>,
    pub bias_hh: Param<B>,
    pub input: usize,
    pub hidden: usize,
    x: Option<Slot>,
    out: Option<Slot>,
    /// [B*T, 3H] input and hidden projections, gates (r, z, n), and their gradients
    gi: B::Buf,
    gh: B::Buf,
    gates: B::Buf,
    dgi: B::Buf,
    dgh: B::Buf,
    /// [B*T, H]: the state entering each step (h_{t-1}; 0 at t = 0)
    h_prev: B::Buf,
    /// [B, H]: the gradient carried from step t+1 to step t
    carry: B::Buf,
    ih: LinearGrads<B>,
    hh: LinearGrads<B>,
}

impl<B: Backend> Gru<B> {
    /// `prefix` is the module path (`gru`), giving `gru.weight_ih_l0` and so on. PyTorch's
    /// initialization: every parameter U(-1/sqrt(H), 1/sqrt(H)).
    pub fn new(be: &B, prefix: &str, input: usize, hidden: usize) -> Result<Self> {
        let init = ParamInit::Uniform { bound: 1.0 / (hidden.max(1) as f64).sqrt() };
        let p = |n: &str, shape: &[usize]| Param::new(be, format!("{prefix}.{n}"), shape, init);
        let z = || be.zeros(0);
        Ok(Gru {
            name: prefix.to_string(),
            weight_ih: p("weight_ih_l0", &[3 * hidden, input])?,
            weight_hh: p("weight_hh_l0", &[3 * hidden, hidden])?,
            bias_ih: p("bias_ih_l0", &[3 * hidden])?,
            bias_hh: p("bias_hh_l0", &[3 * hidden])?,
            input,
            hidden,
            x: None,
            out: None,
            gi: z()?,
            gh: z()?,
            gates: z()?,
            dgi: z()?,
            dgh: z()?,
            h_prev: z()?,
            carry: z()?,
            ih: LinearGrads::new(be)?,
            hh: LinearGrads::new(be)?,
        })
    }
}

/// Rows of step t of every example in a [B*T, w] buffer: a strided [B, w] matrix.
fn step_rows(t: usize, steps: usize, w: usize) -> MatView {
    MatView::row_major(t * w, w).with_ld(steps * w)
}

impl<B: Backend> Layer<B> for Gru<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        check_input(s, &self.name, x, self.input)?;
        let out = s.slot(&mut self.out)?;
        self.x = Some(x);
        let (be, b, steps, rows) = (s.be, s.examples, s.per_example(x), s.rows(x));
        let (i, h3, h) = (self.input, 3 * self.hidden, self.hidden);
        be.resize(&mut self.gi, rows * h3)?;
        be.broadcast_rows(&mut self.gi, &self.bias_ih.value, rows)?;
        be.gemm(
            &mut self.gi,
            MatView::row_major(0, h3),
            s.act(x)?,
            MatView::row_major(0, i),
            &self.weight_ih.value,
            MatView::transposed(0, i),
            Gemm::new(rows, h3, i).accumulate(),
        )?;
        be.resize(&mut self.gh, rows * h3)?;
        be.broadcast_rows(&mut self.gh, &self.bias_hh.value, rows)?;
        be.resize(&mut self.gates, rows * h3)?;
        be.resize(&mut self.h_prev, rows * h)?;
        be.fill(&mut self.h_prev, 0.0)?;
        let (gi, gh, gates, h_prev, w_hh) =
            (&self.gi, &mut self.gh, &mut self.gates, &mut self.h_prev, &self.weight_hh.value);
        s.write_act(out, steps, |_, hs| {
            be.resize(hs, rows * h)?;
            for t in 0..steps {
                // gh[:, t] += h_{t-1} W_hh^T (h_0 = 0 adds nothing)
                if t > 0 {
                    be.gemm(
                        gh,
                        step_rows(t, steps, h3),
                        h_prev,
                        step_rows(t, steps, h),
                        w_hh,
                        MatView::transposed(0, h),
                        Gemm::new(b, h3, h).accumulate(),
                    )?;
                }
                be.gru_step_forward(hs, h_prev, gates, gi, gh, b, steps, t, h)?;
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        let (be, b, steps, rows) = (s.be, s.examples, s.per_example(x), s.rows(x));
        let (i, h3, h) = (self.input, 3 * self.hidden, self.hidden);
        be.resize(&mut self.dgi, rows * h3)?;
        be.resize(&mut self.dgh, rows * h3)?;
        be.resize(&mut self.carry, b * h)?;
        be.fill(&mut self.carry, 0.0)?;
        let dy = s.grad(out)?;
        for t in (0..steps).rev() {
            be.gru_step_backward(
                &mut self.dgi,
                &mut self.dgh,
                &mut self.carry,
                dy,
                &self.gates,
                &self.gh,
                &self.h_prev,
                b,
                steps,
                t,
                h,
            )?;
            if t > 0 {
                // the gradient reaching h_{t-1} through W_hh
                be.gemm(
                    &mut self.carry,
                    MatView::row_major(0, h),
                    &self.dgh,
                    step_rows(t, steps, h3),
                    &self.weight_hh.value,
                    MatView::row_major(0, h),
                    Gemm::new(b, h, h3).accumulate(),
                )?;
            }
        }
        let (dgi, w_ih) = (&self.dgi, &self.weight_ih.value);
        s.update_grad(x, |_, dx| {
            let g = Gemm::new(rows, i, h3);
            let g = if acc {
                g.accumulate()
            } else {
                be.resize(dx, rows * i)?;
                g
            };
            be.gemm(dx, MatView::row_major(0, i), dgi, MatView::row_major(0, h3), w_ih, MatView::row_major(0, i), g)
        })
    }

    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        st: NormStrategy,
    ) -> Result<()> {
        let (x, _) = kept(&self.name, self.x, self.out)?;
        let (pe, h3) = (s.per_example(x), 3 * self.hidden);
        s.be.linear_group_sq_norms(norms, s.act(x)?, &self.dgi, self.input, h3, groups, pe, st)?;
        s.be.linear_group_sq_norms(norms, &self.h_prev, &self.dgh, self.hidden, h3, groups, pe, st)
    }

    fn param_grads(&mut self, s: &Step<B>, reduce: &GradReduce<B>) -> Result<()> {
        let (x, _) = kept(&self.name, self.x, self.out)?;
        let (pe, rows, h3) = (s.per_example(x), s.rows(x), 3 * self.hidden);
        let ih = (self.input, h3, rows, pe);
        self.ih.grads(s.be, &mut self.weight_ih, &mut self.bias_ih, s.act(x)?, &self.dgi, ih, reduce)?;
        let hh = (self.hidden, h3, rows, pe);
        self.hh.grads(s.be, &mut self.weight_hh, &mut self.bias_hh, &self.h_prev, &self.dgh, hh, reduce)
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        f(&self.weight_ih);
        f(&self.weight_hh);
        f(&self.bias_ih);
        f(&self.bias_hh);
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        f(&mut self.weight_ih);
        f(&mut self.weight_hh);
        f(&mut self.bias_ih);
        f(&mut self.bias_hh);
    }
}
