// loss.cu — masked mean pooling and the losses, in the semantics of kernels/src/cpu/pool_loss.rs.
// Shape legend: B examples, T steps, C channels, K classes. The pooling and the regression loss are the
// CPU's operations in its order: its bits. The BCE and cross-entropy losses compute in f64 as the CPU
// does, but the CPU's exp, ln and ln_1p are glibc's (correctly rounded in nearly every case), which no
// GPU has: here they are mt_exp64 / mt_log64 / mt_log1p64 below, written with explicitly rounded
// operations (fdlibm's log, a degree-13 exp), so the emulation computes exactly what a GPU computes,
// and their f64 results are within a few f64 ulp of glibc's. After the rounding to f32 a loss and its
// gradient agree with the CPU's to 1 f32 ulp (tests/common/cuda.rs holds them to that), not bit for bit.

MT_INLINE double mt_pow2(int k) {  // 2^k for -1022 <= k <= 1023
    return __longlong_as_double((long long)(k + 1023) << 52);
}

// e^x in f64: x = k ln 2 + r (Cody-Waite, |r| <= ln 2 / 2), e^r by its Taylor polynomial of degree 13
// (truncation below 1e-17 relative), times 2^k in two exact steps
MT_INLINE double mt_exp64(double x) {
    if (isnan(x)) return x;
    if (x > 709.782712893384) return __longlong_as_double(0x7ff0000000000000LL);
    if (x < -745.2) return 0.0;
    const double LOG2E = 1.4426950408889634;
    const double LN2_HI = 6.93147180369123816490e-01;
    const double LN2_LO = 1.90821492927058770002e-10;
    const double k = rint(__dmul_rn(x, LOG2E));
    double r = __fma_rn(-k, LN2_HI, x);
    r = __fma_rn(-k, LN2_LO, r);
    double p = 1.0 / 6227020800.0;
    p = __fma_rn(p, r, 1.0 / 479001600.0);
    p = __fma_rn(p, r, 1.0 / 39916800.0);
    p = __fma_rn(p, r, 1.0 / 3628800.0);
    p = __fma_rn(p, r, 1.0 / 362880.0);
    p = __fma_rn(p, r, 1.0 / 40320.0);
    p = __fma_rn(p, r, 1.0 / 5040.0);
    p = __fma_rn(p, r, 1.0 / 720.0);
    p = __fma_rn(p, r, 1.0 / 120.0);
    p = __fma_rn(p, r, 1.0 / 24.0);
    p = __fma_rn(p, r, 1.0 / 6.0);
    p = __fma_rn(p, r, 0.5);
    p = __fma_rn(p, r, 1.0);
    p = __fma_rn(p, r, 1.0);
    const int ki = (int)k;
    const int k1 = ki / 2;
    return __dmul_rn(__dmul_rn(p, mt_pow2(k1)), mt_pow2(ki - k1));
}

// ln x in f64, fdlibm's __ieee754_log (x = 2^k m, m in [sqrt(2)/2, sqrt(2)), its minimax series in
// s = f / (2 + f), f = m - 1): under 1 f64 ulp
MT_INLINE double mt_log64(double x) {
    if (isnan(x) || x == __longlong_as_double(0x7ff0000000000000LL)) return x;
    if (x <= 0.0) return x == 0.0 ? __longlong_as_double((long long)0xfff0000000000000ULL) : __longlong_as_double(0x7ff8000000000000LL);
    int k = 0;
    if (x < 2.2250738585072014e-308) {  // subnormal: scale by 2^54
        x = __dmul_rn(x, 18014398509481984.0);
        k = -54;
    }
    const unsigned long long bits = (unsigned long long)__double_as_longlong(x);
    k += (int)((bits >> 52) & 0x7ff) - 1023;
    double m = __longlong_as_double((long long)((bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL));
    if (m > 1.4142135623730951) {
        m = __dmul_rn(m, 0.5);
        k += 1;
    }
    const double f = __dsub_rn(m, 1.0);
    const double dk = (double)k;
    const double hfsq = __dmul_rn(__dmul_rn(0.5, f), f);
    const double s = __ddiv_rn(f, __dadd_rn(2.0, f));
    const double z = __dmul_rn(s, s);
    const double w = __dmul_rn(z, z);
    const double t1 = __dmul_rn(w, __fma_rn(w, __fma_rn(w, 1.531383769920937332e-01, 2.222219843214978396e-01),
                                            3.999999999940941908e-01));
    const double t2 = __dmul_rn(z, __fma_rn(w, __fma_rn(w, __fma_rn(w, 1.479819860511658591e-01,
                                                                      1.818357216161805012e-01),
                                                         2.857142874366239149e-01),
                                            6.666666666666735130e-01));
    const double R = __dadd_rn(t2, t1);
    const double inner = __dadd_rn(__dmul_rn(s, __dadd_rn(hfsq, R)), __dmul_rn(dk, 1.90821492927058770002e-10));
    return __dsub_rn(__dmul_rn(dk, 6.93147180369123816490e-01), __dsub_rn(__dsub_rn(hfsq, inner), f));
}

// ln(1 + y) in f64 for y >= 0: ln(u) y / (u - 1) with u = 1 + y (Goldberg's correction), y when u is 1
MT_INLINE double mt_log1p64(double y) {
    const double u = __dadd_rn(1.0, y);
    if (u == 1.0) return y;
    return __ddiv_rn(__dmul_rn(mt_log64(u), y), __dsub_rn(u, 1.0));
}

// the sum of mask[0 .. t] in order (Rust's f32 `sum`, from -0), at least 1
MT_INLINE float mt_kept(const float* mask, u64 t) {
    float s = -0.0f;
    for (u64 i = 0; i < t; ++i) s = __fadd_rn(s, mask[i]);
    return fmaxf(s, 1.0f);
}

// h: [B, T, C], mask: [B, T] -> out: [B, C] = sum_t h m / max(sum_t m, 1), the kept steps in order
// (n = B * C)
extern "C" __global__ void masked_mean_pool_forward(float* out, const float* h, const float* mask, u64 t, u64 c,
                                                    u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        const u64 b = i / c;
        const u64 col = i % c;
        const float* m = mask + b * t;
        float o = 0.0f;
        for (u64 s = 0; s < t; ++s) {
            float mv = m[s];
            if (mv != 0.0f) o = __fadd_rn(o, __fmul_rn(h[(b * t + s) * c + col], mv));
        }
        out[i] = __fmul_rn(o, __fdiv_rn(1.0f, mt_kept(m, t)));
    }
}

