//! The CPU backend: gemm for matmul, rayon for everything else, inside a pool sized by `--threads`.
//! It is the reference every other backend is tested against: simple loops, fixed reduction order.

mod attention;
pub mod chacha;
mod dp;
pub(crate) mod elementwise;
mod embedding;
mod gru;
pub mod isa;
mod layer_norm;
pub mod math;
mod matmul;
mod pool_loss;
pub mod reduce;
mod rng;

pub use matmul::gemm_naive;

use crate::backend::{Activation, AdamW, Backend, Gemm, GroupRows, MaskFill, MatView, NoiseKey, NormStrategy};
use crate::error::{check_len, KernelError, Result};
use std::sync::Arc;

/// The CPU device: a rayon pool of `threads` workers. Cloning shares the pool.
#[derive(Clone)]
pub struct Cpu {
    pool: Arc<rayon::ThreadPool>,
    threads: usize,
    /// matmul in the blocking that gives the same bits on any x86-64-v3 machine ([`matmul`])
    portable: bool,
}

impl Cpu {
    /// A pool of `threads` workers; 0 means one per available core.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("medtrain-cpu-{i}"))
            .build()
            .map_err(|e| KernelError::Device(format!("cannot start {threads} CPU threads: {e}")))?;
        Ok(Cpu { pool: Arc::new(pool), threads, portable: false })
    }

    /// The same device with matmul in portable blocking (`true`): the same bits on any x86-64-v3
    /// machine, with or without AVX-512 and whatever its caches (see `matmul.rs`). Everything else the
    /// backend does already gives the same bits on every x86-64-v3 machine.
    pub fn portable(mut self, on: bool) -> Self {
        self.portable = on;
        self
    }

    pub fn is_portable(&self) -> bool {
        self.portable
    }

    fn exec(&self) -> matmul::Exec {
        matmul::Exec { threads: self.threads, portable: self.portable }
    }

    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

impl std::fmt::Debug for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cpu({} threads)", self.threads)
    }
}

impl Backend for Cpu {
    type Buf = Vec<f32>;
    type Ids = Vec<u32>;
    type Groups = GroupRows;

