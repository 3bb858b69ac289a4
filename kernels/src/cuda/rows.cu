// rows.cu — per-row kernels in the semantics of kernels/src/cpu/layer_norm.rs and cpu/attention.rs:
// layer norm, the masked softmax and its backward. Shape legend: R rows, C (or T) columns.
//
// The CPU's order is kept exactly, so the results are the CPU's bits. Its row reductions
// (cpu/reduce.rs) keep 16 accumulators, accumulator l summing the columns j = l (mod 16) below
// C - C % 16 one after another, then add the accumulators pairwise (a[i] += a[i + w], w = 8, 4, 2, 1),
// then the tail columns in order. Here a row belongs to 16 lanes (half a warp): lane l is accumulator
// l, a butterfly of shuffles is the pairwise sum (lane i gets a[i] + a[i ^ w]; for i >= w that is the
// CPU's a[i - w] + a[i], the same IEEE sum), so every lane ends with the CPU's sum, and every lane sums
// the tail itself in the CPU's order (at most 15 columns). A warp takes two rows at a time and every
// lane of it runs the loop the same number of times, as the shuffles (full mask) need.

// lanes of one half warp, l = lane % 16: the CPU's pairwise sum of the 16 accumulators, in every lane
MT_INLINE float mt_lanes_sum16(float a) {
    for (u32 w = 8; w > 0; w /= 2) a = __fadd_rn(a, __shfl_xor_sync(0xffffffffu, a, w));
    return a;
}

// the max of the 16 accumulators (order does not matter: no NaN enters, see masked_softmax_forward)
MT_INLINE float mt_lanes_max16(float a) {
    for (u32 w = 8; w > 0; w /= 2) {
        float o = __shfl_xor_sync(0xffffffffu, a, w);
        a = o > a ? o : a;
    }
    return a;
}

// The rows of a warp's loop iteration: `pair` counts row pairs; row = 2 pair + (lane / 16).
#define MT_ROW_PAIRS(rows)                                                                                   \
    const u32 lane = threadIdx.x % 16;                                                                     \
    const u64 pair_stride = mt_stride() / 32;                                                              \
    for (u64 pair = mt_first() / 32; pair < ((rows) + 1) / 2; pair += pair_stride)

// x: [R, C], gamma, beta: [C] -> y: [R, C] = (x - mean) rstd gamma + beta, mean: [R] =, rstd: [R] =
// with the biased variance and rstd = 1 / sqrt(var + eps)
extern "C" __global__ void layer_norm_forward(float* y, float* mean, float* rstd, const float* x,
                                              const float* gamma, const float* beta, u64 c, float eps,
                                              u64 rows) {
    const float cf = (float)c;
    MT_ROW_PAIRS(rows) {
        const u64 row = 2 * pair + (threadIdx.x % 32) / 16;
        const bool live = row < rows;
        const u64 n = live ? c : 0;
        const u64 full = n / 16 * 16;
        const u64 o = live ? row * c : 0;
        // reduce::sum
        float acc = 0.0f;
        for (u64 j = lane; j < full; j += 16) acc = __fadd_rn(acc, x[o + j]);
        float tail = -0.0f;
        for (u64 j = full; j < n; ++j) tail = __fadd_rn(tail, x[o + j]);
        const float m = __fdiv_rn(__fadd_rn(mt_lanes_sum16(acc), tail), cf);
        // reduce::sum_sq_dev
        acc = 0.0f;
        for (u64 j = lane; j < full; j += 16) {
            float d = __fsub_rn(x[o + j], m);
            acc = __fmaf_rn(d, d, acc);
        }
        tail = -0.0f;
        for (u64 j = full; j < n; ++j) {
            float d = __fsub_rn(x[o + j], m);
            tail = __fadd_rn(tail, __fmul_rn(d, d));
        }
        const float var = __fdiv_rn(__fadd_rn(mt_lanes_sum16(acc), tail), cf);
        const float r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
        for (u64 j = lane; j < n; j += 16)
            y[o + j] = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(x[o + j], m), r), gamma[j]), beta[j]);
        if (live && lane == 0) {
            mean[row] = m;
            rstd[row] = r;
        }
    }
}

