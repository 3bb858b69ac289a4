//! Launch plans: for each op of the CUDA backend, the shape checks (the CPU's, with the same errors),
//! the kernel, its grid and its arguments. The device (`Cuda`) runs these plans; so do the CPU
//! emulation tests (kernels/tests/cuda_emu.rs), which give each buffer a made-up address, so that the
//! launch geometry and the argument lists are checked without a GPU too.
//!
//! A plan is `None` when there is nothing to do (an empty output): CUDA refuses a grid of 0 blocks.

use super::source::Module;
use crate::backend::{Activation, AdamW, Gemm, GroupRows, MaskFill, MatView, NoiseKey, EMBEDDING_CHUNK};
use crate::error::{check_len, check_min_len, KernelError, Result};

/// Threads per block of every kernel (a multiple of the warp, which `add_row_dots` needs; 256 is what
/// the noise kernel's layout assumes).
pub const BLOCK: u32 = 256;

/// How many blocks a grid-stride kernel gets at most. The device uses [`Geometry::DEVICE`]; the
/// emulation tests use a few blocks, so that every kernel's grid-stride loop runs more than once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub max_blocks: u32,
}

impl Geometry {
    /// 65,536 blocks of 256 threads: more than an H100 keeps resident (132 SMs x 8 blocks), so a
    /// large buffer never waits for a grid-stride loop.
    pub const DEVICE: Geometry = Geometry { max_blocks: 1 << 16 };
}

/// A buffer as a plan sees it: its device address and its length in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub ptr: u64,
    pub len: usize,
}

/// The parameters of the noise kernel (`struct NoiseParams` of noise.cu, same layout).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NoiseParams {
    pub key: [u32; 8],
    pub stream: u64,
    pub n: u64,
    pub std_dev: f32,
    pub scale: f32,
    pub inv_grid: f64,
    pub grid_scale: f64,
}

// SAFETY: plain old data in C layout (no padding: 32 + 8 + 8 + 4 + 4 + 8 + 8 bytes), matching noise.cu
unsafe impl cudarc::driver::DeviceRepr for NoiseParams {}

impl std::fmt::Debug for NoiseParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the key is a secret: never print it
        f.debug_struct("NoiseParams").field("stream", &self.stream).field("n", &self.n).finish_non_exhaustive()
    }
}

/// One kernel argument, as the kernel's C signature takes it.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// a device address (any `T*`); 0 is null
    Ptr(u64),
    U32(u32),
    U64(u64),
    F32(f32),
    Noise(NoiseParams),
}

impl Arg {
    /// The argument's bytes as the kernel receives them (little-endian, C layout).
    pub fn bytes(&self) -> Vec<u8> {
        match *self {
            Arg::Ptr(v) | Arg::U64(v) => v.to_le_bytes().to_vec(),
            Arg::U32(v) => v.to_le_bytes().to_vec(),
            Arg::F32(v) => v.to_le_bytes().to_vec(),
            Arg::Noise(p) => {
                let mut b: Vec<u8> = p.key.iter().flat_map(|w| w.to_le_bytes()).collect();
                b.extend(p.stream.to_le_bytes());
                b.extend(p.n.to_le_bytes());
                b.extend(p.std_dev.to_le_bytes());
                b.extend(p.scale.to_le_bytes());
                b.extend(p.inv_grid.to_le_bytes());
                b.extend(p.grid_scale.to_le_bytes());
                b
            }
        }
    }
}

/// A kernel launch: a 1-D grid of `grid` blocks of `block` threads.
#[derive(Clone, Debug)]
pub struct Launch {
    pub module: Module,
    pub kernel: &'static str,
    pub grid: u32,
    pub block: u32,
    pub args: Vec<Arg>,
}

/// Blocks for `items` work items at `per_block` a block, at least 1 and at most the geometry's limit.
fn blocks(items: u64, per_block: u64, geo: Geometry) -> u32 {
    items.div_ceil(per_block).clamp(1, geo.max_blocks.max(1) as u64) as u32
}

fn launch(module: Module, kernel: &'static str, items: u64, per_block: u64, geo: Geometry, args: Vec<Arg>) -> Launch {
    Launch { module, kernel, grid: blocks(items, per_block, geo), block: BLOCK, args }
}

fn elementwise(kernel: &'static str, n: usize, geo: Geometry, args: Vec<Arg>) -> Option<Launch> {
    (n > 0).then(|| launch(Module::Elementwise, kernel, n as u64, BLOCK as u64, geo, args))
}

/// y = value
pub fn fill(y: Slice, value: f32, geo: Geometry) -> Option<Launch> {
    elementwise("fill_f32", y.len, geo, vec![Arg::Ptr(y.ptr), Arg::F32(value), Arg::U64(y.len as u64)])
}

/// out = a + b
pub fn add(out: Slice, a: Slice, b: Slice, geo: Geometry) -> Result<Option<Launch>> {
    check_len("add", "out", a.len, out.len)?;
    check_len("add", "second operand", a.len, b.len)?;
    let args = vec![Arg::Ptr(out.ptr), Arg::Ptr(a.ptr), Arg::Ptr(b.ptr), Arg::U64(a.len as u64)];
    Ok(elementwise("add_f32", a.len, geo, args))
}

/// y += x
pub fn add_assign(y: Slice, x: Slice, geo: Geometry) -> Result<Option<Launch>> {
    check_len("add_assign", "x", y.len, x.len)?;
    Ok(elementwise("add_assign_f32", y.len, geo, vec![Arg::Ptr(y.ptr), Arg::Ptr(x.ptr), Arg::U64(y.len as u64)]))
}

/// y: [R, D] = bias: [D] in every row
pub fn broadcast_rows(y: Slice, bias: Slice, rows: usize, geo: Geometry) -> Result<Option<Launch>> {
    let d = bias.len;
    check_len("broadcast_rows", "y", rows * d, y.len)?;
    let args = vec![Arg::Ptr(y.ptr), Arg::Ptr(bias.ptr), Arg::U64(d as u64), Arg::U64(y.len as u64)];
    Ok(elementwise("broadcast_rows_f32", y.len, geo, args))
}

/// The code of `f` in elementwise.cu (`MT_RELU` ...).
pub fn activation_code(f: Activation) -> u32 {
    match f {
        Activation::Relu => 0,
        Activation::Gelu => 1,
        Activation::Sigmoid => 2,
        Activation::Tanh => 3,
    }
}

/// y = f(x)
pub fn activation_forward(f: Activation, y: Slice, x: Slice, geo: Geometry) -> Result<Option<Launch>> {
    let op = match f {
        Activation::Relu => "relu_forward",
        Activation::Gelu => "gelu_forward",
        Activation::Sigmoid => "sigmoid_forward",
        Activation::Tanh => "tanh_forward",
    };
    check_len(op, "y", x.len, y.len)?;
    let args = vec![Arg::U32(activation_code(f)), Arg::Ptr(y.ptr), Arg::Ptr(x.ptr), Arg::U64(x.len as u64)];
    Ok(elementwise("activation_forward", x.len, geo, args))
}

/// dx = dy * f'(x), from x (GELU) or y (the others); only the one `f` reads is checked and read
pub fn activation_backward(
    f: Activation,
    dx: Slice,
    dy: Slice,
    x: Slice,
    y: Slice,
    geo: Geometry,
) -> Result<Option<Launch>> {
    let (op, used) = match f {
        Activation::Relu => ("relu_backward", y),
        Activation::Gelu => ("gelu_backward", x),
        Activation::Sigmoid => ("sigmoid_backward", y),
        Activation::Tanh => ("tanh_backward", y),
    };
    check_len(op, "out", dy.len, dx.len)?;
    check_len(op, "second operand", dy.len, used.len)?;
    let args = vec![
        Arg::U32(activation_code(f)),
        Arg::Ptr(dx.ptr),
        Arg::Ptr(dy.ptr),
        Arg::Ptr(x.ptr),
        Arg::Ptr(y.ptr),
        Arg::U64(dy.len as u64),
    ];
    Ok(elementwise("activation_backward", dy.len, geo, args))
}