    fn name(&self) -> &'static str {
        "cpu"
    }
    fn threads(&self) -> usize {
        self.threads
    }
    /// `MemAvailable` of /proc/meminfo, or what the cgroup's `memory.max` leaves if that is less.
    fn memory_limit(&self) -> Option<u64> {
        host_memory_available()
    }
    fn scope<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        let mut v = alloc("zeros", len)?;
        v.resize(len, 0.0);
        Ok(v)
    }
    fn upload(&self, data: &[f32]) -> Result<Vec<f32>> {
        let mut v = alloc("upload", data.len())?;
        v.extend_from_slice(data);
        Ok(v)
    }
    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        let mut v = alloc("download", buf.len())?;
        v.extend_from_slice(buf);
        Ok(v)
    }
    fn upload_ids(&self, ids: &[u32]) -> Result<Vec<u32>> {
        let mut v = alloc("upload_ids", ids.len())?;
        v.extend_from_slice(ids);
        Ok(v)
    }
    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }
    fn ids_len(&self, ids: &Vec<u32>) -> usize {
        ids.len()
    }
    fn resize(&self, buf: &mut Vec<f32>, len: usize) -> Result<()> {
        if buf.len() < len {
            buf.try_reserve_exact(len - buf.len()).map_err(|_| oom::<f32>("resize", len))?;
        }
        if buf.len() != len {
            buf.resize(len, 0.0);
        }
        Ok(())
    }
    fn fill(&self, buf: &mut Vec<f32>, value: f32) -> Result<()> {
        self.run(|| {
            use rayon::prelude::*;
            buf.par_chunks_mut(elementwise::CHUNK).for_each(|c| c.iter_mut().for_each(|v| *v = value))
        });
        Ok(())
    }
    fn copy(&self, dst: &mut Vec<f32>, src: &Vec<f32>) -> Result<()> {
        check_len("copy", "dst", src.len(), dst.len())?;
        dst.copy_from_slice(src);
        Ok(())
    }

    fn groups(&self, layout: &GroupRows) -> Result<GroupRows> {
        check_group_layout(layout)?;
        Ok(layout.clone())
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
        self.run(|| matmul::gemm(self.exec(), c, cv, a, av, b, bv, g))
    }

    fn broadcast_rows(&self, y: &mut Vec<f32>, bias: &Vec<f32>, rows: usize) -> Result<()> {
        self.run(|| elementwise::broadcast_rows(y, bias, rows))
    }
    fn add(&self, out: &mut Vec<f32>, a: &Vec<f32>, b: &Vec<f32>) -> Result<()> {
        self.run(|| elementwise::binary("add", out, a, b, |a, b| a + b))
    }
    fn add_assign(&self, y: &mut Vec<f32>, x: &Vec<f32>) -> Result<()> {
        self.run(|| elementwise::add_assign(y, x))
    }
    fn group_row_sums(
        &self,
        out: &mut Vec<f32>,
        x: &Vec<f32>,
        d: usize,
        groups: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        self.run(|| elementwise::group_row_sums(self.threads, out, x, d, groups, rows_per_example))
    }
    fn add_row_dots(&self, out: &mut Vec<f32>, a: &Vec<f32>, b: &Vec<f32>, d: usize) -> Result<()> {
        self.run(|| elementwise::add_row_dots(out, a, b, d))
    }
    fn add_row_sq_norms(&self, out: &mut Vec<f32>, x: &Vec<f32>, d: usize) -> Result<()> {
        self.run(|| elementwise::add_row_sq_norms(out, x, d))
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
        elementwise::copy_columns(dst, dst_w, dst_col, src, src_w, src_col, width, rows)
    }
    fn sum_rows(&self, out: &mut Vec<f32>, x: &Vec<f32>, d: usize) -> Result<()> {
        let rows = if d == 0 { 0 } else { x.len() / d };
        self.run(|| elementwise::group_row_sums(self.threads, out, x, d, &GroupRows::single(rows), 1))
    }
    fn split_last_column(&self, head: &mut Vec<f32>, last: &mut Vec<f32>, x: &Vec<f32>, w: usize) -> Result<()> {
        elementwise::split_last_column(head, last, x, w)
    }
    fn weighted_row_sum(
        &self,
        out: &mut Vec<f32>,
        x: &Vec<f32>,
        w: &Vec<f32>,
        d: usize,
        accumulate: bool,
    ) -> Result<()> {
        self.run(|| elementwise::weighted_row_sum(out, x, w, d, accumulate))
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
        self.run(|| elementwise::scale_rows_by_group(y, x, d, append_factor, factors, groups, rows_per_example))
    }
    fn clip_factors(&self, factors: &mut Vec<f32>, sq_norms: &Vec<f32>, clip: f32) -> Result<()> {
        elementwise::clip_factors(factors, sq_norms, clip)
    }

    fn activation_forward(&self, f: Activation, y: &mut Vec<f32>, x: &Vec<f32>) -> Result<()> {
        self.run(|| match f {
            Activation::Relu => elementwise::unary("relu_forward", y, x, |v| v.max(0.0)),
            Activation::Gelu => elementwise::unary("gelu_forward", y, x, elementwise::gelu),
            Activation::Sigmoid => elementwise::unary("sigmoid_forward", y, x, math::sigmoid),
            Activation::Tanh => elementwise::unary("tanh_forward", y, x, math::tanh),
        })
    }
    fn activation_backward(
        &self,
        f: Activation,
        dx: &mut Vec<f32>,
        dy: &Vec<f32>,
        x: &Vec<f32>,
        y: &Vec<f32>,
    ) -> Result<()> {
        self.run(|| match f {
            Activation::Relu => elementwise::binary("relu_backward", dx, dy, y, |g, y| if y > 0.0 { g } else { 0.0 }),
            Activation::Gelu => elementwise::binary("gelu_backward", dx, dy, x, |g, x| g * elementwise::gelu_grad(x)),
            Activation::Sigmoid => elementwise::binary("sigmoid_backward", dx, dy, y, |g, y| g * y * (1.0 - y)),
            Activation::Tanh => elementwise::binary("tanh_backward", dx, dy, y, |g, y| g * (1.0 - y * y)),
        })
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
        self.run(|| layer_norm::forward(y, mean, rstd, x, gamma, beta, c, eps))
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
        self.run(|| layer_norm::backward(dx, dy_xhat, dy, x, gamma, mean, rstd, c))
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
        self.run(|| attention::masked_softmax_forward(att, mask, b, h, tq, t, scale, fill))
    }
    fn softmax_backward(&self, datt: &mut Vec<f32>, att: &Vec<f32>, t: usize, scale: f32) -> Result<()> {
        self.run(|| attention::softmax_backward(datt, att, t, scale))
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
        self.run(|| gru::step_forward(h, h_prev, gates, gi, gh, b, steps, t, hidden))
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
        self.run(|| gru::step_backward(dgi, dgh, carry, dy, gates, gh, h_prev, b, steps, t, hidden))
    }

    fn embedding_forward(
        &self,
        y: &mut Vec<f32>,
        ids: &Vec<u32>,
        table: &Vec<f32>,
        d: usize,
        accumulate: bool,
    ) -> Result<()> {
        self.run(|| embedding::forward(y, ids, table, d, accumulate))
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
        self.run(|| embedding::backward(dtable, ids, dy, d, factors.map(|f| f.as_slice()), groups, rows_per_example))
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
        self.run(|| embedding::group_sq_norms(out, ids, dy, d, groups, rows_per_example))
    }

    fn masked_mean_pool_forward(
        &self,
        out: &mut Vec<f32>,
        h: &Vec<f32>,
        mask: &Vec<f32>,
        t: usize,
        c: usize,
    ) -> Result<()> {
        self.run(|| pool_loss::pool_forward(out, h, mask, t, c))
    }
    fn masked_mean_pool_backward(
        &self,
        dh: &mut Vec<f32>,
        dout: &Vec<f32>,
        mask: &Vec<f32>,
        t: usize,
        c: usize,
    ) -> Result<()> {
        self.run(|| pool_loss::pool_backward(dh, dout, mask, t, c))
    }

    fn bce_with_logits(
        &self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        logits: &Vec<f32>,
        targets: &Vec<f32>,
        grad_scale: f32,
    ) -> Result<()> {
        pool_loss::bce_with_logits(losses, dlogits, logits, targets, grad_scale)
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
        pool_loss::regression_loss(losses, dlogits, preds, targets, huber, grad_scale)
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
        pool_loss::cross_entropy(losses, dlogits, logits, classes, k, grad_scale)
    }

    fn linear_group_sq_norms(
        &self,
        out: &mut Vec<f32>,
        x: &Vec<f32>,
        dy: &Vec<f32>,
        d_in: usize,
        d_out: usize,
        groups: &GroupRows,
        rows_per_example: usize,
        strategy: NormStrategy,
    ) -> Result<()> {
        self.run(|| dp::linear_group_sq_norms(self.exec(), out, x, dy, d_in, d_out, groups, rows_per_example, strategy))
    }
    fn shared_input_group_sq_norms(
        &self,
        out: &mut Vec<f32>,
        x: &Vec<f32>,
        dys: &[(&Vec<f32>, usize)],
        d_in: usize,
        groups: &GroupRows,
        rows_per_example: usize,
        strategy: NormStrategy,
    ) -> Result<()> {
        let dys: Vec<(&[f32], usize)> = dys.iter().map(|&(dy, w)| (&dy[..], w)).collect();
        self.run(|| {
            let op = "shared_input_group_sq_norms";
            dp::shared_input_group_sq_norms(op, self.exec(), out, x, &dys, d_in, groups, rows_per_example, strategy)
        })
    }

    fn add_normal(&self, buf: &mut Vec<f32>, std: f32, scale: f32, grid: f64, key: &NoiseKey) -> Result<()> {
        if !(std >= 0.0 && std.is_finite() && scale.is_finite()) {
            return Err(KernelError::Invalid {
                op: "add_normal",
                msg: format!("standard deviation must be finite and >= 0 (got {std}), scale finite (got {scale})"),
            });
        }
        check_snapping_grid(grid)?;
        self.run(|| rng::add_normal(buf, std, scale, grid, key));
        Ok(())
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
        self.run(|| elementwise::sgd_step(w, g, m, lr, momentum, weight_decay, first_step))
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
        self.run(|| elementwise::adamw_step(w, g, m, v, h, t))
    }
}

