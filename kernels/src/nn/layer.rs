//! The layer abstraction: [`Layer`], the [`Tape`] of activations and gradients a step writes, and the
//! two compositions every model is made of, [`Sequential`] and [`Residual`].
//!
//! A layer never receives a buffer it must remember to be given again. `forward(s, x)` reads the
//! activation in slot `x` of the step's tape, writes its output into a slot of its own, and keeps both
//! slot handles; `backward` reads the gradient at its output slot and writes the gradient at its input
//! slot; `add_group_sq_norms` and `param_grads` read the kept slots. The DP contract is then the same
//! for every layer, with nothing for a caller to pass in lockstep:
//! - `add_group_sq_norms(norms, groups)`: `norms[g] +=` the squared norm of privacy group g's gradient
//!   of this layer's parameters, from the activations and output gradients of the one backward pass;
//! - `param_grads(reduce)`: `param.grad =` the sum over groups of `c_g` times group g's gradient
//!   (`c_g = 1` without clipping).
//!
//! A model sums the norms of all its layers before any `param_grads`, since `c_g` needs the whole norm.
//! A layer whose parameters cannot give exact per-group norms says so through `check_private`, and a
//! private step refuses it by name (the habit of Opacus' validator).
//!
//! Slots are allocated on a layer's first `forward` and bound to that tape: one tape per model.
//! Rows: an activation of `E` examples holds `E * per_example` rows (`per_example` is `T` for a
//! sequence, 1 after pooling); every slot records its `per_example`, so a layer knows its rows and its
//! groups' row ranges from its input alone.

use super::param::{GradReduce, Param};
use crate::backend::{Backend, NormStrategy};
use crate::error::{KernelError, Result};

/// A handle to one activation (and its gradient) on one [`Tape`] (the tape's id and an index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot(usize, u64);

impl Slot {
    /// The step's float input (`Step::with_input`); its gradient is never computed.
    pub const INPUT: Slot = Slot(usize::MAX, 0);
}

static TAPES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The activations and gradients of a model's layers, kept between steps so that their memory is
/// reused. Gradient storage can be shared between two slots (a residual's output gradient is its
/// branch's output gradient), which saves a copy per residual.
pub struct Tape<B: Backend> {
    id: u64,
    acts: Vec<Option<B::Buf>>,
    per_example: Vec<usize>,
    /// storage index of each slot's gradient
    grad_of: Vec<usize>,
    grads: Vec<Option<B::Buf>>,
    /// buffers a layer needs only inside one call (an attention's score gradients, the term
    /// [`Step::write_grad`] adds), shared by all the layers of the tape: they run one after another,
    /// so the model holds a few such buffers, not some per layer ([`Step::transient`])
    transient: Vec<B::Buf>,
}

impl<B: Backend> Default for Tape<B> {
    fn default() -> Self {
        let id = TAPES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Tape {
            id,
            acts: Vec::new(),
            per_example: Vec::new(),
            grad_of: Vec::new(),
            grads: Vec::new(),
            transient: Vec::new(),
        }
    }
}

impl<B: Backend> Tape<B> {
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of slots.
    pub fn len(&self) -> usize {
        self.acts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.acts.is_empty()
    }
    /// The activation in `slot` between steps (a model's logits), if it has been written.
    pub fn act(&self, slot: Slot) -> Option<&B::Buf> {
        self.check(slot).ok().and_then(|i| self.acts[i].as_ref())
    }
    /// The index of `slot`, when it is one of this tape's.
    fn check(&self, slot: Slot) -> Result<usize> {
        if slot.1 == self.id && slot.0 < self.acts.len() {
            Ok(slot.0)
        } else {
            Err(in_use(slot, "(of another tape)"))
        }
    }
}

fn in_use(slot: Slot, what: &str) -> KernelError {
    KernelError::Invalid {
        op: "tape",
        msg: format!("slot {} {what} is not readable (being written, or from another tape)", slot.0),
    }
}