/// factors: [G] = min(1, clip / sqrt(sq_norms))
pub fn clip_factors(factors: Slice, sq_norms: Slice, clip: f32, geo: Geometry) -> Result<Option<Launch>> {
    check_len("clip_factors", "factors", sq_norms.len, factors.len)?;
    if !(clip > 0.0 && clip.is_finite()) {
        return Err(KernelError::Invalid {
            op: "clip_factors",
            msg: format!("clip norm must be positive and finite, got {clip}"),
        });
    }
    let args = vec![Arg::Ptr(factors.ptr), Arg::Ptr(sq_norms.ptr), Arg::F32(clip), Arg::U64(factors.len as u64)];
    Ok(elementwise("clip_factors", factors.len, geo, args))
}

/// The device form of a group layout: `offsets` as u64 ([G + 1]) and the group of each example
/// (`example_group`, u32, [E]), which the per-group kernels read. Checked as the CPU checks it.
pub fn group_maps(layout: &GroupRows) -> Result<(Vec<u64>, Vec<u32>)> {
    crate::cpu::check_group_layout(layout)?;
    let offsets: Vec<u64> = layout.offsets.iter().map(|&o| o as u64).collect();
    if layout.groups() > u32::MAX as usize {
        return Err(KernelError::Invalid {
            op: "groups",
            msg: format!("{} groups (at most 2^32 - 1)", layout.groups()),
        });
    }
    let mut example_group = vec![0u32; layout.examples()];
    for g in 0..layout.groups() {
        example_group[layout.offsets[g]..layout.offsets[g + 1]].iter_mut().for_each(|e| *e = g as u32);
    }
    Ok((offsets, example_group))
}

/// y: [R, D (+1)] = factors[group of row r] * x: [R, D] (see `Backend::scale_rows_by_group`);
/// `example_group` is the layout's map from [`group_maps`]
#[allow(clippy::too_many_arguments)]
pub fn scale_rows_by_group(
    y: Slice,
    x: Slice,
    d: usize,
    append_factor: bool,
    factors: Slice,
    layout: &GroupRows,
    example_group: Slice,
    rows_per_example: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    check_len("scale_rows_by_group", "factors", layout.groups(), factors.len)?;
    check_len("scale_rows_by_group", "group map", layout.examples(), example_group.len)?;
    let rows = layout.examples() * rows_per_example;
    let width = d + append_factor as usize;
    check_len("scale_rows_by_group", "x", rows * d, x.len)?;
    check_len("scale_rows_by_group", "y", rows * width, y.len)?;
    let args = vec![
        Arg::Ptr(y.ptr),
        Arg::Ptr(x.ptr),
        Arg::Ptr(factors.ptr),
        Arg::Ptr(example_group.ptr),
        Arg::U64(d as u64),
        Arg::U32(append_factor as u32),
        Arg::U64(rows_per_example as u64),
        Arg::U64(y.len as u64),
    ];
    Ok(elementwise("scale_rows_by_group", y.len, geo, args))
}

/// out: [G, D] = per-group sums of the rows of x: [R, D]; `offsets` is the layout's u64 offsets from
/// [`group_maps`]. `sum_rows` is this with one group.
pub fn group_row_sums(
    out: Slice,
    x: Slice,
    d: usize,
    layout: &GroupRows,
    offsets: Slice,
    rows_per_example: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    let g = layout.groups();
    check_len("group_row_sums", "out", g * d, out.len)?;
    check_len("group_row_sums", "x", layout.examples() * rows_per_example * d, x.len)?;
    check_len("group_row_sums", "offsets", g + 1, offsets.len)?;
    if d == 0 {
        return Ok(None);
    }
    let args = vec![
        Arg::Ptr(out.ptr),
        Arg::Ptr(x.ptr),
        Arg::Ptr(offsets.ptr),
        Arg::U64(d as u64),
        Arg::U64(rows_per_example as u64),
        Arg::U64(out.len as u64),
    ];
    Ok((out.len > 0).then(|| launch(Module::Reduce, "group_row_sums", out.len as u64, BLOCK as u64, geo, args)))
}

/// Rows a group must have, and threads the one-kernel plan must fall short of, before
/// [`group_row_sums_split`] takes over from [`group_row_sums`].
const SPLIT_ROWS: usize = 2048;
const SPLIT_THREADS: usize = 1 << 15;

/// The scratch length [`group_row_sums_split`] needs, or `None` where [`group_row_sums`]' one thread a
/// (group, column) has enough parallelism (many groups, or small ones).
pub fn group_row_sums_split_scratch(layout: &GroupRows, rows_per_example: usize, d: usize) -> Option<usize> {
    let g = layout.groups();
    let most = (0..g).map(|i| layout.rows(i, rows_per_example).len()).max().unwrap_or(0);
    (d > 0 && g * d < SPLIT_THREADS && most >= SPLIT_ROWS && g <= 16).then(|| most.div_ceil(64) * d)
}

/// group_row_sums for few, large groups in the same order (the CPU's bits): per group, its 64-row
/// block sums into `partial` (length [`group_row_sums_split_scratch`]), then the block sums added in
/// order. Two launches per group.
pub fn group_row_sums_split(
    out: Slice,
    x: Slice,
    d: usize,
    layout: &GroupRows,
    rows_per_example: usize,
    partial: Slice,
    geo: Geometry,
) -> Result<Vec<Launch>> {
    let g = layout.groups();
    check_len("group_row_sums", "out", g * d, out.len)?;
    check_len("group_row_sums", "x", layout.examples() * rows_per_example * d, x.len)?;
    let need = (0..g).map(|i| layout.rows(i, rows_per_example).len().div_ceil(64) * d).max().unwrap_or(0);
    if partial.len < need {
        return Err(KernelError::Invalid {
            op: "group_row_sums",
            msg: format!("scratch of {} elements, {need} needed", partial.len),
        });
    }
    let mut launches = vec![];
    for i in 0..g {
        let rows = layout.rows(i, rows_per_example);
        let blocks = rows.len().div_ceil(64);
        let at = |s: Slice, offset: usize| Arg::Ptr(s.ptr + offset as u64 * 4);
        if blocks > 0 {
            let n = (blocks * d) as u64;
            let args = vec![
                Arg::Ptr(partial.ptr),
                at(x, rows.start * d),
                Arg::U64(rows.len() as u64),
                Arg::U64(d as u64),
                Arg::U64(n),
            ];
            launches.push(launch(Module::Reduce, "block_row_sums", n, BLOCK as u64, geo, args));
        }
        let args = vec![at(out, i * d), Arg::Ptr(partial.ptr), Arg::U64(blocks as u64), Arg::U64(d as u64)];
        launches.push(launch(Module::Reduce, "sum_block_rows", d as u64, BLOCK as u64, geo, args));
    }
    Ok(launches)
}

/// out: [G] += row dots of a, b: [G, D] (`op` names the trait method: add_row_dots or add_row_sq_norms)
pub fn add_row_dots(
    op: &'static str,
    out: Slice,
    a: Slice,
    b: Slice,
    d: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    if op == "add_row_sq_norms" {
        check_len(op, "x", out.len * d, a.len)?;
    } else {
        check_len(op, "a", out.len * d, a.len)?;
        check_len(op, "b", out.len * d, b.len)?;
    }
    if d == 0 || out.len == 0 {
        return Ok(None);
    }
    let args = vec![Arg::Ptr(out.ptr), Arg::Ptr(a.ptr), Arg::Ptr(b.ptr), Arg::U64(d as u64), Arg::U64(out.len as u64)];
    // one warp per row
    Ok(Some(launch(Module::Reduce, "add_row_dots", out.len as u64, (BLOCK / 32) as u64, geo, args)))
}

