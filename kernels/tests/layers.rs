//! Every layer's backward against central finite differences of `sum(y * r)` for a random `r`.

mod common;
use common::{dot, fd_check, Rng};
use kernels::nn::{Embedding, EncoderBlock, GradReduce, LayerNorm, Linear, SelfAttention};
use kernels::{Backend, Cpu, GroupRows};

const TOL: f64 = 2e-3;

fn be() -> Cpu {
    Cpu::new(2).unwrap()
}

#[test]
fn linear_backward_matches_finite_differences() {
    let be = be();
    let mut rng = Rng::new(10);
    let (rows, d_in, d_out) = (6, 5, 4);
    let mut l = Linear::new(&be, "l", d_in, d_out).unwrap();
    l.weight.value = rng.vec(d_in * d_out, 0.5);
    l.bias.value = rng.vec(d_out, 0.5);
    let x = rng.vec(rows * d_in, 1.0);
    let r = rng.vec(rows * d_out, 1.0);
    let mut dx = vec![];
    l.backward_input(&be, &mut dx, &r, rows).unwrap();
    l.param_grads(&be, &x, &r, &GradReduce::plain(&GroupRows::single(rows)), 1).unwrap();
    let f = |l: &mut Linear<Cpu>, x: &[f32]| {
        let mut y = vec![];
        l.forward(&be, &mut y, &x.to_vec(), rows).unwrap();
        dot(&y, &r)
    };
    fd_check("linear dx", &x, &dx, TOL, |xp| f(&mut l, xp));
    let (w, dw, db, b) = (l.weight.value.clone(), l.weight.grad.clone(), l.bias.grad.clone(), l.bias.value.clone());
    fd_check("linear dW", &w, &dw, TOL, |wp| {
        l.weight.value = wp.to_vec();
        f(&mut l, &x)
    });
    l.weight.value = w;
    fd_check("linear db", &b, &db, TOL, |bp| {
        l.bias.value = bp.to_vec();
        f(&mut l, &x)
    });
}

#[test]
fn layer_norm_backward_matches_finite_differences() {
    let be = be();
    let mut rng = Rng::new(11);
    let (rows, d) = (5, 8);
    let mut ln = LayerNorm::new(&be, "ln", d).unwrap();
    ln.gamma.value = rng.vec(d, 1.0).iter().map(|v| v + 1.0).collect();
    ln.beta.value = rng.vec(d, 0.5);
    let x = rng.vec(rows * d, 2.0);
    let r = rng.vec(rows * d, 1.0);
    let mut y = vec![];
    ln.forward(&be, &mut y, &x, rows).unwrap();
    let mut dx = vec![];
    ln.backward_input(&be, &mut dx, &r, &x, rows).unwrap();
    ln.param_grads(&be, &r, &GradReduce::plain(&GroupRows::single(rows)), 1).unwrap();
    let f = |ln: &mut LayerNorm<Cpu>, x: &[f32]| {
        let mut y = vec![];
        ln.forward(&be, &mut y, &x.to_vec(), rows).unwrap();
        dot(&y, &r)
    };
    fd_check("layer_norm dx", &x, &dx, TOL, |xp| f(&mut ln, xp));
    let (g, dg, bt, dbt) = (ln.gamma.value.clone(), ln.gamma.grad.clone(), ln.beta.value.clone(), ln.beta.grad.clone());
    fd_check("layer_norm dgamma", &g, &dg, TOL, |gp| {
        ln.gamma.value = gp.to_vec();
        f(&mut ln, &x)
    });
    ln.gamma.value = g;
    fd_check("layer_norm dbeta", &bt, &dbt, TOL, |bp| {
        ln.beta.value = bp.to_vec();
        f(&mut ln, &x)
    });
}

#[test]
fn activations_backward_match_finite_differences() {
    let be = be();
    let mut rng = Rng::new(12);
    // keep ReLU inputs away from its kink at 0
    let x: Vec<f32> = rng.vec(64, 3.0).iter().map(|&v| if v.abs() < 0.05 { v + 0.1 } else { v }).collect();
    let r = rng.vec(64, 1.0);
    let mut y = vec![0.0; 64];
    let mut dx = vec![0.0; 64];
    be.gelu_backward(&mut dx, &r, &x).unwrap();
    fd_check("gelu", &x, &dx, TOL, |xp| {
        be.gelu_forward(&mut y.clone(), &xp.to_vec()).unwrap();
        let mut out = vec![0.0; 64];
        be.gelu_forward(&mut out, &xp.to_vec()).unwrap();
        dot(&out, &r)
    });
    be.relu_forward(&mut y, &x).unwrap();
    be.relu_backward(&mut dx, &r, &y).unwrap();
    fd_check("relu", &x, &dx, TOL, |xp| {
        let mut out = vec![0.0; 64];
        be.relu_forward(&mut out, &xp.to_vec()).unwrap();
        dot(&out, &r)
    });
}

