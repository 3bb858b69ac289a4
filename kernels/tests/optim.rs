//! SGD with momentum and AdamW against PyTorch's documented update rules, computed here in f64.

mod common;
use kernels::nn::Param;
use kernels::{AdamW, Backend, Optimizer, OptimizerKind};

fn param<B: Backend>(be: &B, w: &[f32]) -> Param<B> {
    let mut p = Param::zeros(be, "w", &[w.len()]).unwrap();
    p.value = be.upload(w).unwrap();
    p
}

const W0: [f32; 4] = [0.5, -1.0, 2.0, 0.0];
const GRADS: [[f32; 4]; 3] = [[0.1, -0.2, 0.3, 0.0], [0.4, 0.1, -0.5, 1.0], [-0.3, 0.2, 0.1, -1.0]];

fn sgd_with_momentum_and_weight_decay_follows_pytorch(be: &impl Backend) {
    let (lr, mu, wd) = (0.1f64, 0.9f64, 0.01f64);
    let mut opt = Optimizer::new(OptimizerKind::Sgd { lr: lr as f32, momentum: mu as f32, weight_decay: wd as f32 });
    let mut p = param(be, &W0);
    // torch.optim.SGD: g = g + wd*w; buf = g (first step) else mu*buf + g; w -= lr*buf
    let mut w: Vec<f64> = W0.iter().map(|&v| v as f64).collect();
    let mut buf = vec![0.0f64; 4];
    for (step, g) in GRADS.iter().enumerate() {
        p.grad = be.upload(g).unwrap();
        opt.step(be, vec![&mut p]).unwrap();
        for i in 0..4 {
            let gi = g[i] as f64 + wd * w[i];
            buf[i] = if step == 0 { gi } else { mu * buf[i] + gi };
            w[i] -= lr * buf[i];
        }
        let value = be.download(&p.value).unwrap();
        for i in 0..4 {
            assert!((value[i] as f64 - w[i]).abs() < 1e-6, "step {step} w[{i}] = {}, want {}", value[i], w[i]);
        }
    }
}

fn adamw_follows_pytorch(be: &impl Backend) {
    let h = AdamW { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
    let mut opt = Optimizer::new(OptimizerKind::AdamW(h));
    let mut p = param(be, &W0);
    // torch.optim.AdamW: w *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    // w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
    let (lr, b1, b2, eps, wd) = (h.lr as f64, h.beta1 as f64, h.beta2 as f64, h.eps as f64, h.weight_decay as f64);
    let mut w: Vec<f64> = W0.iter().map(|&v| v as f64).collect();
    let (mut m, mut v) = (vec![0.0f64; 4], vec![0.0f64; 4]);
    for (step, g) in GRADS.iter().enumerate() {
        let t = (step + 1) as i32;
        p.grad = be.upload(g).unwrap();
        opt.step(be, vec![&mut p]).unwrap();
        for i in 0..4 {
            let gi = g[i] as f64;
            w[i] *= 1.0 - lr * wd;
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            w[i] -= lr / (1.0 - b1.powi(t)) * m[i] / (v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps);
        }
        let value = be.download(&p.value).unwrap();
        for i in 0..4 {
            assert!((value[i] as f64 - w[i]).abs() < 1e-6, "step {t} w[{i}] = {}, want {}", value[i], w[i]);
        }
    }
    // the first AdamW step moves every coordinate with a nonzero gradient by about lr
    assert!((W0[0] as f64 * (1.0 - lr * wd) - 0.01 - (W0[0] as f64 - 0.01 - W0[0] as f64 * lr * wd)).abs() < 1e-12);
}

fn optimizer_refuses_a_different_parameter_list(be: &impl Backend) {
    let mut opt = Optimizer::new(OptimizerKind::adamw(0.01));
    let mut a = param(be, &W0);
    let mut b = param(be, &W0);
    opt.step(be, vec![&mut a]).unwrap();
    assert!(opt.step(be, vec![&mut a, &mut b]).is_err());
}

backend_tests! {
    sgd_with_momentum_and_weight_decay_follows_pytorch => super::sgd_with_momentum_and_weight_decay_follows_pytorch,
    adamw_follows_pytorch => super::adamw_follows_pytorch,
    optimizer_refuses_a_different_parameter_list => super::optimizer_refuses_a_different_parameter_list,
}