/// PyTorch SGD (see `Backend::sgd_step`); with momentum 0 the momentum buffer is neither checked nor read
#[allow(clippy::too_many_arguments)]
pub fn sgd_step(
    w: Slice,
    g: Slice,
    m: Slice,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    first_step: bool,
    geo: Geometry,
) -> Result<Option<Launch>> {
    check_len("sgd_step", "grad", w.len, g.len)?;
    if momentum != 0.0 {
        check_len("sgd_step", "momentum buffer", w.len, m.len)?;
    }
    let m_ptr = if momentum != 0.0 { m.ptr } else { 0 };
    let args = vec![
        Arg::Ptr(w.ptr),
        Arg::Ptr(g.ptr),
        Arg::Ptr(m_ptr),
        Arg::F32(lr),
        Arg::F32(momentum),
        Arg::F32(weight_decay),
        Arg::U32(first_step as u32),
        Arg::U64(w.len as u64),
    ];
    Ok((w.len > 0).then(|| launch(Module::Optim, "sgd_step", w.len as u64, BLOCK as u64, geo, args)))
}

/// PyTorch AdamW at step t (1-based); the step's scalars come from the CPU's own function
pub fn adamw_step(w: Slice, g: Slice, m: Slice, v: Slice, h: &AdamW, t: u64, geo: Geometry) -> Result<Option<Launch>> {
    check_len("adamw_step", "grad", w.len, g.len)?;
    check_len("adamw_step", "first moment", w.len, m.len)?;
    check_len("adamw_step", "second moment", w.len, v.len)?;
    let (step, bc2_sqrt, decay) = crate::cpu::elementwise::adamw_scalars(h, t)?;
    let args = vec![
        Arg::Ptr(w.ptr),
        Arg::Ptr(g.ptr),
        Arg::Ptr(m.ptr),
        Arg::Ptr(v.ptr),
        Arg::F32(h.beta1),
        Arg::F32(h.beta2),
        Arg::F32(h.eps),
        Arg::F32(step),
        Arg::F32(bc2_sqrt),
        Arg::F32(decay),
        Arg::U64(w.len as u64),
    ];
    Ok((w.len > 0).then(|| launch(Module::Optim, "adamw_step", w.len as u64, BLOCK as u64, geo, args)))
}

/// buf = scale * snap(buf + std * z) (kernels/NOISE.md); the same argument checks as the CPU
pub fn add_normal(
    buf: Slice,
    std: f32,
    scale: f32,
    grid: f64,
    key: &NoiseKey,
    geo: Geometry,
) -> Result<Option<Launch>> {
    if !(std >= 0.0 && std.is_finite() && scale.is_finite()) {
        return Err(KernelError::Invalid {
            op: "add_normal",
            msg: format!("standard deviation must be finite and >= 0 (got {std}), scale finite (got {scale})"),
        });
    }
    crate::cpu::check_snapping_grid(grid)?;
    let params = NoiseParams {
        key: crate::cpu::chacha::key_words(&key.key),
        stream: key.stream,
        n: buf.len as u64,
        std_dev: std,
        scale,
        inv_grid: 1.0 / grid,
        grid_scale: grid * scale as f64,
    };
    // one block per chunk of 4096 elements
    Ok((buf.len > 0).then(|| {
        launch(Module::Noise, "add_normal", buf.len as u64, 4096, geo, vec![Arg::Ptr(buf.ptr), Arg::Noise(params)])
    }))
}

/// dst[r, dst_col .. dst_col + width] = src[r, src_col .. src_col + width] (see `Backend::copy_columns`)
#[allow(clippy::too_many_arguments)]
pub fn copy_columns(
    dst: Slice,
    dst_w: usize,
    dst_col: usize,
    src: Slice,
    src_w: usize,
    src_col: usize,
    width: usize,
    rows: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    if dst_col + width > dst_w || src_col + width > src_w {
        return Err(KernelError::Invalid {
            op: "copy_columns",
            msg: format!(
                "columns {dst_col}..{} of rows {dst_w} wide, from columns {src_col}..{} of rows {src_w} wide",
                dst_col + width,
                src_col + width
            ),
        });
    }
    check_len("copy_columns", "dst", rows * dst_w, dst.len)?;
    check_len("copy_columns", "src", rows * src_w, src.len)?;
    let n = rows * width;
    let args = vec![
        Arg::Ptr(dst.ptr),
        Arg::Ptr(src.ptr),
        Arg::U64(dst_w as u64),
        Arg::U64(dst_col as u64),
        Arg::U64(src_w as u64),
        Arg::U64(src_col as u64),
        Arg::U64(width as u64),
        Arg::U64(n as u64),
    ];
    Ok(elementwise("copy_columns", n, geo, args))
}

/// One warp per two rows (rows.cu): the blocks for `rows` rows.
fn row_pairs(kernel: &'static str, rows: usize, geo: Geometry, args: Vec<Arg>) -> Option<Launch> {
    (rows > 0).then(|| launch(Module::Rows, kernel, rows.div_ceil(2) as u64, (BLOCK / 32) as u64, geo, args))
}

/// x: [R, C] -> y: [R, C] =, mean: [R] =, rstd: [R] = (see `Backend::layer_norm_forward`); R is mean's length
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward(
    y: Slice,
    mean: Slice,
    rstd: Slice,
    x: Slice,
    gamma: Slice,
    beta: Slice,
    c: usize,
    eps: f32,
    geo: Geometry,
) -> Result<Option<Launch>> {
    let rows = mean.len;
    check_len("layer_norm_forward", "x", rows * c, x.len)?;
    check_len("layer_norm_forward", "y", rows * c, y.len)?;
    check_len("layer_norm_forward", "rstd", rows, rstd.len)?;
    check_len("layer_norm_forward", "gamma", c, gamma.len)?;
    check_len("layer_norm_forward", "beta", c, beta.len)?;
    if c == 0 {
        return Ok(None);
    }
    let args = vec![
        Arg::Ptr(y.ptr),
        Arg::Ptr(mean.ptr),
        Arg::Ptr(rstd.ptr),
        Arg::Ptr(x.ptr),
        Arg::Ptr(gamma.ptr),
        Arg::Ptr(beta.ptr),
        Arg::U64(c as u64),
        Arg::F32(eps),
        Arg::U64(rows as u64),
    ];
    Ok(row_pairs("layer_norm_forward", rows, geo, args))
}

/// dx: [R, C] =, dy_xhat: [R, C] = (see `Backend::layer_norm_backward`); R is mean's length
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    dx: Slice,
    dy_xhat: Slice,
    dy: Slice,
    x: Slice,
    gamma: Slice,
    mean: Slice,
    rstd: Slice,
    c: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    let rows = mean.len;
    check_len("layer_norm_backward", "x", rows * c, x.len)?;
    check_len("layer_norm_backward", "dy", rows * c, dy.len)?;
    check_len("layer_norm_backward", "dx", rows * c, dx.len)?;
    check_len("layer_norm_backward", "dy_xhat", rows * c, dy_xhat.len)?;
    check_len("layer_norm_backward", "rstd", rows, rstd.len)?;
    check_len("layer_norm_backward", "gamma", c, gamma.len)?;
    if c == 0 {
        return Ok(None);
    }
    let args = vec![
        Arg::Ptr(dx.ptr),
        Arg::Ptr(dy_xhat.ptr),
        Arg::Ptr(dy.ptr),
        Arg::Ptr(x.ptr),
        Arg::Ptr(gamma.ptr),
        Arg::Ptr(mean.ptr),
        Arg::Ptr(rstd.ptr),
        Arg::U64(c as u64),
        Arg::U64(rows as u64),
    ];
    Ok(row_pairs("layer_norm_backward", rows, geo, args))
}