/// One step's view of a model: the backend, the batch's shape and inputs, and the tape.
pub struct Step<'a, B: Backend> {
    pub be: &'a B,
    pub examples: usize,
    /// the key mask [B, T] (1 keep, 0 padding) the layers now running read, for attention and pooling
    /// (a [`Masked`] composition switches it for its branch)
    mask: std::cell::Cell<Option<&'a B::Buf>>,
    /// the step's masks by index ([`Step::with_masks`]); `mask` starts as the first
    masks: Vec<&'a B::Buf>,
    /// token ids [B, T]
    pub ids: Option<&'a B::Ids>,
    /// time steps per example of the token ids
    pub id_steps: usize,
    input: Option<&'a B::Buf>,
    input_per_example: usize,
    tape: &'a mut Tape<B>,
}

impl<'a, B: Backend> Step<'a, B> {
    pub fn new(be: &'a B, tape: &'a mut Tape<B>, examples: usize) -> Self {
        Step {
            be,
            examples,
            mask: std::cell::Cell::new(None),
            masks: Vec::new(),
            ids: None,
            id_steps: 0,
            input: None,
            input_per_example: 0,
            tape,
        }
    }
    /// The float input, `examples * per_example` rows, read through [`Slot::INPUT`].
    pub fn with_input(mut self, x: &'a B::Buf, per_example: usize) -> Self {
        self.input = Some(x);
        self.input_per_example = per_example;
        self
    }
    pub fn with_mask(self, mask: &'a B::Buf) -> Self {
        self.with_masks(vec![mask])
    }
    /// Several masks, for models whose branches read sequences of different lengths (a lab series
    /// and a note): a [`Masked`] composition selects one by index for its branch; the first is the
    /// default.
    pub fn with_masks(mut self, masks: Vec<&'a B::Buf>) -> Self {
        self.mask.set(masks.first().copied());
        self.masks = masks;
        self
    }
    /// The key mask the running layer reads.
    pub fn mask(&self) -> Option<&'a B::Buf> {
        self.mask.get()
    }
    /// Runs `f` with mask `index` as the step's mask, then restores the previous one.
    fn under_mask<R>(&self, name: &str, index: usize, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let m = self.masks.get(index).copied().ok_or_else(|| KernelError::Layer {
            layer: name.to_string(),
            msg: format!("reads mask {index}, the step has {}", self.masks.len()),
        })?;
        let prev = self.mask.replace(Some(m));
        let r = f();
        self.mask.set(prev);
        r
    }
    pub fn with_ids(mut self, ids: &'a B::Ids, steps: usize) -> Self {
        self.ids = Some(ids);
        self.id_steps = steps;
        self
    }

    /// The slot in `kept`, allocated on first use on this step's tape (a layer moved to another
    /// tape gets new slots there).
    pub fn slot(&mut self, kept: &mut Option<Slot>) -> Result<Slot> {
        if let Some(s) = *kept {
            if self.tape.check(s).is_ok() {
                return Ok(s);
            }
        }
        let s = Slot(self.tape.acts.len(), self.tape.id);
        self.tape.acts.push(Some(self.be.zeros(0)?));
        self.tape.per_example.push(0);
        self.tape.grad_of.push(self.tape.grads.len());
        self.tape.grads.push(Some(self.be.zeros(0)?));
        *kept = Some(s);
        Ok(s)
    }

    /// From now on, the gradient of `slot` (and of every slot sharing its storage) is stored with the
    /// gradient of `with` (same buffer).
    pub fn share_grad(&mut self, slot: Slot, with: Slot) -> Result<()> {
        if slot == Slot::INPUT || with == Slot::INPUT {
            return Err(KernelError::Invalid { op: "tape", msg: "the input's gradient is not kept".into() });
        }
        let (i, j) = (self.tape.check(slot)?, self.tape.check(with)?);
        // every slot already sharing `slot`'s storage follows it (a residual whose branch ends in a
        // residual: the inner one shared first)
        let (old, new) = (self.tape.grad_of[i], self.tape.grad_of[j]);
        self.tape.grad_of.iter_mut().filter(|g| **g == old).for_each(|g| *g = new);
        Ok(())
    }

    /// The activation in `slot`.
    pub fn act(&self, slot: Slot) -> Result<&B::Buf> {
        if slot == Slot::INPUT {
            return self.input.ok_or_else(|| in_use(slot, "(the step has no float input)"));
        }
        self.tape.acts[self.tape.check(slot)?].as_ref().ok_or_else(|| in_use(slot, "activation"))
    }
    /// Rows per example of the activation in `slot`.
    pub fn per_example(&self, slot: Slot) -> usize {
        if slot == Slot::INPUT {
            return self.input_per_example;
        }
        self.tape.check(slot).map_or(0, |i| self.tape.per_example[i])
    }
    /// Rows of the activation in `slot`.
    pub fn rows(&self, slot: Slot) -> usize {
        self.examples * self.per_example(slot)
    }
    /// The gradient at `slot`.
    pub fn grad(&self, slot: Slot) -> Result<&B::Buf> {
        let i = self.grad_index(slot)?;
        self.tape.grads[i].as_ref().ok_or_else(|| in_use(slot, "gradient"))
    }
    /// Whether anyone reads the gradient at `slot` (not at the step's input).
    pub fn needs_grad(&self, slot: Slot) -> bool {
        slot != Slot::INPUT
    }

    fn grad_index(&self, slot: Slot) -> Result<usize> {
        Ok(self.tape.grad_of[self.tape.check(slot)?])
    }

    /// Writes the activation in `slot` (`f` gets the step, to read other slots, and the buffer), and
    /// records its rows per example.
    pub fn write_act(
        &mut self,
        slot: Slot,
        per_example: usize,
        f: impl FnOnce(&Self, &mut B::Buf) -> Result<()>,
    ) -> Result<()> {
        let i = self.tape.check(slot)?;
        let mut buf = self.tape.acts[i].take().ok_or_else(|| in_use(slot, "activation"))?;
        let r = f(self, &mut buf);
        self.tape.acts[i] = Some(buf);
        self.tape.per_example[i] = per_example;
        r
    }

    /// Gives `f` the gradient buffer at `slot` to update as it sees fit (a layer that accumulates
    /// natively, like a matmul with beta = 1). Nothing happens for the step's input.
    pub fn update_grad(&mut self, slot: Slot, f: impl FnOnce(&Self, &mut B::Buf) -> Result<()>) -> Result<()> {
        if slot == Slot::INPUT {
            return Ok(());
        }
        let i = self.grad_index(slot)?;
        let mut buf = self.tape.grads[i].take().ok_or_else(|| in_use(slot, "gradient"))?;
        let r = f(self, &mut buf);
        self.tape.grads[i] = Some(buf);
        r
    }

    /// Sets (`acc` false) or adds to (`acc` true) the gradient at `slot` what `f` writes into the
    /// buffer it is given (`f` overwrites, resizing as needed). Nothing happens for the step's input.
    pub fn write_grad(
        &mut self,
        slot: Slot,
        acc: bool,
        f: impl FnOnce(&Self, &mut B::Buf) -> Result<()>,
    ) -> Result<()> {
        if !acc {
            return self.update_grad(slot, f);
        }
        if slot == Slot::INPUT {
            return Ok(());
        }
        self.transient(|s, tmp| {
            f(s, tmp)?;
            s.update_grad(slot, |s, g| s.be.add_assign(g, tmp))
        })
    }

    /// Runs `f` with a buffer of the tape's transient pool (contents unspecified; `f` resizes it), for
    /// what a layer needs only during this call: the next layer reuses its memory.
    pub fn transient<R>(&mut self, f: impl FnOnce(&mut Self, &mut B::Buf) -> Result<R>) -> Result<R> {
        let mut buf = match self.tape.transient.pop() {
            Some(b) => b,
            None => self.be.zeros(0)?,
        };
        let r = f(self, &mut buf);
        self.tape.transient.push(buf);
        r
    }

    /// Sets the gradient at `slot` to `g` (the loss gradient at a model's output).
    pub fn set_grad(&mut self, slot: Slot, g: &B::Buf) -> Result<()> {
        self.update_grad(slot, |s, buf| {
            s.be.resize(buf, s.be.len(g))?;
            s.be.copy(buf, g)
        })
    }
}

