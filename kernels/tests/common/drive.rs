//! Drives one layer through the calls of a step on any backend, from host data: forward, backward
//! from a given output gradient, per-group norms, (clipped) parameter gradients. A `Source` layer
//! copies the float input into a tape slot first, so that the input gradient is computed and readable.
#![allow(dead_code)]

use kernels::nn::{GradReduce, Layer, Param, Slot, Step, Tape};
use kernels::{Backend, GroupRows, NormStrategy, Result};

/// Copies the step's float input into a slot of its own (no parameters, no input gradient).
struct Source {
    out: Option<Slot>,
}

impl<B: Backend> Layer<B> for Source {
    fn name(&self) -> &str {
        "source"
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        let out = s.slot(&mut self.out)?;
        s.write_act(out, s.per_example(x), |s, y| {
            s.be.resize(y, s.be.len(s.act(x)?))?;
            s.be.copy(y, s.act(x)?)
        })?;
        Ok(out)
    }
    fn backward(&mut self, _: &mut Step<B>, _: bool) -> Result<()> {
        Ok(())
    }
    fn add_group_sq_norms(&mut self, _: &Step<B>, _: &mut B::Buf, _: &B::Groups, _: NormStrategy) -> Result<()> {
        Ok(())
    }
    fn param_grads(&mut self, _: &Step<B>, _: &GradReduce<B>) -> Result<()> {
        Ok(())
    }
    fn visit<'a>(&'a self, _: &mut dyn FnMut(&'a Param<B>)) {}
    fn visit_mut<'a>(&'a mut self, _: &mut dyn FnMut(&'a mut Param<B>)) {}
}

/// A batch on the host: `examples`, float input rows of `per_example` rows each, optional mask [B, T]
/// and token ids [B, T].
#[derive(Clone, Debug, Default)]
pub struct HostBatch {
    pub examples: usize,
    pub x: Vec<f32>,
    pub per_example: usize,
    pub mask: Option<Vec<f32>>,
    pub ids: Option<(Vec<u32>, usize)>,
}

impl HostBatch {
    /// The examples of groups `g` of `layout` (rows, mask rows and ids of those examples).
    pub fn sub(&self, layout: &GroupRows, g: usize) -> HostBatch {
        let ex = layout.offsets[g]..layout.offsets[g + 1];
        let n = ex.len();
        let width =
            if self.examples * self.per_example == 0 { 0 } else { self.x.len() / (self.examples * self.per_example) };
        let rows = |pe: usize, w: usize| ex.start * pe * w..ex.end * pe * w;
        HostBatch {
            examples: n,
            x: self.x[rows(self.per_example, width)].to_vec(),
            per_example: self.per_example,
            mask: self.mask.as_ref().map(|m| {
                let t = m.len() / self.examples;
                m[rows(t, 1)].to_vec()
            }),
            ids: self.ids.as_ref().map(|(ids, t)| (ids[rows(*t, 1)].to_vec(), *t)),
        }
    }
}

pub struct Driver<B: Backend> {
    pub tape: Tape<B>,
    source: Source,
    pub out: Option<Slot>,
    pub input: Option<Slot>,
    x: B::Buf,
    mask: B::Buf,
    ids: B::Ids,
    has_mask: bool,
    id_steps: Option<usize>,
    examples: usize,
    per_example: usize,
}

impl<B: Backend> Driver<B> {
    pub fn new(be: &B) -> Self {
        Driver {
            tape: Tape::new(),
            source: Source { out: None },
            out: None,
            input: None,
            x: be.zeros(0).unwrap(),
            mask: be.zeros(0).unwrap(),
            ids: be.upload_ids(&[]).unwrap(),
            has_mask: false,
            id_steps: None,
            examples: 0,
            per_example: 0,
        }
    }

    fn load(&mut self, be: &B, b: &HostBatch) {
        self.x = be.upload(&b.x).unwrap();
        self.has_mask = b.mask.is_some();
        if let Some(m) = &b.mask {
            self.mask = be.upload(m).unwrap();
        }
        self.id_steps = b.ids.as_ref().map(|(_, t)| *t);
        if let Some((ids, _)) = &b.ids {
            self.ids = be.upload_ids(ids).unwrap();
        }
        self.examples = b.examples;
        self.per_example = b.per_example;
    }

    fn with_step<R>(&mut self, be: &B, f: impl FnOnce(&mut Step<B>, &mut Source) -> R) -> R {
        let mut s = Step::new(be, &mut self.tape, self.examples).with_input(&self.x, self.per_example);
        if self.has_mask {
            s = s.with_mask(&self.mask);
        }
        if let Some(t) = self.id_steps {
            s = s.with_ids(&self.ids, t);
        }
        f(&mut s, &mut self.source)
    }

    /// Runs forward on `b` (through the source when `track_input`) and returns the output.
    pub fn forward(&mut self, be: &B, layer: &mut dyn Layer<B>, b: &HostBatch, track_input: bool) -> Result<Vec<f32>> {
        self.load(be, b);
        let (input, out) = self.with_step(be, |s, src| {
            let x = if track_input { src.forward(s, Slot::INPUT)? } else { Slot::INPUT };
            Ok::<_, kernels::KernelError>((x, layer.forward(s, x)?))
        })?;
        self.input = Some(input);
        self.out = Some(out);
        be.download(self.tape.act(out).unwrap())
    }

    /// Backward from output gradient `dy`; returns the input gradient when the input is tracked.
    pub fn backward(&mut self, be: &B, layer: &mut dyn Layer<B>, dy: &[f32]) -> Result<Option<Vec<f32>>> {
        let (input, out) = (self.input.unwrap(), self.out.unwrap());
        let dy = be.upload(dy)?;
        self.with_step(be, |s, _| {
            s.set_grad(out, &dy)?;
            layer.backward(s, false)?;
            if input == Slot::INPUT {
                return Ok(None);
            }
            Ok(Some(be.download(s.grad(input)?)?))
        })
    }

    pub fn norms(
        &mut self,
        be: &B,
        layer: &mut dyn Layer<B>,
        layout: &GroupRows,
        strategy: NormStrategy,
    ) -> Result<Vec<f32>> {
        let groups = be.groups(layout)?;
        let mut norms = be.zeros(layout.groups())?;
        self.with_step(be, |s, _| layer.add_group_sq_norms(s, &mut norms, &groups, strategy))?;
        be.download(&norms)
    }

    /// Parameter gradients (clipped by `factors` when given), downloaded in visiting order.
    pub fn param_grads(
        &mut self,
        be: &B,
        layer: &mut dyn Layer<B>,
        layout: &GroupRows,
        factors: Option<&[f32]>,
    ) -> Result<Vec<Vec<f32>>> {
        let groups = be.groups(layout)?;
        let f = factors.map(|f| be.upload(f)).transpose()?;
        self.with_step(be, |s, _| layer.param_grads(s, &GradReduce { groups: &groups, factors: f.as_ref() }))?;
        grads(be, layer)
    }
}

/// Every parameter's gradient, in visiting order.
pub fn grads<B: Backend>(be: &B, layer: &dyn Layer<B>) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    let mut err = Ok(());
    layer.visit(&mut |p| match be.download(&p.grad) {
        Ok(v) => out.push(v),
        Err(e) => err = Err(e),
    });
    err.map(|()| out)
}

/// Every parameter's value, in visiting order.
pub fn values<B: Backend>(be: &B, layer: &dyn Layer<B>) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    layer.visit(&mut |p| out.push(be.download(&p.value).unwrap()));
    out
}

/// Sets parameter `i` (visiting order) to `v`.
pub fn set_value<B: Backend>(be: &B, layer: &mut dyn Layer<B>, i: usize, v: &[f32]) {
    let mut k = 0;
    layer.visit_mut(&mut |p| {
        if k == i {
            p.value = be.upload(v).unwrap();
        }
        k += 1;
    });
}

/// Fills every parameter with seeded values in [-scale, scale] (+1 for LayerNorm-style ones).
pub fn randomize<B: Backend>(be: &B, layer: &mut dyn Layer<B>, rng: &mut super::Rng, scale: f32) {
    layer.visit_mut(&mut |p| {
        let ones = p.init == kernels::nn::ParamInit::Ones;
        let v: Vec<f32> = rng.vec(p.numel(), scale).into_iter().map(|v| if ones { 1.0 + v } else { v }).collect();
        p.value = be.upload(&v).unwrap();
    });
}