#[test]
fn gelu_is_the_exact_erf_form() {
    let be = be();
    let x: Vec<f32> = (-40..=40).map(|i| i as f32 / 8.0).collect();
    let mut y = vec![0.0; x.len()];
    be.gelu_forward(&mut y, &x).unwrap();
    // PyTorch's F.gelu (approximate='none') at a few points
    let want =
        [(-5.0f32, -1.4333e-06f32), (-1.0, -0.158_655_26), (0.5, 0.345_731_4), (1.0, 0.841_344_7), (2.0, 1.954_5)];
    for (xv, yv) in want {
        let i = x.iter().position(|&v| v == xv).unwrap();
        assert!((y[i] - yv).abs() < 2e-6 + 1e-5 * yv.abs(), "gelu({xv}) = {}, want {yv}", y[i]);
    }
}

fn attention_case(masked_row: bool) {
    let be = be();
    let mut rng = Rng::new(13);
    let (b, t, d, h) = (2, 5, 8, 2);
    let mut att = SelfAttention::new(&be, "att", d, h).unwrap();
    for p in att.params_mut() {
        p.value = rng.vec(p.numel(), 0.5);
    }
    let x = rng.vec(b * t * d, 1.0);
    let mut mask = vec![1.0f32; b * t];
    mask[3] = 0.0;
    mask[t + 1] = 0.0;
    if masked_row {
        mask[t..2 * t].iter_mut().for_each(|m| *m = 0.0);
    }
    let r = rng.vec(b * t * d, 1.0);
    let mut y = vec![];
    att.forward(&be, &mut y, &x, &mask, b, t).unwrap();
    let mut dx = vec![];
    att.backward_input(&be, &mut dx, &r, b, t).unwrap();
    att.param_grads(&be, &x, &r, &GradReduce::plain(&GroupRows::single(b)), t).unwrap();
    let f = |att: &mut SelfAttention<Cpu>, x: &[f32]| {
        let mut y = vec![];
        att.forward(&be, &mut y, &x.to_vec(), &mask, b, t).unwrap();
        dot(&y, &r)
    };
    fd_check("attention dx", &x, &dx, TOL, |xp| f(&mut att, xp));
    let n = att.params().len();
    for i in 0..n {
        let (v, g, name) = {
            let p = &att.params()[i];
            (p.value.clone(), p.grad.clone(), p.name.clone())
        };
        fd_check(&name, &v, &g, TOL, |vp| {
            att.params_mut()[i].value = vp.to_vec();
            f(&mut att, &x)
        });
        att.params_mut()[i].value = v;
    }
}

#[test]
fn attention_backward_matches_finite_differences() {
    attention_case(false);
}

#[test]
fn attention_with_an_all_masked_example_has_finite_gradients() {
    attention_case(true);
}

#[test]
fn encoder_block_backward_matches_finite_differences() {
    let be = be();
    let mut rng = Rng::new(14);
    let (b, t, d, h, ff) = (2, 4, 8, 2, 16);
    let mut blk = EncoderBlock::new(&be, "blocks.0", d, h, ff).unwrap();
    for p in blk.params_mut() {
        let base = if p.name.contains("ln") && p.name.ends_with("weight") { 1.0 } else { 0.0 };
        p.value = rng.vec(p.numel(), 0.4).iter().map(|v| v + base).collect();
    }
    let x = rng.vec(b * t * d, 1.0);
    let mut mask = vec![1.0f32; b * t];
    mask[t + 2] = 0.0;
    let r = rng.vec(b * t * d, 1.0);
    let mut y = vec![];
    blk.forward(&be, &mut y, &x, &mask, b, t).unwrap();
    let mut dx = vec![];
    blk.backward_input(&be, &mut dx, &r, &x, b, t).unwrap();
    blk.param_grads(&be, &r, &GradReduce::plain(&GroupRows::single(b)), t).unwrap();
    let f = |blk: &mut EncoderBlock<Cpu>, x: &[f32]| {
        let mut y = vec![];
        blk.forward(&be, &mut y, &x.to_vec(), &mask, b, t).unwrap();
        dot(&y, &r)
    };
    fd_check("block dx", &x, &dx, TOL, |xp| f(&mut blk, xp));
    let n = blk.params().len();
    for i in 0..n {
        let (v, g, name) = {
            let p = &blk.params()[i];
            (p.value.clone(), p.grad.clone(), p.name.clone())
        };
        fd_check(&name, &v, &g, TOL, |vp| {
            blk.params_mut()[i].value = vp.to_vec();
            f(&mut blk, &x)
        });
        blk.params_mut()[i].value = v;
    }
}