/// A layer: forward keeps what its backward needs, backward gives the input gradient, and the DP
/// contract of the module docs. Parameters are visited in a fixed order under their full names
/// (PyTorch / Hugging Face module paths), the one place where a model maps to a checkpoint.
pub trait Layer<B: Backend>: Send {
    /// The module path (`blocks.0.att`), for errors and refusals.
    fn name(&self) -> &str;
    /// Reads the activation at `x`, writes this layer's output slot and returns it.
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot>;
    /// From the gradient at the output slot, sets (`acc` false) or adds to (`acc` true) the gradient
    /// at the input slot of the last forward.
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()>;
    /// `norms[g] +=` group g's squared gradient norm over this layer's parameters.
    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        strategy: NormStrategy,
    ) -> Result<()>;
    /// Every parameter's `grad` = the (clipped) sum over groups.
    fn param_grads(&mut self, s: &Step<B>, reduce: &GradReduce<B>) -> Result<()>;
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>));
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>));
    /// Ok when every parameter's per-group norm is exact; otherwise the error names the layer.
    fn check_private(&self) -> Result<()> {
        Ok(())
    }
}

/// The `Layer` methods of a layer without trainable parameters: no gradient norms, no parameter
/// gradients, nothing to visit. Each such layer says so with this macro rather than through trait
/// defaults, so that a layer with parameters can never skip clipping and noise by leaving them out.
macro_rules! no_parameters {
    () => {
        fn add_group_sq_norms(
            &mut self,
            _: &$crate::nn::layer::Step<B>,
            _: &mut B::Buf,
            _: &B::Groups,
            _: $crate::backend::NormStrategy,
        ) -> $crate::error::Result<()> {
            Ok(())
        }
        fn param_grads(
            &mut self,
            _: &$crate::nn::layer::Step<B>,
            _: &$crate::nn::param::GradReduce<B>,
        ) -> $crate::error::Result<()> {
            Ok(())
        }
        fn visit<'a>(&'a self, _: &mut dyn FnMut(&'a $crate::nn::param::Param<B>)) {}
        fn visit_mut<'a>(&'a mut self, _: &mut dyn FnMut(&'a mut $crate::nn::param::Param<B>)) {}
    };
}
pub(crate) use no_parameters;

/// The slots a layer kept from its last forward, or the error naming it.
pub(crate) fn kept(name: &str, x: Option<Slot>, out: Option<Slot>) -> Result<(Slot, Slot)> {
    match (x, out) {
        (Some(x), Some(o)) => Ok((x, o)),
        _ => Err(KernelError::Layer { layer: name.to_string(), msg: "backward or gradients before forward".into() }),
    }
}

/// Checks that the activation at `x` holds `rows x width` values, naming the layer's input.
pub(crate) fn check_input<B: Backend>(s: &Step<B>, name: &str, x: Slot, width: usize) -> Result<()> {
    let (rows, got) = (s.rows(x), s.be.len(s.act(x)?));
    if rows * width != got {
        let got_shape =
            if rows > 0 && got % rows == 0 { format!("[{rows}, {}]", got / rows) } else { format!("{got} values") };
        return Err(KernelError::Tensor {
            tensor: format!("{name} input"),
            expected: format!("[{rows}, {width}]"),
            got: got_shape,
        });
    }
    Ok(())
}

/// Layers applied one after another: the output of each is the input of the next. When the input
/// needs no gradient (the step's input or token ids), the backward pass stops at the first layer
/// with trainable parameters: the frozen layers before it need no gradient at all.
pub struct Sequential<B: Backend> {
    name: String,
    pub layers: Vec<Box<dyn Layer<B>>>,
    x: Option<Slot>,
}

impl<B: Backend> Sequential<B> {
    pub fn new(name: impl Into<String>, layers: Vec<Box<dyn Layer<B>>>) -> Result<Self> {
        let name = name.into();
        if layers.is_empty() {
            return Err(KernelError::Layer { layer: name, msg: "a Sequential needs at least one layer".into() });
        }
        Ok(Sequential { name, layers, x: None })
    }
}

/// Whether any parameter of `layer` trains.
pub fn trains<B: Backend>(layer: &dyn Layer<B>) -> bool {
    let mut any = false;
    layer.visit(&mut |p| any |= !p.frozen);
    any
}

impl<B: Backend> Layer<B> for Sequential<B> {
    fn name(&self) -> &str {
        &self.name
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        self.x = Some(x);
        self.layers.iter_mut().try_fold(x, |h, l| l.forward(s, h))
    }
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let x = self.x.ok_or_else(|| KernelError::Layer {
            layer: self.name.clone(),
            msg: "backward or gradients before forward".into(),
        })?;
        let first = match s.needs_grad(x) {
            true => 0,
            false => match self.layers.iter().position(|l| trains(l.as_ref())) {
                Some(i) => i,
                None => return Ok(()),
            },
        };
        // inner slots belong to this sequence alone: only the input gradient of the sequence's first
        // layer accumulates (after a skipped prefix, the first layer run writes an inner slot)
        self.layers[first..].iter_mut().enumerate().rev().try_for_each(|(i, l)| l.backward(s, acc && first + i == 0))
    }
    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        st: NormStrategy,
    ) -> Result<()> {
        self.layers.iter_mut().try_for_each(|l| l.add_group_sq_norms(s, norms, groups, st))
    }
    fn param_grads(&mut self, s: &Step<B>, reduce: &GradReduce<B>) -> Result<()> {
        self.layers.iter_mut().try_for_each(|l| l.param_grads(s, reduce))
    }
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        self.layers.iter().for_each(|l| l.visit(f))
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.layers.iter_mut().for_each(|l| l.visit_mut(f))
    }
    fn check_private(&self) -> Result<()> {
        self.layers.iter().try_for_each(|l| l.check_private())
    }
}

