//! The CUDA kernels without a GPU: every .cu of kernels/src/cuda, compiled as C++ with an emulation of
//! CUDA threads (kernels/src/cuda/emu/cuda_emu.h, built by the medtrain-cuda-emu crate), runs the
//! launches of the backend's plans (the same grids and argument lists a device gets) and is compared
//! with the CPU backend by the bodies of tests/common/cuda.rs: bit for bit, the noise against the
//! checked-in vectors of kernels/NOISE.md. Each body runs three times: plain, under AddressSanitizer +
//! UndefinedBehaviorSanitizer, and under ThreadSanitizer (skipped, saying why, where the C++ compiler
//! cannot build a sanitizer). The planted bugs of emu/planted.cu show that the sanitizers catch a missing
//! bounds guard and a missing barrier.

mod common;
use common::cuda::Kernels;
use cuda_emu::{Emulator, Flavor};
use kernels::backend::{Activation, AdamW, GroupRows, MaskFill, NoiseKey};
use kernels::cuda::plan::{self, Arg, Geometry, Launch, Slice};
use kernels::cuda::source::Module;
use kernels::Result;

/// At most 2 blocks: every grid-stride loop of a 1000-element launch (4 blocks' worth) runs twice, and
/// the noise kernel's 3 chunks make its chunk loop run twice in one block.
const GEO: Geometry = Geometry { max_blocks: 2 };

