//! Embeddings: the sum of one or more tables looked up by ids: y: [B*T, D] = sum_k table_k[ids_k].
//! The ids of a table are the step's token ids, the position of each row in its example (learned
//! positions), or one constant id (Hugging Face's token types, all 0 for one segment).
//! No input gradient; a table's gradient is a (clipped) scatter-add of dy, and a group's squared norm
//! sums dy_t . dy_s over the group's pairs of rows with the same id.

use super::layer::{kept, Layer, Slot, Step};
use super::param::{GradReduce, Param, ParamInit};
use crate::backend::{Backend, NormStrategy};
use crate::error::{KernelError, Result};

/// Where a table's ids come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ids {
    /// the step's token ids [B, T]
    Tokens,
    /// t for row (b, t): learned positions
    Positions,
    /// t + offset for row (b, t): RoBERTa's positions, which start after its padding id
    OffsetPositions(u32),
    /// the same id for every row
    Constant(u32),
}

pub struct Table<B: Backend> {
    pub table: Param<B>,
    pub vocab: usize,
    pub ids: Ids,
    /// the uploaded ids of a `Positions` or `Constant` table, and the (B, T) they were made for
    made: Option<(B::Ids, usize, usize)>,
}

pub struct Embeddings<B: Backend> {
    name: String,
    pub tables: Vec<Table<B>>,
    pub d: usize,
    /// y = x + the tables (learned positions added to a series' rows), T from the input's rows
    add_input: bool,
    x: Option<Slot>,
    out: Option<Slot>,
}

impl<B: Backend> Embeddings<B> {
    /// `tables`: (module path, vocabulary, ids) of each table, e.g. `("embed", 8000, Ids::Tokens)`.
    pub fn new(be: &B, name: &str, d: usize, tables: &[(&str, usize, Ids)]) -> Result<Self> {
        if tables.is_empty() {
            return Err(KernelError::Layer { layer: name.into(), msg: "needs at least one table".into() });
        }
        let tables = tables
            .iter()
            .map(|&(prefix, vocab, ids)| {
                Ok(Table {
                    table: Param::new(be, format!("{prefix}.weight"), &[vocab, d], ParamInit::Normal { std: 1.0 })?,
                    vocab,
                    ids,
                    made: None,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Embeddings { name: name.to_string(), tables, d, add_input: false, x: None, out: None })
    }

    /// Tables added to the input rows `[B*T, d]` (T the input's rows per example) rather than looked
    /// up alone: learned positions of a lab series, `("pos", max_len, Ids::Positions)`. Token ids are
    /// not allowed (their steps are the note's, not the input's). The input gradient is dy.
    pub fn added(be: &B, name: &str, d: usize, tables: &[(&str, usize, Ids)]) -> Result<Self> {
        if tables.iter().any(|t| t.2 == Ids::Tokens) {
            return Err(KernelError::Layer {
                layer: name.into(),
                msg: "tables added to an input take no token ids".into(),
            });
        }
        Ok(Embeddings { add_input: true, ..Self::new(be, name, d, tables)? })
    }

    /// The step's (B, T) and checked token ids; `x` is the input (T of an `added` layer).
    fn shape<'a>(&self, s: &Step<'a, B>, x: Slot) -> Result<(usize, usize, Option<&'a B::Ids>)> {
        if self.add_input {
            return Ok((s.examples, s.per_example(x), None));
        }
        let (b, t) = (s.examples, s.id_steps);
        if let Some(ids) = s.ids {
            if s.be.ids_len(ids) != b * t {
                return Err(KernelError::Tensor {
                    tensor: format!("{} token ids", self.name),
                    expected: format!("[{b}, {t}]"),
                    got: format!("{} ids", s.be.ids_len(ids)),
                });
            }
        }
        Ok((b, t, s.ids))
    }
}

fn offset(kind: Ids) -> usize {
    match kind {
        Ids::OffsetPositions(o) => o as usize,
        _ => 0,
    }
}

/// The ids of a table for a (B, T) batch: the step's tokens, or the table's own (`made`), uploaded
/// once per shape.
#[allow(clippy::too_many_arguments)]
fn ids_of<'a, B: Backend>(
    be: &B,
    kind: Ids,
    vocab: usize,
    table: &str,
    made: &'a mut Option<(B::Ids, usize, usize)>,
    tokens: Option<&'a B::Ids>,
    b: usize,
    steps: usize,
    layer: &str,
) -> Result<&'a B::Ids> {
    let make = |r: usize| match kind {
        Ids::Positions => (r % steps.max(1)) as u32,
        Ids::OffsetPositions(o) => (r % steps.max(1)) as u32 + o,
        Ids::Constant(c) => c,
        Ids::Tokens => 0,
    };
    match kind {
        Ids::Tokens => {
            tokens.ok_or_else(|| KernelError::Layer { layer: layer.into(), msg: "the step has no token ids".into() })
        }
        Ids::Positions | Ids::OffsetPositions(_) if steps + offset(kind) > vocab => Err(KernelError::Tensor {
            tensor: table.to_string(),
            expected: format!("at most {} positions", vocab.saturating_sub(offset(kind))),
            got: format!("{steps} steps"),
        }),
        _ => {
            if !matches!(made, Some((_, mb, mt)) if (*mb, *mt) == (b, steps)) {
                let v: Vec<u32> = (0..b * steps).map(make).collect();
                *made = Some((be.upload_ids(&v)?, b, steps));
            }
            Ok(&made.as_ref().expect("made above").0)
        }
    }
}

