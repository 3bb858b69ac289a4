//! The CUDA backend on a real device: with `MEDTRAIN_TEST_CUDA=1`, the bodies of tests/common/cuda.rs
//! (the kernels against the CPU backend, the noise against the checked-in vectors) run through `Cuda`
//! (upload, launch, download), and its buffer ops are checked. Without the variable these tests say
//! so and pass; with it, a missing device fails them (tests/cuda_probe.rs is what runs everywhere).

mod common;
use common::cuda::Kernels;
use kernels::backend::{Activation, AdamW, Backend, GroupRows, MaskFill, NoiseKey};
use kernels::cuda::Cuda;
use kernels::{KernelError, Result};

/// The device when `MEDTRAIN_TEST_CUDA=1`, else `None` (after saying so).
fn device() -> Option<Cuda> {
    if std::env::var("MEDTRAIN_TEST_CUDA").map_or(true, |v| v != "1") {
        eprintln!("skipped: set MEDTRAIN_TEST_CUDA=1 to run the CUDA backend on a GPU");
        return None;
    }
    Some(Cuda::new(0).unwrap_or_else(|e| panic!("MEDTRAIN_TEST_CUDA=1, but: {e}")))
}

struct Dev(Cuda);

#[allow(clippy::too_many_arguments)]
impl Kernels for Dev {
    fn fill(&mut self, y: &mut Vec<f32>, value: f32) -> Result<()> {
        let mut b = self.0.upload(y)?;
        self.0.fill(&mut b, value)?;
        *y = self.0.download(&b)?;
        Ok(())
    }
    fn add(&mut self, out: &mut Vec<f32>, a: &[f32], b: &[f32]) -> Result<()> {
        let (mut o, a, b) = (self.0.upload(out)?, self.0.upload(a)?, self.0.upload(b)?);
        self.0.add(&mut o, &a, &b)?;
        *out = self.0.download(&o)?;
        Ok(())
    }
    fn add_assign(&mut self, y: &mut Vec<f32>, x: &[f32]) -> Result<()> {
        let (mut yb, x) = (self.0.upload(y)?, self.0.upload(x)?);
        self.0.add_assign(&mut yb, &x)?;
        *y = self.0.download(&yb)?;
        Ok(())
    }
    fn broadcast_rows(&mut self, y: &mut Vec<f32>, bias: &[f32], rows: usize) -> Result<()> {
        let (mut yb, bias) = (self.0.upload(y)?, self.0.upload(bias)?);
        self.0.broadcast_rows(&mut yb, &bias, rows)?;
        *y = self.0.download(&yb)?;
        Ok(())
    }
    fn activation_forward(&mut self, f: Activation, y: &mut Vec<f32>, x: &[f32]) -> Result<()> {
        let (mut yb, x) = (self.0.upload(y)?, self.0.upload(x)?);
        self.0.activation_forward(f, &mut yb, &x)?;
        *y = self.0.download(&yb)?;
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
        let mut dxb = self.0.upload(dx)?;
        let (dy, x, y) = (self.0.upload(dy)?, self.0.upload(x)?, self.0.upload(y)?);
        self.0.activation_backward(f, &mut dxb, &dy, &x, &y)?;
        *dx = self.0.download(&dxb)?;
        Ok(())
    }
    fn clip_factors(&mut self, factors: &mut Vec<f32>, sq_norms: &[f32], clip: f32) -> Result<()> {
        let (mut fb, sq) = (self.0.upload(factors)?, self.0.upload(sq_norms)?);
        self.0.clip_factors(&mut fb, &sq, clip)?;
        *factors = self.0.download(&fb)?;
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
        let (mut yb, xb, fb) = (self.0.upload(y)?, self.0.upload(x)?, self.0.upload(factors)?);
        let groups = self.0.groups(layout)?;
        self.0.scale_rows_by_group(&mut yb, &xb, d, append_factor, &fb, &groups, rows_per_example)?;
        *y = self.0.download(&yb)?;
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
        let (mut ob, xb) = (self.0.upload(out)?, self.0.upload(x)?);
        let groups = self.0.groups(layout)?;
        self.0.group_row_sums(&mut ob, &xb, d, &groups, rows_per_example)?;
        *out = self.0.download(&ob)?;
        Ok(())
    }
    fn sum_rows(&mut self, out: &mut Vec<f32>, x: &[f32], d: usize) -> Result<()> {
        let (mut ob, xb) = (self.0.upload(out)?, self.0.upload(x)?);
        self.0.sum_rows(&mut ob, &xb, d)?;
        *out = self.0.download(&ob)?;
        Ok(())
    }
    fn add_row_dots(&mut self, out: &mut Vec<f32>, a: &[f32], b: &[f32], d: usize) -> Result<()> {
        let (mut ob, ab, bb) = (self.0.upload(out)?, self.0.upload(a)?, self.0.upload(b)?);
        self.0.add_row_dots(&mut ob, &ab, &bb, d)?;
        *out = self.0.download(&ob)?;
        Ok(())
    }
    fn add_row_sq_norms(&mut self, out: &mut Vec<f32>, x: &[f32], d: usize) -> Result<()> {
        let (mut ob, xb) = (self.0.upload(out)?, self.0.upload(x)?);
        self.0.add_row_sq_norms(&mut ob, &xb, d)?;
        *out = self.0.download(&ob)?;
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
        let (mut wb, gb, mut mb) = (self.0.upload(w)?, self.0.upload(g)?, self.0.upload(m)?);
        self.0.sgd_step(&mut wb, &gb, &mut mb, lr, momentum, weight_decay, first_step)?;
        *w = self.0.download(&wb)?;
        *m = self.0.download(&mb)?;
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
        let (mut wb, gb) = (self.0.upload(w)?, self.0.upload(g)?);
        let (mut mb, mut vb) = (self.0.upload(m)?, self.0.upload(v)?);
        self.0.adamw_step(&mut wb, &gb, &mut mb, &mut vb, h, t)?;
        *w = self.0.download(&wb)?;
        *m = self.0.download(&mb)?;
        *v = self.0.download(&vb)?;
        Ok(())
    }
    fn add_normal(&mut self, buf: &mut Vec<f32>, std: f32, scale: f32, grid: f64, key: &NoiseKey) -> Result<()> {
        let mut b = self.0.upload(buf)?;
        self.0.add_normal(&mut b, std, scale, grid, key)?;
        *buf = self.0.download(&b)?;
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
        let (mut d, s) = (self.0.upload(dst)?, self.0.upload(src)?);
        self.0.copy_columns(&mut d, dst_w, dst_col, &s, src_w, src_col, width, rows)?;
        *dst = self.0.download(&d)?;
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
        let (mut yb, mut mb, mut rb) = (self.0.upload(y)?, self.0.upload(mean)?, self.0.upload(rstd)?);
        let (x, gamma, beta) = (self.0.upload(x)?, self.0.upload(gamma)?, self.0.upload(beta)?);
        self.0.layer_norm_forward(&mut yb, &mut mb, &mut rb, &x, &gamma, &beta, c, eps)?;
        *y = self.0.download(&yb)?;
        *mean = self.0.download(&mb)?;
        *rstd = self.0.download(&rb)?;
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
        let (mut dxb, mut dyxb) = (self.0.upload(dx)?, self.0.upload(dy_xhat)?);
        let (dy, x, gamma) = (self.0.upload(dy)?, self.0.upload(x)?, self.0.upload(gamma)?);
        let (mean, rstd) = (self.0.upload(mean)?, self.0.upload(rstd)?);
        self.0.layer_norm_backward(&mut dxb, &mut dyxb, &dy, &x, &gamma, &mean, &rstd, c)?;
        *dx = self.0.download(&dxb)?;
        *dy_xhat = self.0.download(&dyxb)?;
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
        let (mut ab, mask) = (self.0.upload(att)?, self.0.upload(mask)?);
        self.0.masked_softmax_forward(&mut ab, &mask, b, h, tq, t, scale, fill)?;
        *att = self.0.download(&ab)?;
        Ok(())
    }
    fn softmax_backward(&mut self, datt: &mut Vec<f32>, att: &[f32], t: usize, scale: f32) -> Result<()> {
        let (mut db, att) = (self.0.upload(datt)?, self.0.upload(att)?);
        self.0.softmax_backward(&mut db, &att, t, scale)?;
        *datt = self.0.download(&db)?;
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
        let (mut yb, ids, table) = (self.0.upload(y)?, self.0.upload_ids(ids)?, self.0.upload(table)?);
        self.0.embedding_forward(&mut yb, &ids, &table, d, accumulate)?;
        *y = self.0.download(&yb)?;
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
        let (mut tb, ids, dy) = (self.0.upload(dtable)?, self.0.upload_ids(ids)?, self.0.upload(dy)?);
        let factors = factors.map(|f| self.0.upload(f)).transpose()?;
        let groups = self.0.groups(layout)?;
        self.0.embedding_backward(&mut tb, &ids, &dy, d, factors.as_ref(), &groups, rows_per_example)?;
        *dtable = self.0.download(&tb)?;
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
        let (mut ob, ids, dy) = (self.0.upload(out)?, self.0.upload_ids(ids)?, self.0.upload(dy)?);
        let groups = self.0.groups(layout)?;
        self.0.embedding_group_sq_norms(&mut ob, &ids, &dy, d, &groups, rows_per_example)?;
        *out = self.0.download(&ob)?;
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
        let (mut ob, h, mask) = (self.0.upload(out)?, self.0.upload(h)?, self.0.upload(mask)?);
        self.0.masked_mean_pool_forward(&mut ob, &h, &mask, t, c)?;
        *out = self.0.download(&ob)?;
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
        let (mut db, dout, mask) = (self.0.upload(dh)?, self.0.upload(dout)?, self.0.upload(mask)?);
        self.0.masked_mean_pool_backward(&mut db, &dout, &mask, t, c)?;
        *dh = self.0.download(&db)?;
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
        let (mut lb, mut db) = (self.0.upload(losses)?, self.0.upload(dlogits)?);
        let (z, y) = (self.0.upload(logits)?, self.0.upload(targets)?);
        self.0.bce_with_logits(&mut lb, &mut db, &z, &y, grad_scale)?;
        *losses = self.0.download(&lb)?;
        *dlogits = self.0.download(&db)?;
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
        let (mut lb, mut db) = (self.0.upload(losses)?, self.0.upload(dlogits)?);
        let (p, y) = (self.0.upload(preds)?, self.0.upload(targets)?);
        self.0.regression_loss(&mut lb, &mut db, &p, &y, huber, grad_scale)?;
        *losses = self.0.download(&lb)?;
        *dlogits = self.0.download(&db)?;
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
        let (mut lb, mut db) = (self.0.upload(losses)?, self.0.upload(dlogits)?);
        let (z, c) = (self.0.upload(logits)?, self.0.upload_ids(classes)?);
        self.0.cross_entropy(&mut lb, &mut db, &z, &c, k, grad_scale)?;
        *losses = self.0.download(&lb)?;
        *dlogits = self.0.download(&db)?;
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
        let (mut hb, mut pb, mut gb) = (self.0.upload(h)?, self.0.upload(h_prev)?, self.0.upload(gates)?);
        let (gi, gh) = (self.0.upload(gi)?, self.0.upload(gh)?);
        self.0.gru_step_forward(&mut hb, &mut pb, &mut gb, &gi, &gh, b, steps, t, hidden)?;
        *h = self.0.download(&hb)?;
        *h_prev = self.0.download(&pb)?;
        *gates = self.0.download(&gb)?;
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
        let (mut ib, mut hb, mut cb) = (self.0.upload(dgi)?, self.0.upload(dgh)?, self.0.upload(carry)?);
        let (dy, gates) = (self.0.upload(dy)?, self.0.upload(gates)?);
        let (gh, h_prev) = (self.0.upload(gh)?, self.0.upload(h_prev)?);
        self.0.gru_step_backward(&mut ib, &mut hb, &mut cb, &dy, &gates, &gh, &h_prev, b, steps, t, hidden)?;
        *dgi = self.0.download(&ib)?;
        *dgh = self.0.download(&hb)?;
        *carry = self.0.download(&cb)?;
        Ok(())
    }
}

