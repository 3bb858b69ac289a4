// optim.cu — optimizer steps in the semantics of kernels/src/cpu/elementwise.rs (PyTorch's SGD and
// AdamW), element by element with the CPU's rounding, so the results are the CPU's bits.
// w, m, v: [N] updated in place (=); g: [N] read.

// PyTorch SGD: g' = g + wd w; m = momentum m + g' (m = g' on the first step); w -= lr m.
// With momentum 0 there is no m (it may be null): w -= lr (g + wd w).
extern "C" __global__ void sgd_step(float* w, const float* g, float* m, float lr, float momentum,
                                    float weight_decay, u32 first_step, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        float wi = w[i];
        float gi = __fadd_rn(g[i], __fmul_rn(weight_decay, wi));
        if (momentum == 0.0f) {
            w[i] = __fsub_rn(wi, __fmul_rn(lr, gi));
        } else {
            float mi = first_step ? gi : __fadd_rn(__fmul_rn(momentum, m[i]), gi);
            m[i] = mi;
            w[i] = __fsub_rn(wi, __fmul_rn(lr, mi));
        }
    }
}

// PyTorch AdamW at one step: the host computes step = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t)
// and decay = 1 - lr wd exactly as the CPU does (cpu/elementwise.rs `adamw_scalars`).
extern "C" __global__ void adamw_step(float* w, const float* g, float* m, float* v, float beta1, float beta2,
                                      float eps, float step, float bc2_sqrt, float decay, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        float gi = g[i];
        float wi = __fmul_rn(w[i], decay);
        float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(__fsub_rn(1.0f, beta1), gi));
        float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(__fmul_rn(__fsub_rn(1.0f, beta2), gi), gi));
        m[i] = mi;
        v[i] = vi;
        w[i] = __fsub_rn(wi, __fdiv_rn(__fmul_rn(step, mi), __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps)));
    }
}