/// `y = x + f(x)`. Post-LN blocks are `Sequential[Residual(f), LayerNorm]`, pre-LN ones put the
/// LayerNorm first inside `f`.
pub struct Residual<B: Backend> {
    name: String,
    pub inner: Box<dyn Layer<B>>,
    /// Some: `f` gives one row per example (an attention whose only query is the first token) and
    /// the skip adds x's first rows ([`Residual::first_row`])
    first: Option<super::pool::FirstRow>,
    x: Option<Slot>,
    out: Option<Slot>,
}

impl<B: Backend> Residual<B> {
    pub fn new(name: impl Into<String>, inner: Box<dyn Layer<B>>) -> Self {
        Residual { name: name.into(), inner, first: None, x: None, out: None }
    }
    /// `y = x[first row of each example] + f(x)`, for an `f` that gives one row per example: the
    /// residual around an attention with [`super::attention::Queries::First`].
    pub fn first_row(name: impl Into<String>, inner: Box<dyn Layer<B>>, width: usize) -> Self {
        let name = name.into();
        let first = Some(super::pool::FirstRow::new(format!("{name}.first_row"), width));
        Residual { first, ..Self::new(name, inner) }
    }
}

impl<B: Backend> Layer<B> for Residual<B> {
    fn name(&self) -> &str {
        &self.name
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        let fx = self.inner.forward(s, x)?;
        // the skip: x, or its first rows
        let skip = match &mut self.first {
            Some(first) => first.forward(s, x)?,
            None => x,
        };
        if s.be.len(s.act(fx)?) != s.be.len(s.act(skip)?) || s.per_example(fx) != s.per_example(skip) {
            return Err(KernelError::Tensor {
                tensor: format!("{} branch output", self.name),
                expected: format!("{} values like its input", s.be.len(s.act(skip)?)),
                got: format!("{} values", s.be.len(s.act(fx)?)),
            });
        }
        let out = s.slot(&mut self.out)?;
        // the branch's output gradient is this layer's output gradient: one buffer, no copy (and so is
        // the first rows' gradient)
        s.share_grad(fx, out)?;
        if skip != x {
            s.share_grad(skip, out)?;
        }
        self.x = Some(x);
        s.write_act(out, s.per_example(skip), |s, y| {
            s.be.resize(y, s.be.len(s.act(skip)?))?;
            s.be.add(y, s.act(skip)?, s.act(fx)?)
        })?;
        Ok(out)
    }
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        self.inner.backward(s, acc)?;
        match &mut self.first {
            Some(first) => first.backward(s, true),
            None => s.update_grad(x, |s, dx| s.be.add_assign(dx, s.grad(out)?)),
        }
    }
    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        st: NormStrategy,
    ) -> Result<()> {
        self.inner.add_group_sq_norms(s, norms, groups, st)
    }
    fn param_grads(&mut self, s: &Step<B>, reduce: &GradReduce<B>) -> Result<()> {
        self.inner.param_grads(s, reduce)
    }
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        self.inner.visit(f)
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.inner.visit_mut(f)
    }
    fn check_private(&self) -> Result<()> {
        self.inner.check_private()
    }
}

