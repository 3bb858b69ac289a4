//! Multi-head self-attention with a key mask: q, k, v projections (one fused Linear(D, 3D) whose
//! output is PyTorch's `view(B, T, 3, H, hd)`, or three separate Linears as in Hugging Face BERT), then
//! att: [B, H, T, T] = softmax(q k^T / sqrt(hd)) with masked keys filled (see [`MaskFill`]),
//! ctx: [B, T, H, hd] = att v, and out = o(ctx).
//! Backward (=): dctx = o^T dout; datt = dctx v^T; dv = att^T dctx; dscores = softmax'(datt);
//! dq = dscores k; dk = dscores^T q; then each projection's backward into the input gradient.
//!
//! [`Queries::First`] makes a layer whose only query is each example's first token: its
//! output is one row per example (att: [B, H, 1, T]). A model that reads nothing but the `[CLS]` row
//! of its last block (BERT's pooler, CLS pooling) gets that row, to the rounding, at a fraction of the
//! cost: the last block's query, output projection and feed-forward run on B rows instead of B*T, and
//! so do their gradients and per-group norms. Keys and values still cover every token.

use super::layer::{kept, Layer, Slot, Step};
use super::linear::Linear;
use super::param::{GradReduce, Param};
use super::pool::FirstRow;
use crate::backend::{Backend, Gemm, MaskFill, MatView, NormStrategy};
use crate::error::{KernelError, Result};

/// Which tokens query: every one (the output has the input's rows), or only each example's first
/// (the output is one row per example).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Queries {
    #[default]
    All,
    First,
}

/// The q, k and v projections.
pub enum Projections<B: Backend> {
    /// one Linear(D, 3D): q, then k, then v along its output features
    Fused(Linear<B>),
    /// three Linear(D, D)
    Separate { q: Linear<B>, k: Linear<B>, v: Linear<B> },
}

/// Where head `h`'s matrices of every example lie, for `T` keys and `Tq` queries (T, or 1): one
/// strided batch over the B examples per head (what a strided-batched gemm expresses), so a product is
/// `heads` gemm calls.
struct Views {
    q: MatView,
    k: MatView,
    v: MatView,
    ctx: MatView,
    att: MatView,
}

/// The shape of one attention: width, heads, key rows `t` and query rows `tq` per example, whether q,
/// k and v lie in one fused projection's output, and the rows per example of q's own buffer.
#[derive(Clone, Copy)]
struct Shape {
    d: usize,
    heads: usize,
    t: usize,
    tq: usize,
    fused: bool,
    q_rows: usize,
}