macro_rules! device_tests {
    ($($name:ident => $body:path),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn device() {
                    if let Some(cuda) = super::device() {
                        $body(&mut super::Dev(cuda))
                    }
                }
            }
        )*
    };
}

cuda_cases!(device_tests);

#[test]
fn buffers_round_trip_and_fail_with_the_op_and_size() {
    let Some(cuda) = device() else { return };
    let v: Vec<f32> = (0..100_000).map(|i| i as f32 * 0.5 - 3.0).collect();
    let buf = cuda.upload(&v).unwrap();
    assert_eq!(cuda.len(&buf), v.len());
    assert_eq!(cuda.download(&buf).unwrap(), v);
    let mut dst = cuda.zeros(v.len()).unwrap();
    assert!(cuda.download(&dst).unwrap().iter().all(|&x| x == 0.0));
    cuda.copy(&mut dst, &buf).unwrap();
    assert_eq!(cuda.download(&dst).unwrap(), v);
    let mut short = cuda.zeros(v.len() - 1).unwrap();
    assert!(matches!(cuda.copy(&mut short, &buf), Err(KernelError::Shape { op: "copy", .. })));
    // empty buffers are fine everywhere
    let empty = cuda.upload(&[]).unwrap();
    assert_eq!(cuda.download(&empty).unwrap(), Vec::<f32>::new());
    let ids = cuda.upload_ids(&[3, 1, 4]).unwrap();
    assert_eq!(cuda.ids_len(&ids), 3);
    // 2^61 f32 is 8 EiB: no device has it
    let huge = 1usize << 61;
    let e = cuda.zeros(huge).err().expect("zeros(2^61) must fail");
    assert_eq!(e, KernelError::OutOfMemory { op: "zeros", elements: huge, element_bytes: 4 });
    let mut b = cuda.zeros(3).unwrap();
    assert!(matches!(cuda.resize(&mut b, huge), Err(KernelError::OutOfMemory { op: "resize", .. })));
    cuda.resize(&mut b, 5).unwrap();
    cuda.fill(&mut b, 2.5).unwrap();
    assert_eq!(cuda.download(&b).unwrap(), vec![2.5; 5]);
}

