// prelude.cuh — what every .cu of the CUDA backend starts with: integer types and the f32 math of
// kernels/src/cpu/math.rs, operation for operation, so that a kernel gives the CPU's bits.
//
// The Rust side prepends this file to each .cu before NVRTC compiles it (source.rs); the CPU emulation
// includes it after emu/cuda_emu.h. No #include here: NVRTC has no standard headers by default.
//
// Rounding: Rust never contracts `a * b + c`, and `mul_add` is one fused multiply-add. So every product
// and sum below is written as an explicitly rounded intrinsic (__fmul_rn, __fadd_rn, __fsub_rn,
// __fdiv_rn, __fsqrt_rn; __fmaf_rn where the CPU has `mul_add`): the result does not depend on
// --fmad (production also passes --fmad=false; the NVRTC test checks the PTX is the same either way).
// Constants are the decimal literals of math.rs (both languages round a decimal literal correctly).

typedef unsigned int u32;
typedef unsigned long long u64;

#define MT_INLINE __device__ __forceinline__

// a.clamp(lo, hi) of Rust: NaN passes through (fminf/fmaxf would drop it)
MT_INLINE float mt_clamp(float x, float lo, float hi) {
    x = x < lo ? lo : x;
    return x > hi ? hi : x;
}

// e^x, kernels/src/cpu/math.rs `exp` (Cephes expf, Cody-Waite split of ln 2)
MT_INLINE float mt_exp(float x) {
    const float LOG2E = 1.44269504088896340735992468100189214f;
    const float C1 = 0.6933594f;
    const float C2 = -2.1219444e-4f;
    x = mt_clamp(x, -87.0f, 88.0f);
    float n = floorf(__fadd_rn(__fmul_rn(x, LOG2E), 0.5f));
    float r = __fsub_rn(__fsub_rn(x, __fmul_rn(n, C1)), __fmul_rn(n, C2));
    float p = 1.9875691e-4f;
    p = __fmaf_rn(p, r, 1.3981999e-3f);
    p = __fmaf_rn(p, r, 8.333452e-3f);
    p = __fmaf_rn(p, r, 4.1665796e-2f);
    p = __fmaf_rn(p, r, 0.16666665f);
    p = __fmaf_rn(p, r, 0.5f);
    float e = __fadd_rn(__fmaf_rn(__fmul_rn(p, r), r, r), 1.0f);
    float scale = __int_as_float((int)(((u32)((int)n + 127)) << 23));
    return __fmul_rn(e, scale);
}

// erf(x), math.rs `erf` (the rational approximation of Eigen and XLA)
MT_INLINE float mt_erf(float x) {
    x = mt_clamp(x, -4.0f, 4.0f);
    float x2 = __fmul_rn(x, x);
    float p = -2.7261423e-10f;
    p = __fmaf_rn(x2, p, 2.7706814e-8f);
    p = __fmaf_rn(x2, p, -2.101024e-6f);
    p = __fmaf_rn(x2, p, -5.6925065e-5f);
    p = __fmaf_rn(x2, p, -7.3499063e-4f);
    p = __fmaf_rn(x2, p, -2.954600e-3f);
    p = __fmaf_rn(x2, p, -1.6096033e-2f);
    p = __fmul_rn(p, x);
    float q = -1.4566072e-5f;
    q = __fmaf_rn(x2, q, -2.1337406e-4f);
    q = __fmaf_rn(x2, q, -1.682827e-3f);
    q = __fmaf_rn(x2, q, -7.373329e-3f);
    q = __fmaf_rn(x2, q, -1.4264739e-2f);
    return __fdiv_rn(p, q);
}

// ln x for positive normal x, math.rs `ln` (Cephes logf)
MT_INLINE float mt_ln(float x) {
    const float SQRT_HALF = 0.707106781186547524400844362104849039f;
    u32 bits = __float_as_uint(x);
    int e = (int)((bits >> 23) & 0xffu) - 126;
    float m = __uint_as_float((bits & 0x007fffffu) | 0x3f000000u);
    bool small = m < SQRT_HALF;
    e -= small ? 1 : 0;
    m = small ? __fsub_rn(__fadd_rn(m, m), 1.0f) : __fsub_rn(m, 1.0f);
    float ef = (float)e;
    float z = __fmul_rn(m, m);
    float y = 7.0376836e-2f;
    y = __fmaf_rn(y, m, -1.151461e-1f);
    y = __fmaf_rn(y, m, 1.1676999e-1f);
    y = __fmaf_rn(y, m, -1.2420141e-1f);
    y = __fmaf_rn(y, m, 1.4249323e-1f);
    y = __fmaf_rn(y, m, -1.6668058e-1f);
    y = __fmaf_rn(y, m, 2.0000714e-1f);
    y = __fmaf_rn(y, m, -2.4999994e-1f);
    y = __fmaf_rn(y, m, 3.333333e-1f);
    y = __fmul_rn(__fmul_rn(y, m), z);
    y = __fmaf_rn(ef, -2.1219444e-4f, y);
    y = __fmaf_rn(z, -0.5f, y);
    return __fmaf_rn(ef, 0.6933594f, __fadd_rn(m, y));
}

