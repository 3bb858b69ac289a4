//! Embedding: ids: [R] -> y: [R, D] (= or +=) table[ids]. table (`weight`): [V, D].
//! No input gradient; the table gradient is a (clipped) scatter-add of dy, and a group's squared norm
//! sums dy_t . dy_s over the group's pairs of rows with the same id.

use super::param::{GradReduce, Param};
use crate::backend::{Backend, GroupRows};
use crate::error::Result;

pub struct Embedding<B: Backend> {
    pub table: Param<B>,
    pub vocab: usize,
    pub d: usize,
}

impl<B: Backend> Embedding<B> {
    pub fn new(be: &B, prefix: &str, vocab: usize, d: usize) -> Result<Self> {
        Ok(Embedding { table: Param::zeros(be, format!("{prefix}.weight"), &[vocab, d])?, vocab, d })
    }

    pub fn forward(&self, be: &B, y: &mut B::Buf, ids: &B::Ids, accumulate: bool) -> Result<()> {
        if !accumulate {
            be.resize(y, be.ids_len(ids) * self.d)?;
        }
        be.embedding_forward(y, ids, &self.table.value, self.d, accumulate)
    }

    pub fn add_group_sq_norms(
        &self,
        be: &B,
        norms: &mut B::Buf,
        ids: &B::Ids,
        dy: &B::Buf,
        groups: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        be.embedding_group_sq_norms(norms, ids, dy, self.d, groups, rows_per_example)
    }

    pub fn param_grads(
        &mut self,
        be: &B,
        ids: &B::Ids,
        dy: &B::Buf,
        reduce: &GradReduce<B>,
        rows_per_example: usize,
    ) -> Result<()> {
        be.fill(&mut self.table.grad, 0.0)?;
        be.embedding_backward(&mut self.table.grad, ids, dy, self.d, reduce.factors, reduce.groups, rows_per_example)
    }
}