/// `y = [a(x), b(x)]` along the last axis: two branches of the same rows per example (after pooling,
/// one row per example: e.g. a lab-series encoder and a notes encoder feeding one head).
pub struct Concat<B: Backend> {
    name: String,
    pub a: Box<dyn Layer<B>>,
    pub b: Box<dyn Layer<B>>,
    widths: (usize, usize),
    outs: Option<(Slot, Slot)>,
    out: Option<Slot>,
}

impl<B: Backend> Concat<B> {
    pub fn new(name: impl Into<String>, a: Box<dyn Layer<B>>, b: Box<dyn Layer<B>>) -> Self {
        Concat { name: name.into(), a, b, widths: (0, 0), outs: None, out: None }
    }
}

impl<B: Backend> Layer<B> for Concat<B> {
    fn name(&self) -> &str {
        &self.name
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        let ya = self.a.forward(s, x)?;
        let yb = self.b.forward(s, x)?;
        let (pe, rows) = (s.per_example(ya), s.rows(ya));
        if pe != s.per_example(yb) {
            return Err(KernelError::Tensor {
                tensor: format!("{} inputs", self.name),
                expected: format!("the same rows per example ({pe})"),
                got: format!("{} rows per example", s.per_example(yb)),
            });
        }
        // an empty batch (Poisson sampling gives them) has no rows to tell the widths: it copies nothing
        if rows > 0 {
            self.widths = (s.be.len(s.act(ya)?) / rows, s.be.len(s.act(yb)?) / rows);
        }
        let (wa, wb) = self.widths;
        self.outs = Some((ya, yb));
        let out = s.slot(&mut self.out)?;
        s.write_act(out, pe, |s, y| {
            s.be.resize(y, rows * (wa + wb))?;
            s.be.copy_columns(y, wa + wb, 0, s.act(ya)?, wa, 0, wa, rows)?;
            s.be.copy_columns(y, wa + wb, wa, s.act(yb)?, wb, 0, wb, rows)
        })?;
        Ok(out)
    }
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let out = self.out;
        let ((ya, yb), out) = match (self.outs, out) {
            (Some(o), Some(out)) => (o, out),
            _ => return kept(&self.name, None, None).map(|_| ()),
        };
        let (wa, wb) = self.widths;
        let rows = s.rows(out);
        for (slot, col, w) in [(ya, 0, wa), (yb, wa, wb)] {
            s.update_grad(slot, |s, g| {
                s.be.resize(g, rows * w)?;
                s.be.copy_columns(g, w, 0, s.grad(out)?, wa + wb, col, w, rows)
            })?;
        }
        self.a.backward(s, acc)?;
        self.b.backward(s, true)
    }
    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        st: NormStrategy,
    ) -> Result<()> {
        self.a.add_group_sq_norms(s, norms, groups, st)?;
        self.b.add_group_sq_norms(s, norms, groups, st)
    }
    fn param_grads(&mut self, s: &Step<B>, reduce: &GradReduce<B>) -> Result<()> {
        self.a.param_grads(s, reduce)?;
        self.b.param_grads(s, reduce)
    }
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        self.a.visit(f);
        self.b.visit(f)
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.a.visit_mut(f);
        self.b.visit_mut(f)
    }
    fn check_private(&self) -> Result<()> {
        self.a.check_private()?;
        self.b.check_private()
    }
}