// dout: [B, C], mask: [B, T] -> dh: [B, T, C] = dout[b, :] (m[b, t] / max(sum_t m, 1)); one thread per
// (b, channel) writes its T steps (n = B * C)
extern "C" __global__ void masked_mean_pool_backward(float* dh, const float* dout, const float* mask, u64 t, u64 c,
                                                     u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        const u64 b = i / c;
        const u64 col = i % c;
        const float* m = mask + b * t;
        const float inv = __fdiv_rn(1.0f, mt_kept(m, t));
        const float g = dout[i];
        for (u64 s = 0; s < t; ++s) dh[(b * t + s) * c + col] = __fmul_rn(g, __fmul_rn(m[s], inv));
    }
}

// logits, targets: [B] -> losses: [B] = max(z, 0) - z y + ln(1 + e^-|z|), dlogits: [B] =
// grad_scale (sigmoid(z) - y), in f64
extern "C" __global__ void bce_with_logits(float* losses, float* dlogits, const float* logits, const float* targets,
                                           float grad_scale, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        const double z = logits[i];
        const double y = targets[i];
        const double l = __dadd_rn(__dsub_rn(fmax(z, 0.0), __dmul_rn(z, y)), mt_log1p64(mt_exp64(-fabs(z))));
        losses[i] = (float)l;
        const double sig = __ddiv_rn(1.0, __dadd_rn(1.0, mt_exp64(-z)));
        dlogits[i] = (float)__dmul_rn(__dsub_rn(sig, y), (double)grad_scale);
    }
}

// preds, targets: [B] -> losses: [B], dlogits: [B] = grad_scale dloss/dpred, in f64: squared error
// (huber 0) or the Huber loss of delta (huber 1)
extern "C" __global__ void regression_loss(float* losses, float* dlogits, const float* preds, const float* targets,
                                           u32 huber, float delta, float grad_scale, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        const double r = __dsub_rn((double)preds[i], (double)targets[i]);
        double l, g;
        if (!huber) {
            l = __dmul_rn(r, r);
            g = __dmul_rn(2.0, r);
        } else {
            const double d = delta;
            if (fabs(r) <= d) {
                l = __dmul_rn(__dmul_rn(0.5, r), r);
                g = r;
            } else {
                l = __dmul_rn(d, __dsub_rn(fabs(r), __dmul_rn(0.5, d)));
                // Rust's signum: NaN for NaN, else +-1 by the sign bit
                g = __dmul_rn(d, isnan(r) ? r : copysign(1.0, r));
            }
        }
        losses[i] = (float)l;
        dlogits[i] = (float)__dmul_rn(g, (double)grad_scale);
    }
}

// logits: [B, K], classes: [B] -> losses: [B] = logsumexp(z) - z_y, dlogits: [B, K] =
// grad_scale (softmax(z) - onehot(y)), in f64 with the CPU's order; one thread per example (n = B)
extern "C" __global__ void cross_entropy(float* losses, float* dlogits, const float* logits, const u32* classes,
                                         u64 k, float grad_scale, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        const float* z = logits + i * k;
        float mx32 = __int_as_float(0xff800000);
        for (u64 j = 0; j < k; ++j) mx32 = fmaxf(mx32, z[j]);
        const double mx = mx32;
        double sum = -0.0;
        for (u64 j = 0; j < k; ++j) sum = __dadd_rn(sum, mt_exp64(__dsub_rn((double)z[j], mx)));
        const double lse = __dadd_rn(mx, mt_log64(sum));
        const u64 y = classes[i];
        losses[i] = (float)__dsub_rn(lse, (double)z[y]);
        for (u64 j = 0; j < k; ++j) {
            const double p = mt_exp64(__dsub_rn((double)z[j], lse));
            dlogits[i * k + j] = (float)__dmul_rn(__dsub_rn(p, j == y ? 1.0 : 0.0), (double)grad_scale);
        }
    }
}
