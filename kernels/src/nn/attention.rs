//! Multi-head self-attention with a key mask: q, k, v projections (one fused Linear(D, 3D) whose
//! output is PyTorch's `view(B, T, 3, H, hd)`, or three separate Linears as in Hugging Face BERT), then
//! att: [B, H, T, T] = softmax(q k^T / sqrt(hd)) with masked keys filled (see [`MaskFill`]),
//! ctx: [B, T, H, hd] = att v, and out = o(ctx).
//! Backward (=): dctx = o^T dout; datt = dctx v^T; dv = att^T dctx; dscores = softmax'(datt);
//! dq = dscores k; dk = dscores^T q; then each projection's backward into the input gradient.

use super::layer::{kept, Layer, Slot, Step};
use super::linear::Linear;
use super::param::{GradReduce, Param};
use crate::backend::{Backend, Gemm, MaskFill, MatView, NormStrategy};
use crate::error::{KernelError, Result};

/// The q, k and v projections.
pub enum Projections<B: Backend> {
    /// one Linear(D, 3D): q, then k, then v along its output features
    Fused(Linear<B>),
    /// three Linear(D, D)
    Separate { q: Linear<B>, k: Linear<B>, v: Linear<B> },
}

/// Where head `h`'s matrices of every example lie, for `T` steps: one strided batch over the B
/// examples per head (what a strided-batched gemm expresses), so a product is `heads` gemm calls.
struct Views {
    q: MatView,
    k: MatView,
    v: MatView,
    ctx: MatView,
    att: MatView,
}

impl Views {
    fn new(d: usize, heads: usize, t: usize, fused: bool, h: usize) -> Self {
        let hd = d / heads;
        // q (part 0), k (1) or v (2) of head h as a [T, hd] matrix per example: inside the fused
        // projection's [B, T, 3, H, hd] output, or in its own [B, T, H, hd] buffer
        let part = |p: usize| {
            if fused {
                MatView::row_major(p * d + h * hd, 3 * d).batched(t * 3 * d)
            } else {
                MatView::row_major(h * hd, d).batched(t * d)
            }
        };
        Views {
            q: part(0),
            k: part(1),
            v: part(2),
            ctx: MatView::row_major(h * hd, d).batched(t * d),
            att: MatView::row_major(h * t * t, t).batched(heads * t * t),
        }
    }
}

pub struct SelfAttention<B: Backend> {
    name: String,
    pub proj: Projections<B>,
    pub o: Linear<B>,
    pub heads: usize,
    pub d: usize,
    pub fill: MaskFill,
    /// the q, k and v slots of the last forward (all three the fused projection's output)
    qkv: Option<(Slot, Slot, Slot)>,
    ctx: Option<Slot>,
    att: B::Buf,
    datt: B::Buf,
}

impl<B: Backend> SelfAttention<B> {
    fn check(name: &str, d: usize, heads: usize) -> Result<()> {
        if heads == 0 || d % heads != 0 {
            return Err(KernelError::Layer {
                layer: name.into(),
                msg: format!("width {d} is not divisible by {heads} heads"),
            });
        }
        Ok(())
    }

    /// A fused qkv projection `{prefix}.qkv` and output `{prefix}.o`; masked keys get -inf.
    pub fn new(be: &B, prefix: &str, d: usize, heads: usize) -> Result<Self> {
        Self::check(prefix, d, heads)?;
        let proj = Projections::Fused(Linear::new(be, &format!("{prefix}.qkv"), d, 3 * d)?);
        Self::build(be, prefix, proj, Linear::new(be, &format!("{prefix}.o"), d, d)?, heads, MaskFill::NegInf)
    }

    /// Separate projections named by their module paths (Hugging Face: `...attention.self.query`,
    /// `.key`, `.value`, output `...attention.output.dense`), with the given mask fill.
    pub fn separate(
        be: &B,
        name: &str,
        d: usize,
        heads: usize,
        qkv: [&str; 3],
        o: &str,
        fill: MaskFill,
    ) -> Result<Self> {
        Self::check(name, d, heads)?;
        let proj = Projections::Separate {
            q: Linear::new(be, qkv[0], d, d)?,
            k: Linear::new(be, qkv[1], d, d)?,
            v: Linear::new(be, qkv[2], d, d)?,
        };
        Self::build(be, name, proj, Linear::new(be, o, d, d)?, heads, fill)
    }

    fn build(be: &B, name: &str, proj: Projections<B>, o: Linear<B>, heads: usize, fill: MaskFill) -> Result<Self> {
        let d = o.d_in;
        Ok(SelfAttention {
            name: name.to_string(),
            proj,
            o,
            heads,
            d,
            fill,
            qkv: None,
            ctx: None,
            att: be.zeros(0)?,
            datt: be.zeros(0)?,
        })
    }

    fn hd(&self) -> usize {
        self.d / self.heads
    }
    fn fused(&self) -> bool {
        matches!(self.proj, Projections::Fused(_))
    }
    fn projections(&self) -> Vec<&Linear<B>> {
        match &self.proj {
            Projections::Fused(l) => vec![l],
            Projections::Separate { q, k, v } => vec![q, k, v],
        }
    }
    fn projections_mut(&mut self) -> Vec<&mut Linear<B>> {
        match &mut self.proj {
            Projections::Fused(l) => vec![l],
            Projections::Separate { q, k, v } => vec![q, k, v],
        }
    }
}