impl<B: Backend> Layer<B> for Embeddings<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        let (b, t, tokens) = self.shape(s, x)?;
        if self.add_input {
            super::layer::check_input(s, &self.name, x, self.d)?;
        }
        let out = s.slot(&mut self.out)?;
        self.x = Some(x);
        let (d, name, be, add) = (self.d, &self.name, s.be, self.add_input);
        let tables = &mut self.tables;
        s.write_act(out, t, |s, y| {
            be.resize(y, b * t * d)?;
            if add {
                be.copy(y, s.act(x)?)?;
            }
            for (k, tb) in tables.iter_mut().enumerate() {
                let ids = ids_of(be, tb.ids, tb.vocab, &tb.table.name, &mut tb.made, tokens, b, t, name)?;
                be.embedding_forward(y, ids, &tb.table.value, d, add || k > 0)?;
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        if self.add_input {
            return s.write_grad(x, acc, |s, dx| {
                s.be.resize(dx, s.be.len(s.grad(out)?))?;
                s.be.copy(dx, s.grad(out)?)
            });
        }
        // the output does not depend on the input slot (ids have no gradient): its gradient is zero
        if acc || !s.needs_grad(x) {
            return Ok(());
        }
        let len = s.be.len(s.act(x)?);
        s.update_grad(x, |s, g| {
            s.be.resize(g, len)?;
            s.be.fill(g, 0.0)
        })
    }

    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        _: NormStrategy,
    ) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        let (b, t, tokens) = self.shape(s, x)?;
        let (d, name) = (self.d, &self.name);
        for tb in &mut self.tables {
            let ids = ids_of(s.be, tb.ids, tb.vocab, &tb.table.name, &mut tb.made, tokens, b, t, name)?;
            s.be.embedding_group_sq_norms(norms, ids, s.grad(out)?, d, groups, t)?;
        }
        Ok(())
    }

    fn param_grads(&mut self, s: &Step<B>, reduce: &GradReduce<B>) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        let (b, t, tokens) = self.shape(s, x)?;
        let (d, name) = (self.d, &self.name);
        for Table { table, vocab, ids, made } in &mut self.tables {
            let ids = ids_of(s.be, *ids, *vocab, &table.name, made, tokens, b, t, name)?;
            s.be.fill(&mut table.grad, 0.0)?;
            s.be.embedding_backward(&mut table.grad, ids, s.grad(out)?, d, reduce.factors, reduce.groups, t)?;
        }
        Ok(())
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        self.tables.iter().for_each(|t| f(&t.table))
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.tables.iter_mut().for_each(|t| f(&mut t.table))
    }
}
