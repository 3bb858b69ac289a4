//! A backend that implements only the trait's required methods (each forwarded to the CPU) and so
//! runs every default: the composable ops and the generic per-group norm algorithm of `nn::norms`.
//! The layer tests run on it as a second backend, the way a new device's backend starts.
#![allow(dead_code)]

use kernels::backend::{Activation, AdamW, Gemm, GroupRows, MaskFill, MatView, NoiseKey};
use kernels::{Backend, Cpu, Result};

pub struct Required(pub Cpu);

impl Required {
    pub fn new(threads: usize) -> Self {
        Required(Cpu::new(threads).unwrap())
    }
}

#[allow(clippy::too_many_arguments)]
impl Backend for Required {
    type Buf = Vec<f32>;
    type Ids = Vec<u32>;
    type Groups = GroupRows;

    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn threads(&self) -> usize {
        self.0.threads()
    }
    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        self.0.zeros(len)
    }
    fn upload(&self, data: &[f32]) -> Result<Vec<f32>> {
        self.0.upload(data)
    }
    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        self.0.download(buf)
    }
    fn upload_ids(&self, ids: &[u32]) -> Result<Vec<u32>> {
        self.0.upload_ids(ids)
    }
    fn len(&self, buf: &Vec<f32>) -> usize {
        self.0.len(buf)
    }
    fn ids_len(&self, ids: &Vec<u32>) -> usize {
        self.0.ids_len(ids)
    }
    fn resize(&self, buf: &mut Vec<f32>, len: usize) -> Result<()> {
        self.0.resize(buf, len)
    }
    fn fill(&self, buf: &mut Vec<f32>, value: f32) -> Result<()> {
        self.0.fill(buf, value)
    }
    fn copy(&self, dst: &mut Vec<f32>, src: &Vec<f32>) -> Result<()> {
        self.0.copy(dst, src)
    }
    fn groups(&self, layout: &GroupRows) -> Result<GroupRows> {
        self.0.groups(layout)
    }
    fn gemm(
        &self,
        c: &mut Vec<f32>,
        cv: MatView,
        a: &Vec<f32>,
        av: MatView,
        b: &Vec<f32>,
        bv: MatView,
        g: Gemm,
    ) -> Result<()> {
        self.0.gemm(c, cv, a, av, b, bv, g)
    }
    fn add_assign(&self, y: &mut Vec<f32>, x: &Vec<f32>) -> Result<()> {
        self.0.add_assign(y, x)
    }
    fn group_row_sums(
        &self,
        out: &mut Vec<f32>,
        x: &Vec<f32>,
        d: usize,
        groups: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        self.0.group_row_sums(out, x, d, groups, rows_per_example)
    }
    fn add_row_dots(&self, out: &mut Vec<f32>, a: &Vec<f32>, b: &Vec<f32>, d: usize) -> Result<()> {
        self.0.add_row_dots(out, a, b, d)
    }
    fn copy_columns(
        &self,
        dst: &mut Vec<f32>,
        dst_w: usize,
        dst_col: usize,
        src: &Vec<f32>,
        src_w: usize,
        src_col: usize,
        width: usize,
        rows: usize,
    ) -> Result<()> {
        self.0.copy_columns(dst, dst_w, dst_col, src, src_w, src_col, width, rows)
    }
    fn scale_rows_by_group(
        &self,
        y: &mut Vec<f32>,
        x: &Vec<f32>,
        d: usize,
        append_factor: bool,
        factors: &Vec<f32>,
        groups: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        self.0.scale_rows_by_group(y, x, d, append_factor, factors, groups, rows_per_example)
    }
    fn clip_factors(&self, factors: &mut Vec<f32>, sq_norms: &Vec<f32>, clip: f32) -> Result<()> {
        self.0.clip_factors(factors, sq_norms, clip)
    }
    fn activation_forward(&self, f: Activation, y: &mut Vec<f32>, x: &Vec<f32>) -> Result<()> {
        self.0.activation_forward(f, y, x)
    }
    fn activation_backward(
        &self,
        f: Activation,
        dx: &mut Vec<f32>,
        dy: &Vec<f32>,
        x: &Vec<f32>,
        y: &Vec<f32>,
    ) -> Result<()> {
        self.0.activation_backward(f, dx, dy, x, y)
    }
    fn layer_norm_forward(
        &self,
        y: &mut Vec<f32>,
        mean: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        c: usize,
        eps: f32,
    ) -> Result<()> {
        self.0.layer_norm_forward(y, mean, rstd, x, gamma, beta, c, eps)
    }
    fn layer_norm_backward(
        &self,
        dx: &mut Vec<f32>,
        dy_xhat: &mut Vec<f32>,
        dy: &Vec<f32>,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        mean: &Vec<f32>,
        rstd: &Vec<f32>,
        c: usize,
    ) -> Result<()> {
        self.0.layer_norm_backward(dx, dy_xhat, dy, x, gamma, mean, rstd, c)
    }
    fn masked_softmax_forward(
        &self,
        att: &mut Vec<f32>,
        mask: &Vec<f32>,
        b: usize,
        h: usize,
        tq: usize,
        t: usize,
        scale: f32,
        fill: MaskFill,
    ) -> Result<()> {
        self.0.masked_softmax_forward(att, mask, b, h, tq, t, scale, fill)
    }
    fn softmax_backward(&self, datt: &mut Vec<f32>, att: &Vec<f32>, t: usize, scale: f32) -> Result<()> {
        self.0.softmax_backward(datt, att, t, scale)
    }
    fn gru_step_forward(
        &self,
        h: &mut Vec<f32>,
        h_prev: &mut Vec<f32>,
        gates: &mut Vec<f32>,
        gi: &Vec<f32>,
        gh: &Vec<f32>,
        b: usize,
        steps: usize,
        t: usize,
        hidden: usize,
    ) -> Result<()> {
        self.0.gru_step_forward(h, h_prev, gates, gi, gh, b, steps, t, hidden)
    }
    fn gru_step_backward(
        &self,
        dgi: &mut Vec<f32>,
        dgh: &mut Vec<f32>,
        carry: &mut Vec<f32>,
        dy: &Vec<f32>,
        gates: &Vec<f32>,
        gh: &Vec<f32>,
        h_prev: &Vec<f32>,
        b: usize,
        steps: usize,
        t: usize,
        hidden: usize,
    ) -> Result<()> {
        self.0.gru_step_backward(dgi, dgh, carry, dy, gates, gh, h_prev, b, steps, t, hidden)
    }
    fn embedding_forward(
        &self,
        y: &mut Vec<f32>,
        ids: &Vec<u32>,
        table: &Vec<f32>,
        d: usize,
        accumulate: bool,
    ) -> Result<()> {
        self.0.embedding_forward(y, ids, table, d, accumulate)
    }
    fn embedding_backward(
        &self,
        dtable: &mut Vec<f32>,
        ids: &Vec<u32>,
        dy: &Vec<f32>,
        d: usize,
        factors: Option<&Vec<f32>>,
        groups: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        self.0.embedding_backward(dtable, ids, dy, d, factors, groups, rows_per_example)
    }
    fn embedding_group_sq_norms(
        &self,
        out: &mut Vec<f32>,
        ids: &Vec<u32>,
        dy: &Vec<f32>,
        d: usize,
        groups: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        self.0.embedding_group_sq_norms(out, ids, dy, d, groups, rows_per_example)
    }
    fn masked_mean_pool_forward(
        &self,
        out: &mut Vec<f32>,
        h: &Vec<f32>,
        mask: &Vec<f32>,
        t: usize,
        c: usize,
    ) -> Result<()> {
        self.0.masked_mean_pool_forward(out, h, mask, t, c)
    }
    fn masked_mean_pool_backward(
        &self,
        dh: &mut Vec<f32>,
        dout: &Vec<f32>,
        mask: &Vec<f32>,
        t: usize,
        c: usize,
    ) -> Result<()> {
        self.0.masked_mean_pool_backward(dh, dout, mask, t, c)
    }
    fn bce_with_logits(
        &self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        logits: &Vec<f32>,
        targets: &Vec<f32>,
        grad_scale: f32,
    ) -> Result<()> {
        self.0.bce_with_logits(losses, dlogits, logits, targets, grad_scale)
    }
    fn regression_loss(
        &self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        preds: &Vec<f32>,
        targets: &Vec<f32>,
        huber: Option<f32>,
        grad_scale: f32,
    ) -> Result<()> {
        self.0.regression_loss(losses, dlogits, preds, targets, huber, grad_scale)
    }
    fn cross_entropy(
        &self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        logits: &Vec<f32>,
        classes: &Vec<u32>,
        k: usize,
        grad_scale: f32,
    ) -> Result<()> {
        self.0.cross_entropy(losses, dlogits, logits, classes, k, grad_scale)
    }
    fn add_normal(&self, buf: &mut Vec<f32>, std: f32, scale: f32, grid: f64, key: &NoiseKey) -> Result<()> {
        self.0.add_normal(buf, std, scale, grid, key)
    }
    fn sgd_step(
        &self,
        w: &mut Vec<f32>,
        g: &Vec<f32>,
        m: &mut Vec<f32>,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        first_step: bool,
    ) -> Result<()> {
        self.0.sgd_step(w, g, m, lr, momentum, weight_decay, first_step)
    }
    fn adamw_step(
        &self,
        w: &mut Vec<f32>,
        g: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        h: &AdamW,
        t: u64,
    ) -> Result<()> {
        self.0.adamw_step(w, g, m, v, h, t)
    }
}