#[test]
fn embedding_backward_matches_finite_differences() {
    let be = be();
    let mut rng = Rng::new(15);
    let (vocab, d, rows) = (7, 3, 10);
    let mut e = Embedding::new(&be, "embed", vocab, d).unwrap();
    e.table.value = rng.vec(vocab * d, 1.0);
    let ids: Vec<u32> = (0..rows).map(|i| [1, 3, 3, 6, 0, 1, 3, 2, 2, 5][i]).collect();
    let r = rng.vec(rows * d, 1.0);
    e.param_grads(&be, &ids, &r, &GradReduce::plain(&GroupRows::single(rows)), 1).unwrap();
    let tbl = e.table.value.clone();
    let grad = e.table.grad.clone();
    fd_check("embedding dtable", &tbl, &grad, TOL, |tp| {
        e.table.value = tp.to_vec();
        let mut y = vec![];
        e.forward(&be, &mut y, &ids, false).unwrap();
        dot(&y, &r)
    });
}

#[test]
fn masked_mean_pool_backward_matches_finite_differences() {
    let be = be();
    let mut rng = Rng::new(16);
    let (b, t, c) = (3, 4, 5);
    let hs = rng.vec(b * t * c, 1.0);
    let mask = vec![1., 0., 1., 1., 0., 0., 0., 0., 1., 1., 1., 1.];
    let r = rng.vec(b * c, 1.0);
    let mut dh = vec![0.0; b * t * c];
    be.masked_mean_pool_backward(&mut dh, &r, &mask, t, c).unwrap();
    fd_check("pool dh", &hs, &dh, TOL, |hp| {
        let mut out = vec![0.0; b * c];
        be.masked_mean_pool_forward(&mut out, &hp.to_vec(), &mask, t, c).unwrap();
        dot(&out, &r)
    });
}

#[test]
fn losses_backward_match_finite_differences() {
    let be = be();
    let mut rng = Rng::new(17);
    let z = rng.vec(6, 3.0);
    let y = vec![1.0, 0.0, 1.0, 0.0, 0.3, 1.0];
    let (mut l, mut dz) = (vec![0.0; 6], vec![0.0; 6]);
    be.bce_with_logits(&mut l, &mut dz, &z, &y, 1.0).unwrap();
    fd_check("bce", &z, &dz, TOL, |zp| {
        let (mut l, mut d) = (vec![0.0; 6], vec![0.0; 6]);
        be.bce_with_logits(&mut l, &mut d, &zp.to_vec(), &y, 1.0).unwrap();
        l.iter().map(|&v| v as f64).sum()
    });
    let (b, k) = (4, 3);
    let z = rng.vec(b * k, 3.0);
    let classes = vec![0u32, 2, 1, 2];
    let (mut l, mut dz) = (vec![0.0; b], vec![0.0; b * k]);
    be.cross_entropy(&mut l, &mut dz, &z, &classes, k, 1.0).unwrap();
    fd_check("cross_entropy", &z, &dz, TOL, |zp| {
        let (mut l, mut d) = (vec![0.0; b], vec![0.0; b * k]);
        be.cross_entropy(&mut l, &mut d, &zp.to_vec(), &classes, k, 1.0).unwrap();
        l.iter().map(|&v| v as f64).sum()
    });
    // pinned values: BCE(0, 1) = ln 2; CE of uniform logits = ln k
    let (mut l1, mut d1) = (vec![0.0], vec![0.0]);
    be.bce_with_logits(&mut l1, &mut d1, &vec![0.0], &vec![1.0], 1.0).unwrap();
    assert!((l1[0] - std::f32::consts::LN_2).abs() < 1e-6);
    let (mut l2, mut d2) = (vec![0.0], vec![0.0; 3]);
    be.cross_entropy(&mut l2, &mut d2, &vec![0.0; 3], &vec![1], 3, 1.0).unwrap();
    assert!((l2[0] - 3f32.ln()).abs() < 1e-6);
}