/// A host buffer of a launch.
enum Host<'a> {
    F32(&'a [f32]),
    U32(&'a [u32]),
    U64(&'a [u64]),
}

impl Host<'_> {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Host::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Host::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Host::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    fn len(&self) -> usize {
        match self {
            Host::F32(v) => v.len(),
            Host::U32(v) => v.len(),
            Host::U64(v) => v.len(),
        }
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// The kernels run by an emulator process. Buffer i of a launch has the made-up device address i + 1
/// (0 is null), which `launch` turns back into the buffer's index.
struct Emu {
    emu: Emulator,
    flavor: Flavor,
}

impl Emu {
    /// Runs the plan that `plan` makes for `buffers` (given as `Slice`s in the same order) and returns
    /// the buffers' bytes afterwards; a refused plan is returned as the plan's error.
    fn run(&mut self, buffers: &[Host], plan: impl FnOnce(&[Slice]) -> Result<Option<Launch>>) -> Result<Vec<Vec<u8>>> {
        let slices: Vec<Slice> =
            buffers.iter().enumerate().map(|(i, b)| Slice { ptr: i as u64 + 1, len: b.len() }).collect();
        let mut bytes: Vec<Vec<u8>> = buffers.iter().map(Host::bytes).collect();
        if let Some(launch) = plan(&slices)? {
            self.launch(&launch, &mut bytes);
        }
        Ok(bytes)
    }

    fn launch(&mut self, launch: &Launch, bytes: &mut [Vec<u8>]) {
        let args: Vec<cuda_emu::Arg> = launch
            .args
            .iter()
            .map(|a| match a {
                Arg::Ptr(0) => cuda_emu::Arg::Null,
                Arg::Ptr(p) => cuda_emu::Arg::Buffer(*p as u32 - 1),
                other => cuda_emu::Arg::Value(other.bytes()),
            })
            .collect();
        if let Err(e) = self.emu.launch(launch.kernel, launch.grid, launch.block, bytes, &args) {
            panic!("{} ({:?} emulator): {e}", launch.kernel, self.flavor);
        }
    }
}

#[allow(clippy::too_many_arguments)]
impl Kernels for Emu {
    fn fill(&mut self, y: &mut Vec<f32>, value: f32) -> Result<()> {
        let out = self.run(&[Host::F32(y)], |s| Ok(plan::fill(s[0], value, GEO)))?;
        *y = floats(&out[0]);
        Ok(())
    }
    fn add(&mut self, out: &mut Vec<f32>, a: &[f32], b: &[f32]) -> Result<()> {
        let r = self.run(&[Host::F32(out), Host::F32(a), Host::F32(b)], |s| plan::add(s[0], s[1], s[2], GEO))?;
        *out = floats(&r[0]);
        Ok(())
    }
    fn add_assign(&mut self, y: &mut Vec<f32>, x: &[f32]) -> Result<()> {
        let r = self.run(&[Host::F32(y), Host::F32(x)], |s| plan::add_assign(s[0], s[1], GEO))?;
        *y = floats(&r[0]);
        Ok(())
    }
    fn broadcast_rows(&mut self, y: &mut Vec<f32>, bias: &[f32], rows: usize) -> Result<()> {
        let r = self.run(&[Host::F32(y), Host::F32(bias)], |s| plan::broadcast_rows(s[0], s[1], rows, GEO))?;
        *y = floats(&r[0]);
        Ok(())
    }
    fn activation_forward(&mut self, f: Activation, y: &mut Vec<f32>, x: &[f32]) -> Result<()> {
        let r = self.run(&[Host::F32(y), Host::F32(x)], |s| plan::activation_forward(f, s[0], s[1], GEO))?;
        *y = floats(&r[0]);
        Ok(())
    }
    fn activation_backward(
        &mut self,
        f: Activation,
        dx: &mut Vec<f32>,
        dy: &[f32],
        x: &[f32],
        y: &[f32],
    ) -> Result<()> {
        let bufs = [Host::F32(dx), Host::F32(dy), Host::F32(x), Host::F32(y)];
        let r = self.run(&bufs, |s| plan::activation_backward(f, s[0], s[1], s[2], s[3], GEO))?;
        *dx = floats(&r[0]);
        Ok(())
    }
    fn clip_factors(&mut self, factors: &mut Vec<f32>, sq_norms: &[f32], clip: f32) -> Result<()> {
        let r = self.run(&[Host::F32(factors), Host::F32(sq_norms)], |s| plan::clip_factors(s[0], s[1], clip, GEO))?;
        *factors = floats(&r[0]);
        Ok(())
    }
    fn scale_rows_by_group(
        &mut self,
        y: &mut Vec<f32>,
        x: &[f32],
        d: usize,
        append_factor: bool,
        factors: &[f32],
        layout: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        let (_, example_group) = plan::group_maps(layout)?;
        let bufs = [Host::F32(y), Host::F32(x), Host::F32(factors), Host::U32(&example_group)];
        let r = self.run(&bufs, |s| {
            plan::scale_rows_by_group(s[0], s[1], d, append_factor, s[2], layout, s[3], rows_per_example, GEO)
        })?;
        *y = floats(&r[0]);
        Ok(())
    }
    fn group_row_sums(
        &mut self,
        out: &mut Vec<f32>,
        x: &[f32],
        d: usize,
        layout: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        let (offsets, _) = plan::group_maps(layout)?;
        let bufs = [Host::F32(out), Host::F32(x), Host::U64(&offsets)];
        let r = self.run(&bufs, |s| plan::group_row_sums(s[0], s[1], d, layout, s[2], rows_per_example, GEO))?;
        *out = floats(&r[0]);
        Ok(())
    }
    fn sum_rows(&mut self, out: &mut Vec<f32>, x: &[f32], d: usize) -> Result<()> {
        let rows = x.len().checked_div(d).unwrap_or(0);
        self.group_row_sums(out, x, d, &GroupRows::single(rows), 1)
    }
    fn add_row_dots(&mut self, out: &mut Vec<f32>, a: &[f32], b: &[f32], d: usize) -> Result<()> {
        let bufs = [Host::F32(out), Host::F32(a), Host::F32(b)];
        let r = self.run(&bufs, |s| plan::add_row_dots("add_row_dots", s[0], s[1], s[2], d, GEO))?;
        *out = floats(&r[0]);
        Ok(())
    }
    fn add_row_sq_norms(&mut self, out: &mut Vec<f32>, x: &[f32], d: usize) -> Result<()> {
        let r = self.run(&[Host::F32(out), Host::F32(x)], |s| {
            plan::add_row_dots("add_row_sq_norms", s[0], s[1], s[1], d, GEO)
        })?;
        *out = floats(&r[0]);
        Ok(())
    }
    fn sgd_step(
        &mut self,
        w: &mut Vec<f32>,
        g: &[f32],
        m: &mut Vec<f32>,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        first_step: bool,
    ) -> Result<()> {
        let bufs = [Host::F32(w), Host::F32(g), Host::F32(m)];
        let r = self.run(&bufs, |s| plan::sgd_step(s[0], s[1], s[2], lr, momentum, weight_decay, first_step, GEO))?;
        *w = floats(&r[0]);
        *m = floats(&r[2]);
        Ok(())
    }
    fn adamw_step(
        &mut self,
        w: &mut Vec<f32>,
        g: &[f32],
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        h: &AdamW,
        t: u64,
    ) -> Result<()> {
        let bufs = [Host::F32(w), Host::F32(g), Host::F32(m), Host::F32(v)];
        let r = self.run(&bufs, |s| plan::adamw_step(s[0], s[1], s[2], s[3], h, t, GEO))?;
        *w = floats(&r[0]);
        *m = floats(&r[2]);
        *v = floats(&r[3]);
        Ok(())
    }
    fn add_normal(&mut self, buf: &mut Vec<f32>, std: f32, scale: f32, grid: f64, key: &NoiseKey) -> Result<()> {
        let r = self.run(&[Host::F32(buf)], |s| plan::add_normal(s[0], std, scale, grid, key, GEO))?;
        *buf = floats(&r[0]);
        Ok(())
    }
    fn copy_columns(
        &mut self,
        dst: &mut Vec<f32>,
        dst_w: usize,
        dst_col: usize,
        src: &[f32],
        src_w: usize,
        src_col: usize,
        width: usize,
        rows: usize,
    ) -> Result<()> {
        let r = self.run(&[Host::F32(dst), Host::F32(src)], |s| {
            plan::copy_columns(s[0], dst_w, dst_col, s[1], src_w, src_col, width, rows, GEO)
        })?;
        *dst = floats(&r[0]);
        Ok(())
    }
    fn layer_norm_forward(
        &mut self,
        y: &mut Vec<f32>,
        mean: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        c: usize,
        eps: f32,
    ) -> Result<()> {
        let bufs = [Host::F32(y), Host::F32(mean), Host::F32(rstd), Host::F32(x), Host::F32(gamma), Host::F32(beta)];
        let r = self.run(&bufs, |s| plan::layer_norm_forward(s[0], s[1], s[2], s[3], s[4], s[5], c, eps, GEO))?;
        *y = floats(&r[0]);
        *mean = floats(&r[1]);
        *rstd = floats(&r[2]);
        Ok(())
    }
    fn layer_norm_backward(
        &mut self,
        dx: &mut Vec<f32>,
        dy_xhat: &mut Vec<f32>,
        dy: &[f32],
        x: &[f32],
        gamma: &[f32],
        mean: &[f32],
        rstd: &[f32],
        c: usize,
    ) -> Result<()> {
        let bufs = [
            Host::F32(dx),
            Host::F32(dy_xhat),
            Host::F32(dy),
            Host::F32(x),
            Host::F32(gamma),
            Host::F32(mean),
            Host::F32(rstd),
        ];
        let r = self.run(&bufs, |s| plan::layer_norm_backward(s[0], s[1], s[2], s[3], s[4], s[5], s[6], c, GEO))?;
        *dx = floats(&r[0]);
        *dy_xhat = floats(&r[1]);
        Ok(())
    }
    fn masked_softmax_forward(
        &mut self,
        att: &mut Vec<f32>,
        mask: &[f32],
        b: usize,
        h: usize,
        tq: usize,
        t: usize,
        scale: f32,
        fill: MaskFill,
    ) -> Result<()> {
        let r = self.run(&[Host::F32(att), Host::F32(mask)], |s| {
            plan::masked_softmax_forward(s[0], s[1], b, h, tq, t, scale, fill, GEO)
        })?;
        *att = floats(&r[0]);
        Ok(())
    }
    fn softmax_backward(&mut self, datt: &mut Vec<f32>, att: &[f32], t: usize, scale: f32) -> Result<()> {
        let r = self.run(&[Host::F32(datt), Host::F32(att)], |s| plan::softmax_backward(s[0], s[1], t, scale, GEO))?;
        *datt = floats(&r[0]);
        Ok(())
    }
    fn embedding_forward(
        &mut self,
        y: &mut Vec<f32>,
        ids: &[u32],
        table: &[f32],
        d: usize,
        accumulate: bool,
    ) -> Result<()> {
        let r = self.run(&[Host::F32(y), Host::U32(ids), Host::F32(table)], |s| {
            plan::embedding_forward(s[0], s[1], ids, s[2], d, accumulate, GEO)
        })?;
        *y = floats(&r[0]);
        Ok(())
    }
    fn embedding_backward(
        &mut self,
        dtable: &mut Vec<f32>,
        ids: &[u32],
        dy: &[f32],
        d: usize,
        factors: Option<&[f32]>,
        layout: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        let lists = plan::embedding_backward_lists(
            dtable.len(),
            ids,
            dy.len(),
            d,
            factors.map(|f| f.len()),
            layout,
            rows_per_example,
        )?;
        let Some(lists) = lists else { return Ok(()) };
        let (_, example_group) = plan::group_maps(layout)?;
        // the chunk sums' buffer starts as NaN: the first launch must write every element
        let partial = vec![f32::NAN; lists.chunk_begin.len() * d];
        let mut bufs = [
            Host::F32(dtable),
            Host::F32(dy),
            Host::U32(&example_group),
            Host::U32(&lists.used),
            Host::U64(&lists.starts),
            Host::U32(&lists.rows),
            Host::U64(&lists.slots),
            Host::U64(&lists.chunk_begin),
            Host::U64(&lists.chunk_end),
            Host::F32(&partial),
            Host::F32(factors.unwrap_or(&[])),
        ];
        let null = Slice { ptr: 0, len: 0 };
        let or_null = |s: Slice| if s.len == 0 { null } else { s };
        let lists_of = |s: &[Slice]| plan::ScatterSlices {
            used: s[3],
            starts: s[4],
            rows: s[5],
            slots: or_null(s[6]),
            chunk_begin: or_null(s[7]),
            chunk_end: or_null(s[8]),
        };
        let r = self.run(&bufs, |s| {
            let f = if factors.is_some() { s[10] } else { null };
            plan::embedding_backward_chunks(or_null(s[9]), s[1], f, s[2], &lists_of(s), d, rows_per_example, GEO)
        })?;
        let partial = floats(&r[9]);
        bufs[9] = Host::F32(&partial);
        let r = self.run(&bufs, |s| {
            let f = if factors.is_some() { s[10] } else { null };
            plan::embedding_backward(s[0], s[1], f, s[2], &lists_of(s), or_null(s[9]), d, rows_per_example, GEO)
        })?;
        *dtable = floats(&r[0]);
        Ok(())
    }
    fn embedding_group_sq_norms(
        &mut self,
        out: &mut Vec<f32>,
        ids: &[u32],
        dy: &[f32],
        d: usize,
        layout: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        let order = plan::embedding_group_order(out.len(), ids, dy.len(), d, layout, rows_per_example)?;
        let (offsets, _) = plan::group_maps(layout)?;
        let bufs = [Host::F32(out), Host::U32(ids), Host::F32(dy), Host::U64(&offsets), Host::U32(&order)];
        let r = self
            .run(&bufs, |s| plan::embedding_group_sq_norms(s[0], s[1], s[2], s[3], s[4], d, rows_per_example, GEO))?;
        *out = floats(&r[0]);
        Ok(())
    }
    fn masked_mean_pool_forward(
        &mut self,
        out: &mut Vec<f32>,
        h: &[f32],
        mask: &[f32],
        t: usize,
        c: usize,
    ) -> Result<()> {
        let r = self.run(&[Host::F32(out), Host::F32(h), Host::F32(mask)], |s| {
            plan::masked_mean_pool_forward(s[0], s[1], s[2], t, c, GEO)
        })?;
        *out = floats(&r[0]);
        Ok(())
    }
    fn masked_mean_pool_backward(
        &mut self,
        dh: &mut Vec<f32>,
        dout: &[f32],
        mask: &[f32],
        t: usize,
        c: usize,
    ) -> Result<()> {
        let r = self.run(&[Host::F32(dh), Host::F32(dout), Host::F32(mask)], |s| {
            plan::masked_mean_pool_backward(s[0], s[1], s[2], t, c, GEO)
        })?;
        *dh = floats(&r[0]);
        Ok(())
    }
    fn bce_with_logits(
        &mut self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        logits: &[f32],
        targets: &[f32],
        grad_scale: f32,
    ) -> Result<()> {
        let bufs = [Host::F32(losses), Host::F32(dlogits), Host::F32(logits), Host::F32(targets)];
        let r = self.run(&bufs, |s| plan::bce_with_logits(s[0], s[1], s[2], s[3], grad_scale, GEO))?;
        *losses = floats(&r[0]);
        *dlogits = floats(&r[1]);
        Ok(())
    }
    fn regression_loss(
        &mut self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        preds: &[f32],
        targets: &[f32],
        huber: Option<f32>,
        grad_scale: f32,
    ) -> Result<()> {
        let bufs = [Host::F32(losses), Host::F32(dlogits), Host::F32(preds), Host::F32(targets)];
        let r = self.run(&bufs, |s| plan::regression_loss(s[0], s[1], s[2], s[3], huber, grad_scale, GEO))?;
        *losses = floats(&r[0]);
        *dlogits = floats(&r[1]);
        Ok(())
    }
    fn cross_entropy(
        &mut self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        logits: &[f32],
        classes: &[u32],
        k: usize,
        grad_scale: f32,
    ) -> Result<()> {
        let bufs = [Host::F32(losses), Host::F32(dlogits), Host::F32(logits), Host::U32(classes)];
        let r = self.run(&bufs, |s| plan::cross_entropy(s[0], s[1], s[2], s[3], classes, k, grad_scale, GEO))?;
        *losses = floats(&r[0]);
        *dlogits = floats(&r[1]);
        Ok(())
    }
    fn gru_step_forward(
        &mut self,
        h: &mut Vec<f32>,
        h_prev: &mut Vec<f32>,
        gates: &mut Vec<f32>,
        gi: &[f32],
        gh: &[f32],
        b: usize,
        steps: usize,
        t: usize,
        hidden: usize,
    ) -> Result<()> {
        let bufs = [Host::F32(h), Host::F32(h_prev), Host::F32(gates), Host::F32(gi), Host::F32(gh)];
        let r = self.run(&bufs, |s| plan::gru_step_forward(s[0], s[1], s[2], s[3], s[4], b, steps, t, hidden, GEO))?;
        *h = floats(&r[0]);
        *h_prev = floats(&r[1]);
        *gates = floats(&r[2]);
        Ok(())
    }
    fn gru_step_backward(
        &mut self,
        dgi: &mut Vec<f32>,
        dgh: &mut Vec<f32>,
        carry: &mut Vec<f32>,
        dy: &[f32],
        gates: &[f32],
        gh: &[f32],
        h_prev: &[f32],
        b: usize,
        steps: usize,
        t: usize,
        hidden: usize,
    ) -> Result<()> {
        let bufs = [
            Host::F32(dgi),
            Host::F32(dgh),
            Host::F32(carry),
            Host::F32(dy),
            Host::F32(gates),
            Host::F32(gh),
            Host::F32(h_prev),
        ];
        let r = self.run(&bufs, |s| {
            plan::gru_step_backward(s[0], s[1], s[2], s[3], s[4], s[5], s[6], b, steps, t, hidden, GEO)
        })?;
        *dgi = floats(&r[0]);
        *dgh = floats(&r[1]);
        *carry = floats(&r[2]);
        Ok(())
    }
}

/// Starts the emulator of `flavor`, or says why it is skipped (a sanitizer the compiler lacks).
fn emulator(flavor: Flavor) -> Option<Emu> {
    match Emulator::start(flavor) {
        Ok(emu) => Some(Emu { emu, flavor }),
        Err(e) if flavor != Flavor::Plain => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn run_case(flavor: Flavor, case: fn(&mut Emu)) {
    if let Some(mut emu) = emulator(flavor) {
        case(&mut emu);
    }
}

macro_rules! emu_tests {
    ($($name:ident => $body:path),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[test]
                fn plain() {
                    run_case(Flavor::Plain, $body)
                }
                #[test]
                fn address_sanitizer() {
                    run_case(Flavor::Address, $body)
                }
                #[test]
                fn thread_sanitizer() {
                    run_case(Flavor::Thread, $body)
                }
            }
        )*
    };
}

cuda_cases!(emu_tests);

#[test]
fn the_emulator_has_every_kernel_of_every_module() {
    let files: Vec<&str> = Module::ALL.iter().map(|m| m.file()).collect();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(sorted, cuda_emu::SOURCES, "the .cu files beside cuda/source.rs and its modules");
    let kernels: Vec<&str> = Module::ALL.iter().flat_map(|m| m.kernels()).collect();
    let mut want: Vec<&str> = cuda_emu::KERNELS.to_vec();
    let mut got = kernels.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert!(kernels.len() >= 13, "{kernels:?}");
}

#[test]
fn a_launch_whose_arguments_do_not_match_the_kernel_is_refused() {
    // the emulator checks each plan's argument list against the kernel's C signature; this is what a
    // wrong plan would meet
    let mut emu = Emulator::start(Flavor::Plain).unwrap();
    let mut bufs = vec![vec![0u8; 16]];
    let args = [cuda_emu::Arg::Buffer(0), cuda_emu::Arg::Value(2.5f32.to_le_bytes().to_vec())];
    let e = emu.launch("fill_f32", 1, 32, &mut bufs, &args).unwrap_err();
    assert!(e.contains("takes 3 arguments"), "{e}");
    let args = [
        cuda_emu::Arg::Buffer(0),
        cuda_emu::Arg::Value(2.5f64.to_le_bytes().to_vec()),
        cuda_emu::Arg::Value(4u64.to_le_bytes().to_vec()),
    ];
    let e = emu.launch("fill_f32", 1, 32, &mut bufs, &args).unwrap_err();
    assert!(e.contains("argument 1 has 8 bytes"), "{e}");
    let e = emu.launch("no_such_kernel", 1, 32, &mut bufs, &[]).unwrap_err();
    assert!(e.contains("no kernel"), "{e}");
    // and the emulator still serves after a refusal
    let args = [
        cuda_emu::Arg::Buffer(0),
        cuda_emu::Arg::Value(2.5f32.to_le_bytes().to_vec()),
        cuda_emu::Arg::Value(4u64.to_le_bytes().to_vec()),
    ];
    emu.launch("fill_f32", 1, 32, &mut bufs, &args).unwrap();
    assert_eq!(floats(&bufs[0]), vec![2.5; 4]);
}

#[test]
fn address_sanitizer_catches_a_missing_bounds_guard() {
    let Some(mut emu) = emulator(Flavor::Address) else { return };
    // 300 elements, 2 blocks of 256: threads 300..512 write past the buffer
    let mut bufs = vec![vec![0u8; 300 * 4]];
    let args = [cuda_emu::Arg::Buffer(0), cuda_emu::Arg::Value(300u64.to_le_bytes().to_vec())];
    let e = emu.emu.launch("planted_missing_guard", 2, 256, &mut bufs, &args).unwrap_err();
    assert!(e.contains("heap-buffer-overflow"), "{e}");
    // the plain build does not notice: this is what the sanitizer run adds
    let mut plain = Emulator::start(Flavor::Plain).unwrap();
    let mut bufs = vec![vec![0u8; 256 * 4]];
    let args = [cuda_emu::Arg::Buffer(0), cuda_emu::Arg::Value(256u64.to_le_bytes().to_vec())];
    plain.launch("planted_missing_guard", 1, 256, &mut bufs, &args).unwrap();
}

#[test]
fn thread_sanitizer_catches_a_missing_barrier() {
    let Some(mut emu) = emulator(Flavor::Thread) else { return };
    let x: Vec<u8> = (0..256).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut bufs = vec![vec![0u8; 256 * 4], x];
    let args = [cuda_emu::Arg::Buffer(0), cuda_emu::Arg::Buffer(1)];
    let e = emu.emu.launch("planted_missing_barrier", 1, 256, &mut bufs, &args).unwrap_err();
    assert!(e.contains("ThreadSanitizer: data race"), "{e}");
}