/// Offsets must start at 0 and never decrease: a group owns the rows between two offsets.
pub(crate) fn check_group_layout(layout: &GroupRows) -> Result<()> {
    let o = &layout.offsets;
    if o.first().is_some_and(|&f| f != 0) || o.windows(2).any(|w| w[1] < w[0]) {
        return Err(KernelError::Invalid {
            op: "groups",
            msg: format!("group offsets must start at 0 and not decrease ({} offsets)", o.len()),
        });
    }
    Ok(())
}

/// The snapping grid must be a positive, normal power of two: `1/g` is then exact and the snap
/// `g * round(v / g)` rounds once (see `rng`).
pub(crate) fn check_snapping_grid(grid: f64) -> Result<()> {
    if !(grid.is_normal() && grid > 0.0 && grid.to_bits() & ((1u64 << 52) - 1) == 0) {
        return Err(KernelError::Invalid {
            op: "add_normal",
            msg: format!("the snapping grid must be a positive power of two, got {grid:e}"),
        });
    }
    Ok(())
}

fn oom<T>(op: &'static str, elements: usize) -> KernelError {
    KernelError::OutOfMemory { op, elements, element_bytes: std::mem::size_of::<T>() }
}

/// An empty vector with room for `len` elements, or the error naming `op` and the size (the global
/// allocator would abort the process instead).
fn alloc<T>(op: &'static str, len: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| oom::<T>(op, len))?;
    Ok(v)
}