/// att: [B, H, Tq, T] in place: the masked, scaled softmax (see `Backend::masked_softmax_forward`)
#[allow(clippy::too_many_arguments)]
pub fn masked_softmax_forward(
    att: Slice,
    mask: Slice,
    b: usize,
    h: usize,
    tq: usize,
    t: usize,
    scale: f32,
    fill: MaskFill,
    geo: Geometry,
) -> Result<Option<Launch>> {
    if let MaskFill::Add(v) = fill {
        if !v.is_finite() {
            return Err(KernelError::Invalid {
                op: "masked_softmax_forward",
                msg: format!("an additive mask value must be finite (MaskFill::NegInf is -inf), got {v}"),
            });
        }
    }
    check_len("masked_softmax_forward", "att", b * h * tq * t, att.len)?;
    check_len("masked_softmax_forward", "mask", b * t, mask.len)?;
    if t == 0 || tq == 0 {
        return Ok(None);
    }
    let (add_mode, add) = match fill {
        MaskFill::NegInf => (0, 0.0),
        MaskFill::Add(v) => (1, v),
    };
    let rows = b * h * tq;
    let args = vec![
        Arg::Ptr(att.ptr),
        Arg::Ptr(mask.ptr),
        Arg::U64((h * tq) as u64),
        Arg::U64(t as u64),
        Arg::F32(scale),
        Arg::U32(add_mode),
        Arg::F32(add),
        Arg::U64(rows as u64),
    ];
    Ok(row_pairs("masked_softmax_forward", rows, geo, args))
}

/// datt in place: scale * att * (datt - rowsum(datt * att)) over rows of T (see `Backend::softmax_backward`)
pub fn softmax_backward(datt: Slice, att: Slice, t: usize, scale: f32, geo: Geometry) -> Result<Option<Launch>> {
    check_len("softmax_backward", "datt", att.len, datt.len)?;
    if t == 0 {
        return Ok(None);
    }
    let rows = att.len.div_ceil(t);
    let args = vec![
        Arg::Ptr(datt.ptr),
        Arg::Ptr(att.ptr),
        Arg::U64(t as u64),
        Arg::F32(scale),
        Arg::U64(att.len as u64),
        Arg::U64(rows as u64),
    ];
    Ok(row_pairs("softmax_backward", rows, geo, args))
}

/// The CPU's check of token ids: the first id past the vocabulary is the error.
fn check_ids(op: &'static str, ids: &[u32], vocab: usize) -> Result<()> {
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(KernelError::Invalid { op, msg: format!("id {bad} out of range for a vocabulary of {vocab}") });
    }
    Ok(())
}

/// y: [R, D] (= or +=) table[ids[r], :]; `ids_host` is the ids' host copy, which the check reads
pub fn embedding_forward(
    y: Slice,
    ids: Slice,
    ids_host: &[u32],
    table: Slice,
    d: usize,
    accumulate: bool,
    geo: Geometry,
) -> Result<Option<Launch>> {
    check_len("embedding_forward", "ids", ids_host.len(), ids.len)?;
    check_len("embedding_forward", "y", ids.len * d, y.len)?;
    if d == 0 {
        return Ok(None);
    }
    if !table.len.is_multiple_of(d) {
        return Err(KernelError::Shape {
            op: "embedding_forward",
            what: "table (multiple of D)",
            expected: d,
            got: table.len,
        });
    }
    check_ids("embedding_forward", ids_host, table.len / d)?;
    let args = vec![
        Arg::Ptr(y.ptr),
        Arg::Ptr(ids.ptr),
        Arg::Ptr(table.ptr),
        Arg::U64(d as u64),
        Arg::U32(accumulate as u32),
        Arg::U64(y.len as u64),
    ];
    Ok((y.len > 0).then(|| launch(Module::Embedding, "embedding_forward", y.len as u64, BLOCK as u64, geo, args)))
}

/// The rows of each id, for the deterministic scatter of `embedding_backward`: the ids that occur
/// (`used`, increasing), and for used[u] its rows `rows[starts[u] .. starts[u + 1]]` in increasing order.
/// An id of more than [`EMBEDDING_CHUNK`] rows is summed in chunks of that many on threads of their
/// own: its chunks are `slots[u] .. slots[u + 1]`, chunk k being `rows[chunk_begin[k] .. chunk_end[k]]`
/// (`slots`, `chunk_begin` and `chunk_end` empty when no id has more than one chunk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScatterLists {
    pub used: Vec<u32>,
    pub starts: Vec<u64>,
    pub rows: Vec<u32>,
    pub slots: Vec<u64>,
    pub chunk_begin: Vec<u64>,
    pub chunk_end: Vec<u64>,
}

/// The CPU's checks of `embedding_backward` in its order, then the scatter lists (`None`: D = 0, nothing
/// to do). `factors_len` is the factors' length when there are factors.
pub fn embedding_backward_lists(
    dtable_len: usize,
    ids_host: &[u32],
    dy_len: usize,
    d: usize,
    factors_len: Option<usize>,
    layout: &GroupRows,
    rows_per_example: usize,
) -> Result<Option<ScatterLists>> {
    check_len("embedding_backward", "dy", ids_host.len() * d, dy_len)?;
    check_len("embedding_backward", "ids", layout.examples() * rows_per_example, ids_host.len())?;
    if let Some(f) = factors_len {
        check_len("embedding_backward", "factors", layout.groups(), f)?;
    }
    if d == 0 {
        return Ok(None);
    }
    let vocab = dtable_len / d;
    check_len("embedding_backward", "dtable", vocab * d, dtable_len)?;
    check_ids("embedding_backward", ids_host, vocab)?;
    if ids_host.len() > u32::MAX as usize {
        return Err(KernelError::Invalid {
            op: "embedding_backward",
            msg: format!("{} rows (at most 2^32 - 1)", ids_host.len()),
        });
    }
    // a counting sort by id (rows in increasing order within an id): linear in rows + vocabulary,
    // where sorting (id, row) pairs took 3.2 ms for notes-bert's 131k word ids at B = 1024
    let mut next = vec![0u32; vocab + 1];
    for &id in ids_host {
        next[id as usize + 1] += 1;
    }
    let mut lists = ScatterLists {
        used: Vec::new(),
        starts: Vec::new(),
        rows: vec![0; ids_host.len()],
        slots: Vec::new(),
        chunk_begin: Vec::new(),
        chunk_end: Vec::new(),
    };
    for id in 0..vocab {
        if next[id + 1] > 0 {
            lists.used.push(id as u32);
            lists.starts.push(next[id] as u64);
        }
        next[id + 1] += next[id];
    }
    lists.starts.push(ids_host.len() as u64);
    // next[id]: where id's next row goes
    for (r, &id) in ids_host.iter().enumerate() {
        let at = &mut next[id as usize];
        lists.rows[*at as usize] = r as u32;
        *at += 1;
    }
    if lists.starts.windows(2).any(|w| w[1] - w[0] > EMBEDDING_CHUNK as u64) {
        lists.slots.push(0);
        for w in lists.starts.windows(2) {
            if w[1] - w[0] > EMBEDDING_CHUNK as u64 {
                for begin in (w[0]..w[1]).step_by(EMBEDDING_CHUNK) {
                    lists.chunk_begin.push(begin);
                    lists.chunk_end.push((begin + EMBEDDING_CHUNK as u64).min(w[1]));
                }
            }
            lists.slots.push(lists.chunk_begin.len() as u64);
        }
    }
    Ok(Some(lists))
}

/// The device copies of [`ScatterLists`] (`slots`, `chunk_begin`, `chunk_end` with ptr 0 when empty).
#[derive(Clone, Copy, Debug)]
pub struct ScatterSlices {
    pub used: Slice,
    pub starts: Slice,
    pub rows: Slice,
    pub slots: Slice,
    pub chunk_begin: Slice,
    pub chunk_end: Slice,
}