impl Shape {
    fn views(&self, h: usize) -> Views {
        let Shape { d, heads, t, tq, fused, q_rows } = *self;
        let hd = d / heads;
        // q (part 0), k (1) or v (2) of head h as a [T, hd] matrix per example: inside the fused
        // projection's [B, T, 3, H, hd] output, or in its own [B, T, H, hd] buffer (q: [B, q_rows, H, hd];
        // its first Tq rows are the queries)
        let part = |p: usize, rows: usize| {
            if fused {
                MatView::row_major(p * d + h * hd, 3 * d).batched(t * 3 * d)
            } else {
                MatView::row_major(h * hd, d).batched(rows * d)
            }
        };
        Views {
            q: part(0, q_rows),
            k: part(1, t),
            v: part(2, t),
            ctx: MatView::row_major(h * hd, d).batched(tq * d),
            att: MatView::row_major(h * tq * t, t).batched(heads * tq * t),
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
    /// Some: only each example's first token queries (see the module docs); with separate projections,
    /// q reads the first rows this layer takes from its input
    first: Option<FirstRow>,
    /// the q, k and v slots of the last forward (all three the fused projection's output)
    qkv: Option<(Slot, Slot, Slot)>,
    ctx: Option<Slot>,
    att: B::Buf,
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
            first: None,
            qkv: None,
            ctx: None,
            att: be.zeros(0)?,
        })
    }

    /// With [`Queries::First`], only each example's first token queries: the output is one row per
    /// example (see the module docs).
    pub fn with_queries(mut self, queries: Queries) -> Self {
        self.first = match queries {
            Queries::All => None,
            Queries::First => Some(FirstRow::new(format!("{}.first_query", self.name), self.d)),
        };
        self
    }

    fn hd(&self) -> usize {
        self.d / self.heads
    }
    fn fused(&self) -> bool {
        matches!(self.proj, Projections::Fused(_))
    }
    /// The shape of the last forward (`t` keys per example, q in slot `qs`).
    fn shape(&self, s: &Step<B>, t: usize, qs: Slot) -> Shape {
        let tq = if self.first.is_some() { t.min(1) } else { t };
        Shape { d: self.d, heads: self.heads, t, tq, fused: self.fused(), q_rows: s.per_example(qs) }
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
        if t == 0 && self.first.is_some() && b > 0 {
            return Err(KernelError::Layer { layer: self.name.clone(), msg: "examples have no rows".into() });
        }
        let (qs, ks, vs) = match &mut self.proj {
            Projections::Fused(l) => {
                let o = l.forward(s, x)?;
                (o, o, o)
            }
            Projections::Separate { q, k, v } => {
                let qx = match &mut self.first {
                    Some(first) => first.forward(s, x)?,
                    None => x,
                };
                (q.forward(s, qx)?, k.forward(s, x)?, v.forward(s, x)?)
            }
        };
        self.qkv = Some((qs, ks, vs));
        let (h, hd, be) = (self.heads, self.hd(), s.be);
        let shape = self.shape(s, t, qs);
        let tq = shape.tq;
        be.resize(&mut self.att, b * h * tq * t)?;
        // scores = q k^T (the 1/sqrt(hd) scale is applied inside the softmax)
        for head in 0..h {
            let v = shape.views(head);
            be.gemm(&mut self.att, v.att, s.act(qs)?, v.q, s.act(ks)?, v.k.t(), Gemm::new(tq, t, hd).batched(b))?;
        }
        be.masked_softmax_forward(&mut self.att, mask, b, h, tq, t, 1.0 / (hd as f32).sqrt(), self.fill)?;
        let ctx = s.slot(&mut self.ctx)?;
        let (att, d) = (&self.att, self.d);
        s.write_act(ctx, tq, |s, c| {
            be.resize(c, b * tq * d)?;
            (0..h).try_for_each(|head| {
                let v = shape.views(head);
                be.gemm(c, v.ctx, att, v.att, s.act(vs)?, v.v, Gemm::new(tq, hd, t).batched(b))
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
        let (b, h, hd, be) = (s.examples, self.heads, self.hd(), s.be);
        let t = s.per_example(ks);
        let shape = self.shape(s, t, qs);
        let (tq, fused) = (shape.tq, shape.fused);
        let width = if fused { 3 * self.d } else { self.d };
        // the score gradients live only in this call: a buffer of the tape's transient pool
        let att = &self.att;
        s.transient(|s, datt| {
            // datt = dctx v^T
            be.resize(datt, b * h * tq * t)?;
            for head in 0..h {
                let v = shape.views(head);
                be.gemm(datt, v.att, s.grad(ctx)?, v.ctx, s.act(vs)?, v.v.t(), Gemm::new(tq, t, hd).batched(b))?;
            }
            // dv = att^T dctx
            s.update_grad(vs, |s, dv| {
                be.resize(dv, b * t * width)?;
                if fused && tq < t {
                    // the q columns of the rows that do not query get no gradient: dq below writes the others
                    be.fill(dv, 0.0)?;
                }
                (0..h).try_for_each(|head| {
                    let v = shape.views(head);
                    be.gemm(dv, v.v, att, v.att.t(), s.grad(ctx)?, v.ctx, Gemm::new(t, hd, tq).batched(b))
                })
            })?;
            // dscores (scale included)
            be.softmax_backward(datt, att, t, 1.0 / (hd as f32).sqrt())?;
            // dq = dscores k ; dk = dscores^T q
            let datt = &*datt;
            s.update_grad(qs, |s, dq| {
                be.resize(dq, b * shape.q_rows * width)?;
                (0..h).try_for_each(|head| {
                    let v = shape.views(head);
                    be.gemm(dq, v.q, datt, v.att, s.act(ks)?, v.k, Gemm::new(tq, hd, t).batched(b))
                })
            })?;
            s.update_grad(ks, |s, dk| {
                be.resize(dk, b * t * width)?;
                (0..h).try_for_each(|head| {
                    let v = shape.views(head);
                    be.gemm(dk, v.k, datt, v.att.t(), s.act(qs)?, v.q, Gemm::new(t, hd, tq).batched(b))
                })
            })
        })?;
        // which projections add to the input gradient: all but the first to write it; with separate
        // projections and first-token queries, q's input is this layer's own slot of first rows, whose
        // gradient then goes into the input's last
        let own_q = self.first.is_some() && !fused;
        let accumulate = if own_q { [false, acc, true] } else { [acc, true, true] };
        for (p, acc) in self.projections_mut().into_iter().zip(accumulate) {
            p.backward(s, acc)?;
        }
        match &mut self.first {
            Some(first) if own_q => first.backward(s, true),
            _ => Ok(()),
        }
    }

    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        st: NormStrategy,
    ) -> Result<()> {
        // q, k and v read the same input (unless q reads the first rows alone): its Gram is shared
        Linear::add_shared_input_group_sq_norms(&mut self.projections_mut(), s, norms, groups, st)?;
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