// (cos 2 pi u, sin 2 pi u) for u in [0, 1), math.rs `cos_sin_turns`
MT_INLINE void mt_cos_sin_turns(float u, float* cos_out, float* sin_out) {
    const float FRAC_PI_2 = 1.57079632679489661923132169163975144f;
    float t = __fmul_rn(u, 4.0f);
    float q = floorf(__fadd_rn(t, 0.5f));
    float a = __fmul_rn(__fsub_rn(t, q), FRAC_PI_2);
    float a2 = __fmul_rn(a, a);
    // a * (1 + a2 * (-1/6 + a2 * (1/120 + a2 * (-1/5040 + a2 * (1/362880)))))
    float s = __fmul_rn(a2, 1.0f / 362880.0f);
    s = __fmul_rn(a2, __fadd_rn(-1.0f / 5040.0f, s));
    s = __fmul_rn(a2, __fadd_rn(1.0f / 120.0f, s));
    s = __fmul_rn(a2, __fadd_rn(-1.0f / 6.0f, s));
    s = __fmul_rn(a, __fadd_rn(1.0f, s));
    // 1 + a2 * (-0.5 + a2 * (1/24 + a2 * (-1/720 + a2 * (1/40320))))
    float c = __fmul_rn(a2, 1.0f / 40320.0f);
    c = __fmul_rn(a2, __fadd_rn(-1.0f / 720.0f, c));
    c = __fmul_rn(a2, __fadd_rn(1.0f / 24.0f, c));
    c = __fmul_rn(a2, __fadd_rn(-0.5f, c));
    c = __fadd_rn(1.0f, c);
    int qi = (int)q & 3;
    bool swap = (qi & 1) == 1;
    float c1 = swap ? s : c;
    float s1 = swap ? c : s;
    *cos_out = (qi == 1 || qi == 2) ? -c1 : c1;
    *sin_out = qi >= 2 ? -s1 : s1;
}

// 1 / (1 + e^-x), math.rs `sigmoid`
MT_INLINE float mt_sigmoid(float x) {
    return __fdiv_rn(1.0f, __fadd_rn(1.0f, mt_exp(-x)));
}

// math.rs `tanh`: sign(x) (1 - 2 / (e^{2|x|} + 1)), the identity below 2^-12
MT_INLINE float mt_tanh(float x) {
    float a = fabsf(x);
    float t = a < 1.0f / 4096.0f ? a : __fsub_rn(1.0f, __fdiv_rn(2.0f, __fadd_rn(mt_exp(__fmul_rn(2.0f, a)), 1.0f)));
    return copysignf(t, x);
}

// math.rs `normal_pdf`: exp(-x^2/2) / sqrt(2 pi)
MT_INLINE float mt_normal_pdf(float x) {
    const float INV_SQRT_2PI = 0.39894228f;
    return __fmul_rn(INV_SQRT_2PI, mt_exp(__fmul_rn(__fmul_rn(-0.5f, x), x)));
}

// cpu/elementwise.rs `gelu`: 0.5 x (1 + erf(x / sqrt 2))
MT_INLINE float mt_gelu(float x) {
    const float FRAC_1_SQRT_2 = 0.707106781186547524400844362104849039f;
    return __fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, mt_erf(__fmul_rn(x, FRAC_1_SQRT_2))));
}

// cpu/elementwise.rs `gelu_grad`: 0.5 (1 + erf(x / sqrt 2)) + x pdf(x)
MT_INLINE float mt_gelu_grad(float x) {
    const float FRAC_1_SQRT_2 = 0.707106781186547524400844362104849039f;
    float cdf2 = __fmul_rn(0.5f, __fadd_rn(1.0f, mt_erf(__fmul_rn(x, FRAC_1_SQRT_2))));
    return __fadd_rn(cdf2, __fmul_rn(x, mt_normal_pdf(x)));
}

// the first element index of this thread and the grid's stride, for grid-stride loops over u64 counts
MT_INLINE u64 mt_first() {
    return (u64)blockIdx.x * blockDim.x + threadIdx.x;
}
MT_INLINE u64 mt_stride() {
    return (u64)gridDim.x * blockDim.x;
}