/// partial: [P, D] = the sums of the chunks of the ids with several (`EMBEDDING_CHUNK`), the first of
/// `embedding_backward`'s two launches (none when no id has several chunks); `factors` has ptr 0 when
/// there are none; `example_group` is the layout's map from [`group_maps`]
#[allow(clippy::too_many_arguments)]
pub fn embedding_backward_chunks(
    partial: Slice,
    dy: Slice,
    factors: Slice,
    example_group: Slice,
    lists: &ScatterSlices,
    d: usize,
    rows_per_example: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    check_len("embedding_backward", "chunk ends", lists.chunk_begin.len, lists.chunk_end.len)?;
    check_len("embedding_backward", "chunk sums", lists.chunk_begin.len * d, partial.len)?;
    let n = partial.len;
    let args = vec![
        Arg::Ptr(partial.ptr),
        Arg::Ptr(dy.ptr),
        Arg::Ptr(factors.ptr),
        Arg::Ptr(example_group.ptr),
        Arg::Ptr(lists.chunk_begin.ptr),
        Arg::Ptr(lists.chunk_end.ptr),
        Arg::Ptr(lists.rows.ptr),
        Arg::U64(d as u64),
        Arg::U64(rows_per_example as u64),
        Arg::U64(n as u64),
    ];
    Ok((n > 0).then(|| launch(Module::Embedding, "embedding_backward_chunks", n as u64, BLOCK as u64, geo, args)))
}

/// dtable: [V, D] += w_r dy[r, :] at ids[r] (see `Backend::embedding_backward`), from the lists of
/// [`embedding_backward_lists`] and the chunk sums of [`embedding_backward_chunks`] (`partial`, ptr 0
/// when no id has several chunks); `factors` has ptr 0 when there are none; `example_group` is the
/// layout's map from [`group_maps`]
#[allow(clippy::too_many_arguments)]
pub fn embedding_backward(
    dtable: Slice,
    dy: Slice,
    factors: Slice,
    example_group: Slice,
    lists: &ScatterSlices,
    partial: Slice,
    d: usize,
    rows_per_example: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    check_len("embedding_backward", "list starts", lists.used.len + 1, lists.starts.len)?;
    if lists.slots.len > 0 {
        check_len("embedding_backward", "list slots", lists.used.len + 1, lists.slots.len)?;
    }
    check_len("embedding_backward", "chunk sums", lists.chunk_begin.len * d, partial.len)?;
    let n = lists.used.len * d;
    let args = vec![
        Arg::Ptr(dtable.ptr),
        Arg::Ptr(dy.ptr),
        Arg::Ptr(factors.ptr),
        Arg::Ptr(example_group.ptr),
        Arg::Ptr(lists.used.ptr),
        Arg::Ptr(lists.starts.ptr),
        Arg::Ptr(lists.rows.ptr),
        Arg::Ptr(lists.slots.ptr),
        Arg::Ptr(partial.ptr),
        Arg::U64(d as u64),
        Arg::U64(rows_per_example as u64),
        Arg::U64(n as u64),
    ];
    Ok((n > 0).then(|| launch(Module::Embedding, "embedding_backward", n as u64, BLOCK as u64, geo, args)))
}

/// The CPU's checks of `embedding_group_sq_norms`, then each group's rows sorted by (id, row), the
/// order in which the CPU sums them.
pub fn embedding_group_order(
    out_len: usize,
    ids_host: &[u32],
    dy_len: usize,
    d: usize,
    layout: &GroupRows,
    rows_per_example: usize,
) -> Result<Vec<u32>> {
    check_len("embedding_group_sq_norms", "out", layout.groups(), out_len)?;
    check_len("embedding_group_sq_norms", "ids", layout.examples() * rows_per_example, ids_host.len())?;
    check_len("embedding_group_sq_norms", "dy", ids_host.len() * d, dy_len)?;
    if ids_host.len() > u32::MAX as usize {
        return Err(KernelError::Invalid {
            op: "embedding_group_sq_norms",
            msg: format!("{} rows (at most 2^32 - 1)", ids_host.len()),
        });
    }
    let (n, groups) = (ids_host.len(), layout.groups());
    let top = ids_host.iter().copied().max().map_or(0, |m| m as usize + 1);
    if rows_per_example == 0 || top > 4 * n + (1 << 16) {
        // ids far above the rows' count: sorting each group beats counting over the ids' range
        let mut order = Vec::with_capacity(n);
        for g in 0..groups {
            let mut rows: Vec<u64> =
                layout.rows(g, rows_per_example).map(|r| (ids_host[r] as u64) << 32 | r as u64).collect();
            rows.sort_unstable();
            order.extend(rows.into_iter().map(|k| k as u32));
        }
        return Ok(order);
    }
    // every row by (id, row) with a counting sort, then dealt to its group in that order: each group's
    // rows come out by (id, row), in linear time (sorting each group took 1.7 ms at notes-bert's B = 1024)
    let mut next = vec![0u32; top + 1];
    for &id in ids_host {
        next[id as usize + 1] += 1;
    }
    for id in 0..top {
        next[id + 1] += next[id];
    }
    let mut by_id = vec![0u32; n];
    for (r, &id) in ids_host.iter().enumerate() {
        let at = &mut next[id as usize];
        by_id[*at as usize] = r as u32;
        *at += 1;
    }
    let mut group_of = vec![0u32; layout.examples()];
    let mut cursor = Vec::with_capacity(groups);
    let mut at = 0usize;
    for g in 0..groups {
        group_of[layout.offsets[g]..layout.offsets[g + 1]].fill(g as u32);
        cursor.push(at);
        at += layout.rows(g, rows_per_example).len();
    }
    let mut order = vec![0u32; n];
    for r in by_id {
        let c = &mut cursor[group_of[r as usize / rows_per_example] as usize];
        order[*c] = r;
        *c += 1;
    }
    Ok(order)
}

/// out: [G] += per-group squared norms of the scattered embedding gradient, from the order of
/// [`embedding_group_order`] (`order`, its device copy) and the layout's u64 `offsets`
#[allow(clippy::too_many_arguments)]
pub fn embedding_group_sq_norms(
    out: Slice,
    ids: Slice,
    dy: Slice,
    offsets: Slice,
    order: Slice,
    d: usize,
    rows_per_example: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    check_len("embedding_group_sq_norms", "offsets", out.len + 1, offsets.len)?;
    check_len("embedding_group_sq_norms", "order", ids.len, order.len)?;
    let args = vec![
        Arg::Ptr(out.ptr),
        Arg::Ptr(ids.ptr),
        Arg::Ptr(dy.ptr),
        Arg::Ptr(offsets.ptr),
        Arg::Ptr(order.ptr),
        Arg::U64(d as u64),
        Arg::U64(rows_per_example as u64),
        Arg::U64(out.len as u64),
    ];
    // one warp per group
    Ok((out.len > 0)
        .then(|| launch(Module::Embedding, "embedding_group_sq_norms", out.len as u64, (BLOCK / 32) as u64, geo, args)))
}

fn loss_launch(kernel: &'static str, n: usize, geo: Geometry, args: Vec<Arg>) -> Option<Launch> {
    (n > 0).then(|| launch(Module::Loss, kernel, n as u64, BLOCK as u64, geo, args))
}

/// h: [B, T, C], mask: [B, T] -> out: [B, C] = masked mean over T (see `Backend::masked_mean_pool_forward`)
pub fn masked_mean_pool_forward(
    out: Slice,
    h: Slice,
    mask: Slice,
    t: usize,
    c: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    masked_mean_pool("masked_mean_pool_forward", out, h, mask, ("h", h.len), ("out", out.len), t, c, geo)
}

/// dh: [B, T, C] = dout[b, :] m[b, t] / max(sum_t m, 1) (see `Backend::masked_mean_pool_backward`)
pub fn masked_mean_pool_backward(
    dh: Slice,
    dout: Slice,
    mask: Slice,
    t: usize,
    c: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    masked_mean_pool("masked_mean_pool_backward", dh, dout, mask, ("dh", dh.len), ("dout", dout.len), t, c, geo)
}