/// A branch that reads mask `index` of the step (a lab series' or a note's) instead of the default:
/// every call into `inner` runs with that mask, and the previous one is restored after.
pub struct Masked<B: Backend> {
    name: String,
    pub index: usize,
    pub inner: Box<dyn Layer<B>>,
}

impl<B: Backend> Masked<B> {
    pub fn new(name: impl Into<String>, index: usize, inner: Box<dyn Layer<B>>) -> Self {
        Masked { name: name.into(), index, inner }
    }
}

impl<B: Backend> Layer<B> for Masked<B> {
    fn name(&self) -> &str {
        &self.name
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        let m = s.masks.get(self.index).copied().ok_or_else(|| KernelError::Layer {
            layer: self.name.clone(),
            msg: format!("reads mask {}, the step has {}", self.index, s.masks.len()),
        })?;
        let prev = s.mask.replace(Some(m));
        let r = self.inner.forward(s, x);
        s.mask.set(prev);
        r
    }
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let m = s.masks.get(self.index).copied();
        let prev = s.mask.replace(m);
        let r = self.inner.backward(s, acc);
        s.mask.set(prev);
        r
    }
    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        st: NormStrategy,
    ) -> Result<()> {
        s.under_mask(&self.name, self.index, || self.inner.add_group_sq_norms(s, norms, groups, st))
    }
    fn param_grads(&mut self, s: &Step<B>, reduce: &GradReduce<B>) -> Result<()> {
        s.under_mask(&self.name, self.index, || self.inner.param_grads(s, reduce))
    }
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        self.inner.visit(f)
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.inner.visit_mut(f)
    }
    fn check_private(&self) -> Result<()> {
        self.inner.check_private()
    }
}

/// A layer whose parameters do not train (a pretrained encoder's embeddings or first layers, frozen
/// to fine-tune the rest with less noise): it runs forward and passes gradients through, but has no
/// gradient norms and no parameter gradients, and its parameters are marked `frozen` so that the
/// step adds no noise to them and the optimizer leaves them as they are.
pub struct Frozen<B: Backend> {
    pub inner: Box<dyn Layer<B>>,
}

impl<B: Backend> Frozen<B> {
    pub fn new(mut inner: Box<dyn Layer<B>>) -> Self {
        inner.visit_mut(&mut |p| p.frozen = true);
        Frozen { inner }
    }
}

impl<B: Backend> Layer<B> for Frozen<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        self.inner.forward(s, x)
    }
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        self.inner.backward(s, acc)
    }
    fn add_group_sq_norms(&mut self, _: &Step<B>, _: &mut B::Buf, _: &B::Groups, _: NormStrategy) -> Result<()> {
        Ok(())
    }
    fn param_grads(&mut self, _: &Step<B>, _: &GradReduce<B>) -> Result<()> {
        Ok(())
    }
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        self.inner.visit(f)
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.inner.visit_mut(f)
    }
}