// dy, x: [R, C], gamma: [C], mean, rstd: [R] -> dx: [R, C] = rstd (dxhat - mean(dxhat) - xhat
// mean(dxhat xhat)) with dxhat = dy gamma, xhat = (x - mean) rstd; dy_xhat: [R, C] = dy xhat
extern "C" __global__ void layer_norm_backward(float* dx, float* dy_xhat, const float* dy, const float* x,
                                               const float* gamma, const float* mean, const float* rstd, u64 c,
                                               u64 rows) {
    const float cf = (float)c;
    MT_ROW_PAIRS(rows) {
        const u64 row = 2 * pair + (threadIdx.x % 32) / 16;
        const bool live = row < rows;
        const u64 n = live ? c : 0;
        const u64 full = n / 16 * 16;
        const u64 o = live ? row * c : 0;
        const float m = live ? mean[row] : 0.0f;
        const float r = live ? rstd[row] : 0.0f;
        float s1 = 0.0f, s2 = 0.0f;
        for (u64 j = lane; j < full; j += 16) {
            float dxhat = __fmul_rn(dy[o + j], gamma[j]);
            s1 = __fadd_rn(s1, dxhat);
            s2 = __fmaf_rn(dxhat, __fmul_rn(__fsub_rn(x[o + j], m), r), s2);
        }
        float t1 = 0.0f, t2 = 0.0f;
        for (u64 j = full; j < n; ++j) {
            float dxhat = __fmul_rn(dy[o + j], gamma[j]);
            t1 = __fadd_rn(t1, dxhat);
            t2 = __fadd_rn(t2, __fmul_rn(__fmul_rn(dxhat, __fsub_rn(x[o + j], m)), r));
        }
        // reduce::sum(&s) of the 16 accumulators: 0 + s[l] in each lane, the pairwise sum, then the sum
        // of its empty tail (-0, which changes nothing)
        s1 = __fadd_rn(__fadd_rn(mt_lanes_sum16(__fadd_rn(0.0f, s1)), -0.0f), t1);
        s2 = __fadd_rn(__fadd_rn(mt_lanes_sum16(__fadd_rn(0.0f, s2)), -0.0f), t2);
        const float m1 = __fdiv_rn(s1, cf);
        const float m2 = __fdiv_rn(s2, cf);
        for (u64 j = lane; j < n; j += 16) {
            float g = dy[o + j];
            float xhat = __fmul_rn(__fsub_rn(x[o + j], m), r);
            dx[o + j] = __fmul_rn(r, __fsub_rn(__fsub_rn(__fmul_rn(g, gamma[j]), m1), __fmul_rn(xhat, m2)));
            dy_xhat[o + j] = __fmul_rn(g, xhat);
        }
    }
}

// The score of key j of a row before the softmax (cpu/attention.rs): scale * att, and for a masked key
// (mask == 0) -inf (add_mode 0, MaskFill::NegInf) or scale * att + add (add_mode 1, MaskFill::Add).
MT_INLINE float mt_masked_score(float v, float k, float scale, u32 add_mode, float add) {
    if (k != 0.0f) return __fmul_rn(v, scale);
    return add_mode ? __fadd_rn(__fmul_rn(v, scale), add) : __int_as_float(0xff800000);
}

// e_j of the softmax: keep * exp(score - max), keep = 1 for a kept key and 0 for a masked one (-inf
// filling, as the CPU's branch-free loop), exp(score - max) with Add filling
MT_INLINE float mt_softmax_e(float v, float k, float scale, u32 add_mode, float add, float mx) {
    float e = mt_exp(__fsub_rn(mt_masked_score(v, k, scale, add_mode, add), mx));
    return add_mode ? e : __fmul_rn(k != 0.0f ? 1.0f : 0.0f, e);
}