/// Both directions of the masked mean pool: the same checks (mask, then the [B, T, C] buffer `steps`,
/// then the [B, C] buffer `rows`, as the CPU checks them) and one thread per (b, c); the kernel `op`
/// takes (dst, src, mask, t, c, n).
#[allow(clippy::too_many_arguments)]
fn masked_mean_pool(
    op: &'static str,
    dst: Slice,
    src: Slice,
    mask: Slice,
    steps: (&'static str, usize),
    rows: (&'static str, usize),
    t: usize,
    c: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    let b = mask.len.checked_div(t).unwrap_or(0);
    check_len(op, "mask", b * t, mask.len)?;
    check_len(op, steps.0, b * t * c, steps.1)?;
    check_len(op, rows.0, b * c, rows.1)?;
    if c == 0 || t == 0 {
        return Ok(None);
    }
    let n = b * c;
    let args = vec![
        Arg::Ptr(dst.ptr),
        Arg::Ptr(src.ptr),
        Arg::Ptr(mask.ptr),
        Arg::U64(t as u64),
        Arg::U64(c as u64),
        Arg::U64(n as u64),
    ];
    Ok(loss_launch(op, n, geo, args))
}

/// losses, dlogits: [B] of the binary cross-entropy with logits (see `Backend::bce_with_logits`)
pub fn bce_with_logits(
    losses: Slice,
    dlogits: Slice,
    logits: Slice,
    targets: Slice,
    grad_scale: f32,
    geo: Geometry,
) -> Result<Option<Launch>> {
    let b = logits.len;
    check_len("bce_with_logits", "targets", b, targets.len)?;
    check_len("bce_with_logits", "losses", b, losses.len)?;
    check_len("bce_with_logits", "dlogits", b, dlogits.len)?;
    let args = vec![
        Arg::Ptr(losses.ptr),
        Arg::Ptr(dlogits.ptr),
        Arg::Ptr(logits.ptr),
        Arg::Ptr(targets.ptr),
        Arg::F32(grad_scale),
        Arg::U64(b as u64),
    ];
    Ok(loss_launch("bce_with_logits", b, geo, args))
}

/// losses, dlogits: [B] of the squared error or the Huber loss (see `Backend::regression_loss`)
#[allow(clippy::too_many_arguments)]
pub fn regression_loss(
    losses: Slice,
    dlogits: Slice,
    preds: Slice,
    targets: Slice,
    huber: Option<f32>,
    grad_scale: f32,
    geo: Geometry,
) -> Result<Option<Launch>> {
    let b = preds.len;
    check_len("regression_loss", "targets", b, targets.len)?;
    check_len("regression_loss", "losses", b, losses.len)?;
    check_len("regression_loss", "dlogits", b, dlogits.len)?;
    if let Some(d) = huber {
        if !(d > 0.0 && d.is_finite()) {
            return Err(KernelError::Invalid {
                op: "regression_loss",
                msg: format!("Huber delta {d} is not positive"),
            });
        }
    }
    let args = vec![
        Arg::Ptr(losses.ptr),
        Arg::Ptr(dlogits.ptr),
        Arg::Ptr(preds.ptr),
        Arg::Ptr(targets.ptr),
        Arg::U32(huber.is_some() as u32),
        Arg::F32(huber.unwrap_or(0.0)),
        Arg::F32(grad_scale),
        Arg::U64(b as u64),
    ];
    Ok(loss_launch("regression_loss", b, geo, args))
}

/// losses: [B], dlogits: [B, K] of the softmax cross-entropy (see `Backend::cross_entropy`);
/// `classes_host` is the classes' host copy, which the CPU's range check reads
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy(
    losses: Slice,
    dlogits: Slice,
    logits: Slice,
    classes: Slice,
    classes_host: &[u32],
    k: usize,
    grad_scale: f32,
    geo: Geometry,
) -> Result<Option<Launch>> {
    check_len("cross_entropy", "classes", classes_host.len(), classes.len)?;
    let b = classes.len;
    check_len("cross_entropy", "logits", b * k, logits.len)?;
    check_len("cross_entropy", "dlogits", b * k, dlogits.len)?;
    check_len("cross_entropy", "losses", b, losses.len)?;
    if let Some(&bad) = classes_host.iter().find(|&&c| c as usize >= k) {
        return Err(KernelError::Invalid {
            op: "cross_entropy",
            msg: format!("class {bad} out of range for {k} classes"),
        });
    }
    let args = vec![
        Arg::Ptr(losses.ptr),
        Arg::Ptr(dlogits.ptr),
        Arg::Ptr(logits.ptr),
        Arg::Ptr(classes.ptr),
        Arg::U64(k as u64),
        Arg::F32(grad_scale),
        Arg::U64(b as u64),
    ];
    Ok(loss_launch("cross_entropy", b, geo, args))
}

/// The CPU's check of a GRU step: inside the sequence, and `b * steps * 3 * hidden` fits in usize;
/// returns the rows (b * steps).
fn gru_check(op: &'static str, b: usize, steps: usize, t: usize, hidden: usize) -> Result<usize> {
    if t >= steps {
        return Err(KernelError::Invalid { op, msg: format!("step {t} of a sequence of {steps}") });
    }
    let rows = b.checked_mul(steps);
    if rows.and_then(|r| r.checked_mul(3)).and_then(|r| r.checked_mul(hidden)).is_none() {
        return Err(KernelError::Invalid { op, msg: format!("{b} x {steps} x {hidden} is too large") });
    }
    Ok(rows.unwrap_or(0))
}

/// One GRU step forward (see `Backend::gru_step_forward`)
#[allow(clippy::too_many_arguments)]
pub fn gru_step_forward(
    h: Slice,
    h_prev: Slice,
    gates: Slice,
    gi: Slice,
    gh: Slice,
    b: usize,
    steps: usize,
    t: usize,
    hidden: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    const OP: &str = "gru_step_forward";
    let (rows, k) = (gru_check(OP, b, steps, t, hidden)?, hidden);
    check_len(OP, "h", rows * k, h.len)?;
    check_len(OP, "h_prev", rows * k, h_prev.len)?;
    check_len(OP, "gates", rows * 3 * k, gates.len)?;
    check_len(OP, "gi", rows * 3 * k, gi.len)?;
    check_len(OP, "gh", rows * 3 * k, gh.len)?;
    let n = b * k;
    let args = vec![
        Arg::Ptr(h.ptr),
        Arg::Ptr(h_prev.ptr),
        Arg::Ptr(gates.ptr),
        Arg::Ptr(gi.ptr),
        Arg::Ptr(gh.ptr),
        Arg::U64(steps as u64),
        Arg::U64(t as u64),
        Arg::U64(k as u64),
        Arg::U64(n as u64),
    ];
    Ok((n > 0).then(|| launch(Module::Gru, "gru_step_forward", n as u64, BLOCK as u64, geo, args)))
}

/// One GRU step backward (see `Backend::gru_step_backward`)
#[allow(clippy::too_many_arguments)]
pub fn gru_step_backward(
    dgi: Slice,
    dgh: Slice,
    carry: Slice,
    dy: Slice,
    gates: Slice,
    gh: Slice,
    h_prev: Slice,
    b: usize,
    steps: usize,
    t: usize,
    hidden: usize,
    geo: Geometry,
) -> Result<Option<Launch>> {
    const OP: &str = "gru_step_backward";
    let (rows, k) = (gru_check(OP, b, steps, t, hidden)?, hidden);
    check_len(OP, "dgi", rows * 3 * k, dgi.len)?;
    check_len(OP, "dgh", rows * 3 * k, dgh.len)?;
    check_len(OP, "carry", b * k, carry.len)?;
    check_len(OP, "dy", rows * k, dy.len)?;
    check_len(OP, "gates", rows * 3 * k, gates.len)?;
    check_len(OP, "gh", rows * 3 * k, gh.len)?;
    check_len(OP, "h_prev", rows * k, h_prev.len)?;
    let n = b * k;
    let args = vec![
        Arg::Ptr(dgi.ptr),
        Arg::Ptr(dgh.ptr),
        Arg::Ptr(carry.ptr),
        Arg::Ptr(dy.ptr),
        Arg::Ptr(gates.ptr),
        Arg::Ptr(gh.ptr),
        Arg::Ptr(h_prev.ptr),
        Arg::U64(steps as u64),
        Arg::U64(t as u64),
        Arg::U64(k as u64),
        Arg::U64(n as u64),
    ];
    Ok((n > 0).then(|| launch(Module::Gru, "gru_step_backward", n as u64, BLOCK as u64, geo, args)))
}

/// One cuBLAS `sgemmStridedBatched` call, in cuBLAS' column-major terms: the row-major product
/// C = A·B is the column-major C^T = B^T·A^T, so cuBLAS' first operand is B's storage and its second
/// A's. Element offsets, leading dimensions and batch strides are in f32 elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CublasGemm {
    /// whether cuBLAS reads its first operand (B's storage) transposed: B is stored as read (row-major)
    pub trans_a: bool,
    /// whether cuBLAS reads its second operand (A's storage) transposed
    pub trans_b: bool,
    /// cuBLAS' m, n, k: our n, m, k
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub alpha: f32,
    pub beta: f32,
    pub a_offset: usize,
    pub lda: i32,
    pub stride_a: i64,
    pub b_offset: usize,
    pub ldb: i32,
    pub stride_b: i64,
    pub c_offset: usize,
    pub ldc: i32,
    pub stride_c: i64,
    pub batch: i32,
}

fn to_i32(what: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| KernelError::Invalid { op: "gemm", msg: format!("{what} {v} is past cuBLAS' 32-bit int") })
}

