//! Pooling over time, T being the rows per example of the input and the output one row per example:
//! masked mean pooling, h: [B*T, C], mask: [B, T] -> [B, C] = sum_t h*m / max(sum_t m, 1); and the first
//! row of each example. No parameters.

use super::layer::{kept, Layer, Slot, Step};
use crate::backend::Backend;
use crate::error::{KernelError, Result};

pub struct MaskedMeanPool {
    name: String,
    width: usize,
    x: Option<Slot>,
    out: Option<Slot>,
}

impl MaskedMeanPool {
    pub fn new(name: impl Into<String>, width: usize) -> Self {
        MaskedMeanPool { name: name.into(), width, x: None, out: None }
    }
}

fn mask<'s, B: Backend>(s: &'s Step<B>, name: &str, rows: usize) -> Result<&'s B::Buf> {
    let m = s.mask().ok_or_else(|| KernelError::Layer { layer: name.into(), msg: "needs a key mask [B, T]".into() })?;
    if s.be.len(m) != rows {
        return Err(KernelError::Tensor {
            tensor: format!("{name} mask"),
            expected: format!("[{}, {}]", s.examples, rows / s.examples.max(1)),
            got: format!("{} values", s.be.len(m)),
        });
    }
    Ok(m)
}

impl<B: Backend> Layer<B> for MaskedMeanPool {
    fn name(&self) -> &str {
        &self.name
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        super::layer::check_input(s, &self.name, x, self.width)?;
        let out = s.slot(&mut self.out)?;
        self.x = Some(x);
        let (t, c, name) = (s.per_example(x), self.width, &self.name);
        s.write_act(out, 1, |s, y| {
            let m = mask(s, name, s.rows(x))?;
            s.be.resize(y, s.examples * c)?;
            s.be.masked_mean_pool_forward(y, s.act(x)?, m, t, c)
        })?;
        Ok(out)
    }
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        let (t, c, name) = (s.per_example(x), self.width, &self.name);
        s.write_grad(x, acc, |s, dx| {
            let m = mask(s, name, s.rows(x))?;
            s.be.resize(dx, s.rows(x) * c)?;
            s.be.masked_mean_pool_backward(dx, s.grad(out)?, m, t, c)
        })
    }
    super::layer::no_parameters!();
}

/// The first row of each example: h: [B*T, C] -> [B, C] = h[b, 0, :] (BERT's `[CLS]` token, the input
/// of its pooler), or the last (`FirstRow::last`: a recurrent network's last state). No parameters;
/// the input gradient is dy on those rows, 0 elsewhere.
pub struct FirstRow {
    name: String,
    width: usize,
    last: bool,
    x: Option<Slot>,
    out: Option<Slot>,
}

impl FirstRow {
    pub fn new(name: impl Into<String>, width: usize) -> Self {
        FirstRow { name: name.into(), width, last: false, x: None, out: None }
    }
    /// The last row of each example instead.
    pub fn last(name: impl Into<String>, width: usize) -> Self {
        FirstRow { last: true, ..Self::new(name, width) }
    }
    /// The column of the chosen row in an example's `[T*C]` row.
    fn col(&self, t: usize) -> usize {
        if self.last {
            t.saturating_sub(1) * self.width
        } else {
            0
        }
    }
}

impl<B: Backend> Layer<B> for FirstRow {
    fn name(&self) -> &str {
        &self.name
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        super::layer::check_input(s, &self.name, x, self.width)?;
        if s.per_example(x) == 0 && s.examples > 0 {
            return Err(KernelError::Layer { layer: self.name.clone(), msg: "examples have no rows".into() });
        }
        let out = s.slot(&mut self.out)?;
        self.x = Some(x);
        let (t, c, b) = (s.per_example(x), self.width, s.examples);
        let col = self.col(t);
        s.write_act(out, 1, |s, y| {
            s.be.resize(y, b * c)?;
            // the input as [B, T*C]: C columns of each row
            s.be.copy_columns(y, c, 0, s.act(x)?, t * c, col, c, b)
        })?;
        Ok(out)
    }
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        let (t, c, b) = (s.per_example(x), self.width, s.examples);
        let col = self.col(t);
        s.write_grad(x, acc, |s, dx| {
            s.be.resize(dx, b * t * c)?;
            s.be.fill(dx, 0.0)?;
            s.be.copy_columns(dx, t * c, col, s.grad(out)?, c, 0, c, b)
        })
    }
    super::layer::no_parameters!();
}

/// A zero row before each example's rows: h: [B*T, C] -> [B*(T+1), C]. Followed by learned positions,
/// position 0 is a learned `[CLS]` vector (its embedding and position in one), for CLS pooling of a
/// series; the mask the layers after it read must have the extra column (the model adds it). No
/// parameters; the input gradient is dy without the first rows.
pub struct PrependRow {
    name: String,
    width: usize,
    x: Option<Slot>,
    out: Option<Slot>,
}

impl PrependRow {
    pub fn new(name: impl Into<String>, width: usize) -> Self {
        PrependRow { name: name.into(), width, x: None, out: None }
    }
}

impl<B: Backend> Layer<B> for PrependRow {
    fn name(&self) -> &str {
        &self.name
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        super::layer::check_input(s, &self.name, x, self.width)?;
        let out = s.slot(&mut self.out)?;
        self.x = Some(x);
        let (t, c, b) = (s.per_example(x), self.width, s.examples);
        s.write_act(out, t + 1, |s, y| {
            s.be.resize(y, b * (t + 1) * c)?;
            s.be.fill(y, 0.0)?;
            s.be.copy_columns(y, (t + 1) * c, c, s.act(x)?, t * c, 0, t * c, b)
        })?;
        Ok(out)
    }
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        let (t, c, b) = (s.per_example(x), self.width, s.examples);
        s.write_grad(x, acc, |s, dx| {
            s.be.resize(dx, b * t * c)?;
            s.be.copy_columns(dx, t * c, 0, s.grad(out)?, (t + 1) * c, c, t * c, b)
        })
    }
    super::layer::no_parameters!();
}

/// Each example's rows as one row: h: [B*T, C] -> [B, T*C] (a series into an MLP). No parameters;
/// the values are the same, only the rows per example change.
pub struct Flatten {
    name: String,
    x: Option<Slot>,
    out: Option<Slot>,
}

impl Flatten {
    pub fn new(name: impl Into<String>) -> Self {
        Flatten { name: name.into(), x: None, out: None }
    }
}

impl<B: Backend> Layer<B> for Flatten {
    fn name(&self) -> &str {
        &self.name
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        let out = s.slot(&mut self.out)?;
        self.x = Some(x);
        s.write_act(out, 1, |s, y| {
            s.be.resize(y, s.be.len(s.act(x)?))?;
            s.be.copy(y, s.act(x)?)
        })?;
        Ok(out)
    }
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        s.write_grad(x, acc, |s, dx| {
            s.be.resize(dx, s.be.len(s.grad(out)?))?;
            s.be.copy(dx, s.grad(out)?)
        })
    }
    super::layer::no_parameters!();
}
