//! An elementwise activation as a layer: y = f(x), dx = dy * f'(x). No parameters.

use super::layer::{kept, Layer, Slot, Step};
use crate::backend::{Activation, Backend};
use crate::error::Result;

pub struct Act {
    name: String,
    pub f: Activation,
    x: Option<Slot>,
    out: Option<Slot>,
}

impl Act {
    pub fn new(name: impl Into<String>, f: Activation) -> Self {
        Act { name: name.into(), f, x: None, out: None }
    }
}

impl<B: Backend> Layer<B> for Act {
    fn name(&self) -> &str {
        &self.name
    }
    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        let out = s.slot(&mut self.out)?;
        self.x = Some(x);
        let f = self.f;
        s.write_act(out, s.per_example(x), |s, y| {
            let x = s.act(x)?;
            s.be.resize(y, s.be.len(x))?;
            s.be.activation_forward(f, y, x)
        })?;
        Ok(out)
    }
    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        let f = self.f;
        s.write_grad(x, acc, |s, dx| {
            let dy = s.grad(out)?;
            s.be.resize(dx, s.be.len(dy))?;
            s.be.activation_backward(f, dx, dy, s.act(x)?, s.act(out)?)
        })
    }
    super::layer::no_parameters!();
}