/// The CPU's checks of `Backend::gemm` (buffer extents, an untransposed C whose rows do not overlap,
/// disjoint batch outputs), then the cuBLAS call that computes it (`None`: nothing to do).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    c_len: usize,
    cv: MatView,
    a_len: usize,
    av: MatView,
    b_len: usize,
    bv: MatView,
    g: Gemm,
) -> Result<Option<CublasGemm>> {
    let Gemm { m, n, k, batch, alpha, beta } = g;
    check_min_len("gemm", "C", cv.extent(m, n, batch), c_len)?;
    check_min_len("gemm", "A", av.extent(m, k, batch), a_len)?;
    check_min_len("gemm", "B", bv.extent(k, n, batch), b_len)?;
    if cv.trans {
        return Err(KernelError::Invalid { op: "gemm", msg: "the output C cannot be a transposed view".into() });
    }
    if m > 1 && cv.ld < n {
        return Err(KernelError::Invalid {
            op: "gemm",
            msg: format!("C's leading dimension {} is below its {n} columns", cv.ld),
        });
    }
    if m == 0 || n == 0 || batch == 0 {
        return Ok(None);
    }
    let single = cv.extent(m, n, 1).saturating_sub(cv.offset);
    if batch > 1 && cv.batch_stride < single {
        return Err(KernelError::Invalid { op: "gemm", msg: format!("batched outputs overlap: {cv:?} for {g:?}") });
    }
    // A leading dimension that no element uses (a matrix of one stored row) may be anything here, but
    // cuBLAS wants at least the stored column count: it gets that.
    // B [k, n] row-major is column-major [n, k] (op N, ld >= n; k stored rows); transposed it is
    // column-major [k, n] read transposed (op T, ld >= k; n stored rows).
    let (b_rows, b_min) = if bv.trans { (n, k) } else { (k, n) };
    let lda = if b_rows <= 1 { bv.ld.max(b_min) } else { bv.ld };
    let (a_rows, a_min) = if av.trans { (k, m) } else { (m, k) };
    let ldb = if a_rows <= 1 { av.ld.max(a_min) } else { av.ld };
    let ldc = if m <= 1 { cv.ld.max(n) } else { cv.ld };
    let stride = |what, s: usize| {
        i64::try_from(s).map_err(|_| KernelError::Invalid { op: "gemm", msg: format!("{what} {s} too large") })
    };
    Ok(Some(CublasGemm {
        trans_a: bv.trans,
        trans_b: av.trans,
        m: to_i32("n", n)?,
        n: to_i32("m", m)?,
        k: to_i32("k", k)?,
        alpha,
        beta,
        a_offset: bv.offset,
        lda: to_i32("B's leading dimension", lda.max(1))?,
        stride_a: stride("B's batch stride", bv.batch_stride)?,
        b_offset: av.offset,
        ldb: to_i32("A's leading dimension", ldb.max(1))?,
        stride_b: stride("A's batch stride", av.batch_stride)?,
        c_offset: cv.offset,
        ldc: to_i32("C's leading dimension", ldc.max(1))?,
        stride_c: stride("C's batch stride", cv.batch_stride)?,
        batch: to_i32("batch", batch)?,
    }))
}