/// The host memory a process can still take: `MemAvailable` (free memory and the page cache it can
/// reclaim), bounded by what its control group's limit leaves (cgroup v2 `memory.max`, v1
/// `memory.limit_in_bytes`; the group named in /proc/self/cgroup, or the mount's root in a container
/// whose cgroup namespace hides the path).
pub fn host_memory_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().strip_suffix("kB")?;
    let mut available = kib.trim().parse::<u64>().ok()?.checked_mul(1024)?;
    let groups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // a line is `id:controllers:path`; v2's is `0::path`
    let own = |controller: &str| {
        let line = groups.lines().map(|l| l.splitn(3, ':').collect::<Vec<_>>()).find(|f| {
            f.len() == 3
                && if controller.is_empty() {
                    f[0] == "0" && f[1].is_empty()
                } else {
                    f[1].split(',').any(|c| c == controller)
                }
        });
        line.map_or("/".to_string(), |f| f[2].to_string())
    };
    let read = |dir: &std::path::Path, name: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok()
    };
    let root = std::path::Path::new("/sys/fs/cgroup");
    // the page cache the group can drop is charged to it too (a preparation has just read the input):
    // it counts as available, as MemAvailable counts it
    let inactive_file = |dir: &std::path::Path, key: &str| -> u64 {
        let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
        stat.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    };
    for (mount, path, max, current, cache) in [
        (root.to_path_buf(), own(""), "memory.max", "memory.current", "inactive_file"),
        (root.join("memory"), own("memory"), "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
    ] {
        for dir in [mount.join(path.trim_start_matches('/')), mount.clone()] {
            if let (Some(max), Some(current)) = (read(&dir, max), read(&dir, current)) {
                let used = current.saturating_sub(inactive_file(&dir, cache));
                available = available.min(max.saturating_sub(used));
                break;
            }
        }
    }
    Some(available)
}
