// elementwise.cu — fills, sums, bias broadcast, activations, and the per-group DP scaling, in the
// semantics of kernels/src/cpu/elementwise.rs (each output element is the CPU's expression, rounded the
// same way, so the results are the CPU's bits). Shape legend: R rows, D channels, G privacy groups.
// `=` after an output: overwritten. Every kernel is a grid-stride loop over its output elements.

// y: [N] = value
extern "C" __global__ void fill_f32(float* y, float value, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) y[i] = value;
}

// a: [N], b: [N] -> out: [N] = a + b
extern "C" __global__ void add_f32(float* out, const float* a, const float* b, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) out[i] = __fadd_rn(a[i], b[i]);
}

// y: [N] += x: [N]
extern "C" __global__ void add_assign_f32(float* y, const float* x, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) y[i] = __fadd_rn(y[i], x[i]);
}

// bias: [D] -> y: [R, D] = bias in every row (n = R * D)
extern "C" __global__ void broadcast_rows_f32(float* y, const float* bias, u64 d, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) y[i] = bias[i % d];
}

// The activation codes of cuda/plan.rs (`activation_code`).
#define MT_RELU 0u
#define MT_GELU 1u
#define MT_SIGMOID 2u
#define MT_TANH 3u

// x: [N] -> y: [N] = f(x)
extern "C" __global__ void activation_forward(u32 f, float* y, const float* x, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        float v = x[i];
        float out;
        if (f == MT_RELU) {
            out = v > 0.0f ? v : 0.0f; // Rust's v.max(0.0): 0 for NaN and for -0
        } else if (f == MT_GELU) {
            out = mt_gelu(v);
        } else if (f == MT_SIGMOID) {
            out = mt_sigmoid(v);
        } else {
            out = mt_tanh(v);
        }
        y[i] = out;
    }
}

// dy, x (forward input), y (forward output): [N] -> dx: [N] = dy * f'(x), from x or y as f needs
extern "C" __global__ void activation_backward(u32 f, float* dx, const float* dy, const float* x, const float* y,
                                               u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        float g = dy[i];
        float out;
        if (f == MT_RELU) {
            out = y[i] > 0.0f ? g : 0.0f;
        } else if (f == MT_GELU) {
            out = __fmul_rn(g, mt_gelu_grad(x[i]));
        } else if (f == MT_SIGMOID) {
            float s = y[i];
            out = __fmul_rn(__fmul_rn(g, s), __fsub_rn(1.0f, s));
        } else {
            float t = y[i];
            out = __fmul_rn(g, __fsub_rn(1.0f, __fmul_rn(t, t)));
        }
        dx[i] = out;
    }
}

// sq_norms: [G] -> factors: [G] = min(1, clip / sqrt(sq_norms)); 1 where the norm is 0 and 0 where it is
// NaN (a NaN gradient is never passed through unclipped)
extern "C" __global__ void clip_factors(float* factors, const float* sq_norms, float clip, u64 g) {
    for (u64 i = mt_first(); i < g; i += mt_stride()) {
        float s = sq_norms[i];
        float norm = isnan(s) ? __int_as_float(0x7f800000) : __fsqrt_rn(fmaxf(s, 0.0f));
        factors[i] = norm > clip ? __fdiv_rn(clip, norm) : 1.0f;
    }
}

// x: [R, D], factors: [G], example_group: [E] (the group of each example), R = E * rows_per_example
// -> y: [R, D + append] = factors[group of row r] * x, and with `append` the factor itself in column D
extern "C" __global__ void scale_rows_by_group(float* y, const float* x, const float* factors,
                                               const u32* example_group, u64 d, u32 append,
                                               u64 rows_per_example, u64 n) {
    const u64 width = d + append;
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        u64 r = i / width;
        u64 col = i % width;
        float f = factors[example_group[r / rows_per_example]];
        y[i] = col < d ? __fmul_rn(f, x[r * d + col]) : f;
    }
}

// src: [R, src_w] -> dst: [R, dst_w] with dst[r, dst_col + j] = src[r, src_col + j] for j < width, the
// other columns of dst untouched (n = R * width)
extern "C" __global__ void copy_columns(float* dst, const float* src, u64 dst_w, u64 dst_col, u64 src_w,
                                        u64 src_col, u64 width, u64 n) {
    for (u64 i = mt_first(); i < n; i += mt_stride()) {
        u64 r = i / width;
        u64 j = i % width;
        dst[r * dst_w + dst_col + j] = src[r * src_w + src_col + j];
    }
}