/// What cuBLAS computes for `call` (column-major, strided batched), on host buffers, in f64 then
/// rounded: a reference for the tests that the mapping of [`gemm`] is the product the CPU computes.
pub fn cublas_reference(call: &CublasGemm, c: &mut [f32], a: &[f32], b: &[f32]) {
    let (m, n, k) = (call.m as usize, call.n as usize, call.k as usize);
    for p in 0..call.batch as usize {
        let (ao, bo, co) = (
            call.a_offset + p * call.stride_a as usize,
            call.b_offset + p * call.stride_b as usize,
            call.c_offset + p * call.stride_c as usize,
        );
        for j in 0..n {
            for i in 0..m {
                let mut s = 0.0f64;
                for l in 0..k {
                    // op(A)(i, l) and op(B)(l, j), column-major
                    let x = if call.trans_a {
                        a[ao + l + i * call.lda as usize]
                    } else {
                        a[ao + i + l * call.lda as usize]
                    };
                    let y = if call.trans_b {
                        b[bo + j + l * call.ldb as usize]
                    } else {
                        b[bo + l + j * call.ldb as usize]
                    };
                    s += x as f64 * y as f64;
                }
                let e = &mut c[co + i + j * call.ldc as usize];
                let old = if call.beta == 0.0 { 0.0 } else { call.beta as f64 * *e as f64 };
                *e = (old + call.alpha as f64 * s) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, Cpu};

    #[test]
    fn the_counting_sorts_give_the_order_of_sorting_id_row_pairs() {
        let mut state = 12345u64;
        let mut next = move |m: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        let mut long_ids = false;
        for case in 0..40 {
            let rpe = 1 + next(5) as usize;
            // every tenth case large enough for ids of several chunks (EMBEDDING_CHUNK rows each)
            let examples = if case % 10 == 9 { 100 + next(100) as usize } else { next(30) as usize };
            // groups of 0 to 3 examples
            let mut offsets = vec![0];
            while *offsets.last().unwrap() < examples {
                offsets.push((offsets.last().unwrap() + next(4) as usize).min(examples));
            }
            let layout = GroupRows { offsets };
            // small vocabularies (many repeats), and ids far above the rows' count (the fallback)
            let vocab = if case % 4 == 3 { 1 << 20 } else { 1 + next(12) as u32 };
            let ids: Vec<u32> = (0..examples * rpe).map(|_| next(vocab as u64) as u32).collect();
            let d = 3;
            let mut pairs: Vec<(u32, u32)> = ids.iter().enumerate().map(|(r, &id)| (id, r as u32)).collect();
            pairs.sort_unstable();
            let lists = embedding_backward_lists(vocab as usize * d, &ids, ids.len() * d, d, None, &layout, rpe)
                .unwrap()
                .unwrap();
            assert_eq!(lists.rows, pairs.iter().map(|p| p.1).collect::<Vec<_>>(), "case {case}");
            let mut used: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            used.dedup();
            assert_eq!(lists.used, used, "case {case}");
            for (u, &id) in lists.used.iter().enumerate() {
                let (a, b) = (lists.starts[u] as usize, lists.starts[u + 1] as usize);
                assert!(a < b && lists.rows[a..b].iter().all(|&r| ids[r as usize] == id), "case {case}");
                // an id of several chunks: its rows cut in order into chunks of EMBEDDING_CHUNK
                let chunks = match lists.slots.is_empty() {
                    true => 0..0,
                    false => lists.slots[u] as usize..lists.slots[u + 1] as usize,
                };
                let want: Vec<(u64, u64)> = match b - a > EMBEDDING_CHUNK {
                    true => (a..b)
                        .step_by(EMBEDDING_CHUNK)
                        .map(|c| (c as u64, (c + EMBEDDING_CHUNK).min(b) as u64))
                        .collect(),
                    false => vec![],
                };
                let got: Vec<(u64, u64)> = chunks.map(|k| (lists.chunk_begin[k], lists.chunk_end[k])).collect();
                assert_eq!(got, want, "case {case}, id {id}");
            }
            long_ids |= lists.starts.windows(2).any(|w| w[1] - w[0] > EMBEDDING_CHUNK as u64);
            assert_eq!(lists.slots.is_empty(), lists.chunk_begin.is_empty(), "case {case}");
            let mut want = vec![];
            for g in 0..layout.groups() {
                let mut rows: Vec<(u32, u32)> = layout.rows(g, rpe).map(|r| (ids[r], r as u32)).collect();
                rows.sort_unstable();
                want.extend(rows.into_iter().map(|p| p.1));
            }
            let got = embedding_group_order(layout.groups(), &ids, ids.len() * d, d, &layout, rpe).unwrap();
            assert_eq!(got, want, "case {case}");
        }
        assert!(long_ids, "no case had an id of several chunks");
    }

    /// The gemm shapes of the tests: plain, transposed operands, a column block of a wider C (ld > n),
    /// offsets, attention-like batches, one-row and one-column operands whose unused leading dimension
    /// is below cuBLAS' minimum, k = 0, accumulation and alpha.
    pub fn gemm_cases() -> Vec<(MatView, MatView, MatView, Gemm)> {
        let rm = MatView::row_major;
        vec![
            (rm(0, 5), rm(0, 7), rm(0, 5), Gemm::new(3, 5, 7)),
            (rm(0, 5), MatView::transposed(0, 3), rm(0, 5), Gemm::new(3, 5, 7)),
            (rm(0, 5), rm(0, 7), MatView::transposed(0, 7), Gemm::new(3, 5, 7).accumulate()),
            (rm(2, 5).with_ld(9), MatView::transposed(1, 3), MatView::transposed(0, 7), Gemm::new(3, 5, 7).alpha(0.5)),
            // batches: one head's column block of each example's rows (items 5 rows apart, ld > n)
            (
                rm(1, 4).with_ld(12).batched(60),
                rm(2, 6).with_ld(18).batched(90),
                rm(3, 4).with_ld(12).batched(72),
                Gemm::new(5, 4, 6).batched(3),
            ),
            (
                rm(0, 4).batched(20),
                rm(0, 6).batched(30),
                MatView::transposed(0, 6).batched(24).with_ld(6),
                Gemm::new(5, 4, 6).batched(2).accumulate(),
            ),
            // B shared by every item (batch stride 0)
            (rm(0, 3).batched(6), rm(0, 4).batched(8), rm(0, 3), Gemm::new(2, 3, 4).batched(3)),
            // one row of C, one stored row of A and of B, with leading dimensions that no element uses
            (rm(0, 1), rm(0, 1), rm(0, 1), Gemm::new(1, 1, 6)),
            (rm(0, 6).with_ld(1), rm(0, 9).with_ld(2), rm(0, 6), Gemm::new(1, 6, 9)),
            (rm(0, 4), rm(0, 1), rm(0, 4).with_ld(1), Gemm::new(7, 4, 1)),
            (rm(0, 4), MatView::transposed(0, 1).with_ld(1), MatView::transposed(0, 1).with_ld(1), Gemm::new(1, 4, 1)),
            (rm(0, 4), rm(0, 3), rm(0, 4), Gemm::new(2, 4, 0).accumulate().alpha(2.0)),
            (rm(0, 4), rm(0, 3), rm(0, 4), Gemm::new(2, 4, 0)),
        ]
    }

    fn value(i: usize) -> f32 {
        ((i * 7919 % 1000) as f32 - 500.0) / 250.0
    }

    /// The cuBLAS call of every case, computed as cuBLAS defines it, is the CPU's product (within f32
    /// rounding of both against the f64 sums): the column-major mapping, the transposes, leading
    /// dimensions, offsets and batch strides are right. cuBLAS itself runs only on a GPU
    /// (tests/cuda_device.rs).
    #[test]
    fn the_cublas_call_of_each_gemm_is_the_cpus_product() {
        for (i, &(cv, av, bv, g)) in gemm_cases().iter().enumerate() {
            let (c_len, a_len, b_len) =
                (cv.extent(g.m, g.n, g.batch) + 3, av.extent(g.m, g.k, g.batch) + 2, bv.extent(g.k, g.n, g.batch) + 1);
            let a: Vec<f32> = (0..a_len).map(value).collect();
            let b: Vec<f32> = (0..b_len).map(|j| value(j + 333)).collect();
            let c0: Vec<f32> = (0..c_len).map(|j| value(j + 777)).collect();
            let mut want = c0.clone();
            crate::cpu::gemm_naive(&mut want, cv, &a, av, &b, bv, g);
            let mut cpu = c0.clone();
            Cpu::new(1).unwrap().gemm(&mut cpu, cv, &a, av, &b, bv, g).unwrap();
            let call = gemm(c_len, cv, a_len, av, b_len, bv, g).unwrap().expect("a product");
            assert!(call.lda >= if call.trans_a { call.k } else { call.m }.max(1), "case {i}: lda {call:?}");
            assert!(call.ldb >= if call.trans_b { call.n } else { call.k }.max(1), "case {i}: ldb {call:?}");
            assert!(call.ldc >= call.m.max(1), "case {i}: ldc {call:?}");
            let mut got = c0.clone();
            cublas_reference(&call, &mut got, &b, &a);
            for (j, ((&x, &y), &z)) in got.iter().zip(&want).zip(&cpu).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "case {i} element {j}: cuBLAS call {x} vs f64 reference {y}");
                assert!((z - y).abs() <= 1e-5 * y.abs().max(1.0), "case {i} element {j}: CPU {z} vs {y}");
            }
        }
    }

    #[test]
    fn gemm_refuses_what_the_cpu_refuses() {
        let rm = MatView::row_major;
        let cases = [
            (rm(0, 5), rm(0, 7), rm(0, 5), Gemm::new(3, 5, 7), 14, 21, 35),
            (MatView::transposed(0, 5), rm(0, 7), rm(0, 5), Gemm::new(3, 5, 7), 15, 21, 35),
            (rm(0, 5).with_ld(4), rm(0, 7), rm(0, 5), Gemm::new(3, 5, 7), 15, 21, 35),
            (rm(0, 5).batched(10), rm(0, 7).batched(21), rm(0, 5), Gemm::new(3, 5, 7).batched(2), 30, 42, 35),
            (rm(0, 5), rm(0, 7), rm(0, 5), Gemm::new(3, 5, 7), 15, 21, 34),
        ];
        for (cv, av, bv, g, c_len, a_len, b_len) in cases {
            let cpu =
                Cpu::new(1).unwrap().gemm(&mut vec![0.0; c_len], cv, &vec![0.0; a_len], av, &vec![0.0; b_len], bv, g);
            assert_eq!(gemm(c_len, cv, a_len, av, b_len, bv, g).unwrap_err(), cpu.unwrap_err());
        }
        assert_eq!(
            gemm(
                0,
                MatView::row_major(0, 5),
                0,
                MatView::row_major(0, 7),
                35,
                MatView::row_major(0, 5),
                Gemm::new(0, 5, 7)
            )
            .unwrap(),
            None
        );
    }
}