#[test]
fn noise_of_a_large_buffer_matches_the_cpu() {
    // 5M elements: 1,221 blocks, the device's grid without the emulation's small cap
    let Some(cuda) = device() else { return };
    use kernels::Backend;
    let key = NoiseKey { key: [9; 32], stream: 3 };
    let x = common::Rng::new(13).vec(5_000_000, 1.0);
    let mut want = x.clone();
    kernels::Cpu::new(0).unwrap().add_normal(&mut want, 0.8, 1.0 / 64.0, 2f64.powi(-13), &key).unwrap();
    let mut b = cuda.upload(&x).unwrap();
    cuda.add_normal(&mut b, 0.8, 1.0 / 64.0, 2f64.powi(-13), &key).unwrap();
    common::cuda::assert_bits("add_normal 5M", &cuda.download(&b).unwrap(), &want);
}

/// gemm through cuBLAS (not emulated: no CPU runs cuBLAS) against the f64 product: f32 by default
/// (error within 1e-5 of the magnitude sum_l |alpha a b| + |beta c|), TF32 only when asked for (4e-3).
/// The mapping of each view onto cuBLAS' column-major call is checked without a GPU by the unit tests
/// of kernels::cuda::plan.
#[test]
fn gemm_through_cublas_matches_the_f64_product() {
    use kernels::backend::{Gemm, MatView};
    let Some(mut cuda) = device() else { return };
    assert!(!cuda.tf32(), "TF32 is off unless asked for");
    let rm = MatView::row_major;
    let tr = MatView::transposed;
    let cases = [
        (rm(0, 5), rm(0, 7), rm(0, 5), Gemm::new(3, 5, 7)),
        (rm(0, 5), tr(0, 3), rm(0, 5), Gemm::new(3, 5, 7)),
        (rm(0, 5), rm(0, 7), tr(0, 7), Gemm::new(3, 5, 7).accumulate()),
        (rm(2, 5).with_ld(9), tr(1, 3), tr(0, 7), Gemm::new(3, 5, 7).alpha(0.5)),
        (
            rm(1, 4).with_ld(12).batched(60),
            rm(2, 6).with_ld(18).batched(90),
            rm(3, 4).with_ld(12).batched(72),
            Gemm::new(5, 4, 6).batched(3),
        ),
        (rm(0, 3).batched(6), rm(0, 4).batched(8), rm(0, 3), Gemm::new(2, 3, 4).batched(3)),
        (rm(0, 6).with_ld(1), rm(0, 9).with_ld(2), rm(0, 6), Gemm::new(1, 6, 9)),
        (rm(0, 4), rm(0, 1), rm(0, 4).with_ld(1), Gemm::new(7, 4, 1)),
        (rm(0, 4), rm(0, 3), rm(0, 4), Gemm::new(2, 4, 0).accumulate().alpha(2.0)),
        (rm(0, 384), rm(0, 512), tr(0, 512), Gemm::new(256, 384, 512).accumulate()),
        // attention scores: per (example, head) [128, 64] x [64, 128] -> [128, 128]
        (
            rm(0, 128).batched(128 * 128),
            rm(0, 64).batched(128 * 64),
            tr(0, 64).batched(128 * 64),
            Gemm::new(128, 128, 64).batched(24),
        ),
    ];
    let mut rng = common::Rng::new(20);
    for (tf32, tol) in [(false, 1e-5f64), (true, 4e-3)] {
        cuda.set_tf32(tf32).unwrap();
        for (i, &(cv, av, bv, g)) in cases.iter().enumerate() {
            let (cl, al, bl) =
                (cv.extent(g.m, g.n, g.batch) + 3, av.extent(g.m, g.k, g.batch) + 2, bv.extent(g.k, g.n, g.batch) + 1);
            let (a, b, c0) = (rng.vec(al, 1.0), rng.vec(bl, 1.0), rng.vec(cl, 1.0));
            let mut want = c0.clone();
            kernels::cpu::gemm_naive(&mut want, cv, &a, av, &b, bv, g);
            let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
            let mut size = abs(&c0);
            let gm = Gemm { alpha: g.alpha.abs(), beta: g.beta.abs(), ..g };
            kernels::cpu::gemm_naive(&mut size, cv, &abs(&a), av, &abs(&b), bv, gm);
            let mut cb = cuda.upload(&c0).unwrap();
            let (ab, bb) = (cuda.upload(&a).unwrap(), cuda.upload(&b).unwrap());
            cuda.gemm(&mut cb, cv, &ab, av, &bb, bv, g).unwrap();
            let got = cuda.download(&cb).unwrap();
            for (j, ((&x, &y), &s)) in got.iter().zip(&want).zip(&size).enumerate() {
                let bound = tol * s as f64 + 1e-30;
                assert!(
                    ((x - y) as f64).abs() <= bound,
                    "case {i} tf32={tf32} element {j}: cuBLAS {x}, f64 product {y}"
                );
            }
        }
    }
    cuda.set_tf32(false).unwrap();
}