// att: [B, H, Tq, T] in place (R = B H Tq rows of T; e = H Tq rows per example), mask: [B, T] ->
// att = softmax over each row of the masked, scaled scores. With -inf filling, a row whose keys are
// all masked becomes 0; masked keys get keep * exp(..) with keep = 0. Each lane reads the row's input
// again instead of keeping what it wrote; the row is overwritten only after the last read of every
// lane (__syncwarp).
extern "C" __global__ void masked_softmax_forward(float* att, const float* mask, u64 e, u64 t, float scale,
                                                  u32 add_mode, float add, u64 rows) {
    MT_ROW_PAIRS(rows) {
        const u64 row = 2 * pair + (threadIdx.x % 32) / 16;
        const bool live = row < rows;
        const u64 n = live ? t : 0;
        const u64 full = n / 16 * 16;
        const u64 o = live ? row * t : 0;
        const u64 mo = live ? row / e * t : 0;
        // reduce::max over the scores
        float acc = __int_as_float(0xff800000);
        for (u64 j = lane; j < full; j += 16) {
            float v = mt_masked_score(att[o + j], mask[mo + j], scale, add_mode, add);
            acc = v > acc ? v : acc;
        }
        float tail = __int_as_float(0xff800000);
        for (u64 j = full; j < n; ++j) {
            float v = mt_masked_score(att[o + j], mask[mo + j], scale, add_mode, add);
            tail = v > tail ? v : tail;
        }
        float mx = mt_lanes_max16(acc);
        mx = tail > mx ? tail : mx;
        // every key masked (or -inf scores): the row attends to nothing, and no exp is taken
        const bool nothing = !add_mode && mx == __int_as_float(0xff800000);
        const u64 en = nothing ? 0 : n;
        const u64 efull = nothing ? 0 : full;
        // reduce::sum over e_j = keep * exp(score - max) (Add: exp(score - max))
        acc = 0.0f;
        for (u64 j = lane; j < efull; j += 16) acc = __fadd_rn(acc, mt_softmax_e(att[o + j], mask[mo + j], scale, add_mode, add, mx));
        tail = -0.0f;
        for (u64 j = efull; j < en; ++j) tail = __fadd_rn(tail, mt_softmax_e(att[o + j], mask[mo + j], scale, add_mode, add, mx));
        const float inv = __fdiv_rn(1.0f, __fadd_rn(mt_lanes_sum16(acc), tail));
        __syncwarp();
        for (u64 j = lane; j < n; j += 16)
            att[o + j] = nothing ? 0.0f : __fmul_rn(mt_softmax_e(att[o + j], mask[mo + j], scale, add_mode, add, mx), inv);
        __syncwarp();
    }
}

// att: [N] (rows of T, the last one possibly shorter), datt: [N] in place ->
// datt = scale * att * (datt - dot(datt_row, att_row)) (R = ceil(N / T) rows)
extern "C" __global__ void softmax_backward(float* datt, const float* att, u64 t, float scale, u64 len,
                                            u64 rows) {
    MT_ROW_PAIRS(rows) {
        const u64 row = 2 * pair + (threadIdx.x % 32) / 16;
        const bool live = row < rows;
        const u64 o = live ? row * t : 0;
        const u64 n = live ? (len - o < t ? len - o : t) : 0;
        const u64 full = n / 16 * 16;
        // reduce::dot
        float acc = 0.0f;
        for (u64 j = lane; j < full; j += 16) acc = __fmaf_rn(datt[o + j], att[o + j], acc);
        float tail = -0.0f;
        for (u64 j = full; j < n; ++j) tail = __fadd_rn(tail, __fmul_rn(datt[o + j], att[o + j]));
        const float dot = __fadd_rn(mt_lanes_sum16(acc), tail);
        __syncwarp();
        for (u64 j = lane; j < n; j += 16) {
            float a = att[o + j];
            datt[o + j] = __fmul_rn(__fmul_rn(scale, a), __fsub_rn(datt[o + j], dot));
        }
        __syncwarp();
    }
}