impl<B: Backend> Layer<B> for SelfAttention<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        let (b, t) = (s.examples, s.per_example(x));
        let mask = s
            .mask()
            .ok_or_else(|| KernelError::Layer { layer: self.name.clone(), msg: "needs a key mask [B, T]".into() })?;
        if s.be.len(mask) != b * t {
            return Err(KernelError::Tensor {
                tensor: format!("{} mask", self.name),
                expected: format!("[{b}, {t}]"),
                got: format!("{} values", s.be.len(mask)),
            });
        }
        let (qs, ks, vs) = match &mut self.proj {
            Projections::Fused(l) => {
                let o = l.forward(s, x)?;
                (o, o, o)
            }
            Projections::Separate { q, k, v } => (q.forward(s, x)?, k.forward(s, x)?, v.forward(s, x)?),
        };
        self.qkv = Some((qs, ks, vs));
        let (h, hd, be) = (self.heads, self.hd(), s.be);
        let fused = self.fused();
        let views = |head| Views::new(self.d, h, t, fused, head);
        be.resize(&mut self.att, b * h * t * t)?;
        // scores = q k^T (the 1/sqrt(hd) scale is applied inside the softmax)
        for head in 0..h {
            let v = views(head);
            be.gemm(&mut self.att, v.att, s.act(qs)?, v.q, s.act(ks)?, v.k.t(), Gemm::new(t, t, hd).batched(b))?;
        }
        be.masked_softmax_forward(&mut self.att, mask, b, h, t, 1.0 / (hd as f32).sqrt(), self.fill)?;
        let ctx = s.slot(&mut self.ctx)?;
        let (att, d) = (&self.att, self.d);
        s.write_act(ctx, t, |s, c| {
            be.resize(c, b * t * d)?;
            (0..h).try_for_each(|head| {
                let v = views(head);
                be.gemm(c, v.ctx, att, v.att, s.act(vs)?, v.v, Gemm::new(t, hd, t).batched(b))
            })
        })?;
        self.o.forward(s, ctx)
    }

    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (ctx, _) = kept(&self.name, self.ctx, self.ctx)?;
        let (qs, ks, vs) = self
            .qkv
            .ok_or_else(|| KernelError::Layer { layer: self.name.clone(), msg: "backward before forward".into() })?;
        self.o.backward(s, false)?;
        let (b, t, h, hd, be) = (s.examples, s.per_example(ctx), self.heads, self.hd(), s.be);
        let fused = self.fused();
        let views = |head| Views::new(self.d, h, t, fused, head);
        let width = if fused { 3 * self.d } else { self.d };
        let g = Gemm::new(t, hd, t).batched(b);
        // datt = dctx v^T
        be.resize(&mut self.datt, b * h * t * t)?;
        for head in 0..h {
            let v = views(head);
            be.gemm(&mut self.datt, v.att, s.grad(ctx)?, v.ctx, s.act(vs)?, v.v.t(), Gemm::new(t, t, hd).batched(b))?;
        }
        // dv = att^T dctx
        let att = &self.att;
        s.update_grad(vs, |s, dv| {
            be.resize(dv, b * t * width)?;
            (0..h).try_for_each(|head| {
                let v = views(head);
                be.gemm(dv, v.v, att, v.att.t(), s.grad(ctx)?, v.ctx, g)
            })
        })?;
        // dscores (scale included)
        be.softmax_backward(&mut self.datt, &self.att, t, 1.0 / (hd as f32).sqrt())?;
        // dq = dscores k ; dk = dscores^T q
        let datt = &self.datt;
        s.update_grad(qs, |s, dq| {
            be.resize(dq, b * t * width)?;
            (0..h).try_for_each(|head| {
                let v = views(head);
                be.gemm(dq, v.q, datt, v.att, s.act(ks)?, v.k, g)
            })
        })?;
        s.update_grad(ks, |s, dk| {
            be.resize(dk, b * t * width)?;
            (0..h).try_for_each(|head| {
                let v = views(head);
                be.gemm(dk, v.k, datt, v.att.t(), s.act(qs)?, v.q, g)
            })
        })?;
        for (i, p) in self.projections_mut().into_iter().enumerate() {
            p.backward(s, acc || i > 0)?;
        }
        Ok(())
    }

    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        st: NormStrategy,
    ) -> Result<()> {
        for p in self.projections_mut() {
            p.add_group_sq_norms(s, norms, groups, st)?;
        }
        self.o.add_group_sq_norms(s, norms, groups, st)
    }

    fn param_grads(&mut self, s: &Step<B>, reduce: &GradReduce<B>) -> Result<()> {
        for p in self.projections_mut() {
            p.param_grads(s, reduce)?;
        }
        self.o.param_grads(s, reduce)
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        self.projections().into_iter().for_each(|p| p.visit(f));
        self.o.visit(f)
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        match &mut self.proj {
            Projections::Fused(l) => l.visit_mut(f),
            Projections::Separate { q, k, v } => {
                q.visit_mut(f);
                k.visit_mut(f);
                v.visit_mut(f)
            }
        }
        self.o.visit_mut(f)
    }
}
